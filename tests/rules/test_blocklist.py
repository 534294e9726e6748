"""The prompt blocklist on its own: the tricks it undoes, the innocent words it leaves alone, and the patterns it
refuses when they are added."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.rules.blocklist import Blocklist, EntryRefused, load_file, parse_entry

BLOCKED = ("nude", "ass", "gore")
INNOCENT = ("class", "assistant", "passage", "bass", "a", "red", "fox", "lighthouse", "at", "dusk", "nudge",
            "gorey", "mass", "gored", "sassy", "photo", "of", "my", "cat", "in", "winter")


def blocklist(*entries: str) -> Blocklist:
    return Blocklist(parse_entry(e) for e in entries)


@pytest.mark.parametrize("prompt", [
    "a NUDE portrait",  # case
    "a nüde portrait", "a nu\u0301de portrait",  # accents, precomposed and combining
    "a nu\u200bde portrait", "a n\u200du\u2060de portrait", "a nu\u00adde portrait",  # zero-width, soft hyphen
    "a nudе portrait", "a nυde portrait",  # Cyrillic е, Greek υ
    "a n u d e portrait", "draw a n.u.d.e woman", "n-u-d-e", "n_u_d_e",  # spaced letters
    "ｎｕｄｅ", "𝐧𝐮𝐝𝐞",  # fullwidth, mathematical bold
    "an @ss", "a$$", "g0r3 everywhere",  # digits and symbols for letters
    "a$s a", "@ss a",  # a symbol for a letter is part of its word, not a separator of single letters
])
def test_tricks_do_not_get_a_blocked_word_through(prompt: str) -> None:
    assert blocklist(*BLOCKED).check(prompt) is not None


@pytest.mark.parametrize("prompt", ["a class on assistants", "the passage of time", "bass guitar", "gorey scene?",
                                    "nudge it left", "1990 4k photo", "massive sassy cat"])
def test_a_blocked_word_inside_an_innocent_word_does_not_fire(prompt: str) -> None:
    assert blocklist(*BLOCKED).check(prompt) is None


def test_a_hit_names_the_entry_as_written() -> None:
    hit = blocklist("Nüde", "re:b[o0]+bs?").check("show n00dles and b00bs")
    assert hit is not None and hit.entry == "re:b[o0]+bs?"
    assert blocklist("Nüde").check("NUDE") is not None


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)+$", r"(a|aa)+$", r"(x+x+)+y"])
def test_a_catastrophically_backtracking_pattern_is_refused_when_added(pattern: str) -> None:
    started = time.monotonic()
    with pytest.raises(EntryRefused, match="too slow"):
        parse_entry("re:" + pattern)
    assert time.monotonic() - started < 2.0  # the limit cut it short; it did not run to the end


@pytest.mark.parametrize(("entry", "why"), [("re:[", "not a valid"), ("re:.*", "every prompt"), ("", "empty"),
                                            ("x" * 201, "at most 200"), ("re:", "empty"), ("!!!", "no letters")])
def test_bad_entries_are_refused_with_a_reason(entry: str, why: str) -> None:
    with pytest.raises(EntryRefused, match=why):
        parse_entry(entry)


def test_the_install_file_reads_one_entry_a_line_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("# owner's list\nnude\n\nre:g[o0]re\n", encoding="utf-8")
    loaded = load_file(good)
    assert len(loaded) == 2 and loaded.check("so much g0re") is not None
    bad = tmp_path / "bad.txt"
    bad.write_text("nude\nre:(a+)+$\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        load_file(bad)


ZERO_WIDTH = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
ACCENTS = st.sampled_from(["\u0301", "\u0300", "\u0308", "\u0302", "\u0327"])
# Look-alikes of Latin letters (Cyrillic, Greek, fullwidth) and digits written for letters.
LOOKALIKES = {"a": "аα4@ａ", "e": "еε3ｅ", "o": "оο0ｏ", "s": "ѕ5$ｓ", "d": "ԁｄ", "u": "υｕ", "n": "ｎ", "g": "9ｇ",
              "r": "ｒ"}


@st.composite
def disguised(draw: st.DrawFn, word: str) -> str:
    """`word` with random look-alikes, case changes, accents and zero-width characters inserted. Not every letter a
    digit: a number is read as a number ("455" is not "ass", as "1990" is not "igg0"), so a prompt may say 455 nm."""
    out = []
    letters = []
    for letter in word:
        c = draw(st.sampled_from(LOOKALIKES[letter])) if letter in LOOKALIKES and draw(st.booleans()) else letter
        letters.append(c)
        out.append(c.upper() if draw(st.booleans()) else c)
        if draw(st.booleans()):
            out.append(draw(ACCENTS))
        if draw(st.booleans()):
            out.append(draw(ZERO_WIDTH))
    assume(not all(c.isdigit() for c in letters))
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), word=st.sampled_from(BLOCKED),
       before=st.lists(st.sampled_from(INNOCENT), max_size=4), after=st.lists(st.sampled_from(INNOCENT), max_size=4))
def test_look_alikes_case_accents_and_zero_width_characters_never_let_a_blocked_word_through(
        data: st.DataObject, word: str, before: list[str], after: list[str]) -> None:
    prompt = " ".join([*before, data.draw(disguised(word)), *after])
    assert blocklist(*BLOCKED).check(prompt) is not None, prompt


@settings(max_examples=200, deadline=None)
@given(data=st.data(), words=st.lists(st.sampled_from(INNOCENT), min_size=1, max_size=8),
       punctuation=st.sampled_from([" ", ", ", "; ", " - ", "! "]))
def test_an_innocent_text_is_never_refused(data: st.DataObject, words: list[str], punctuation: str) -> None:
    # Innocent words disguised the same way stay innocent (single letters like "a" never stand next to each other).
    prompt = punctuation.join(data.draw(disguised(w)) for w in words)
    assert blocklist(*BLOCKED).check(prompt) is None, prompt

"""A prompt blocklist: words (matched on word boundaries) and regular expressions (`re:...`), both on the
normalised prompt (bot.rules.normalise). No Discord here.

Regular expressions use the `regex` package for its per-call timeout: Python's `re` cannot be interrupted, and one
pattern with nested quantifiers can hang on a long prompt. A pattern is tried on adversarial texts when it is added
and refused if any of them takes longer than the limit; at match time the limit applies again, and a pattern that
runs out of time counts as a match (the prompt is refused rather than let through unchecked), and is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex

from bot.errors import ConfigError, Refusal
from bot.rules.normalise import WORD_CHAR, Normalised, normalise, normalise_entry

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"
MAX_ENTRY_CHARS = 200
MAX_ENTRIES = 200  # per guild
MATCH_TIMEOUT_S = 0.05  # per pattern and reading; a vetted pattern takes microseconds on a prompt
PROBE_CHARS = 2000  # longer than any prompt (MAX_PROMPT_CHARS defaults to 1000), so the probes are the worst case


class EntryRefused(Refusal):
    """A blocklist entry that cannot be used: the member is told why, and nothing changes."""


@dataclass(frozen=True)
class Entry:
    """One entry as the owner wrote it (`text`) and as it is matched."""

    text: str
    word: str | None = None
    pattern: regex.Pattern[str] | None = None

    @property
    def is_regex(self) -> bool:
        return self.pattern is not None


def _probes(source: str) -> list[str]:
    """Texts on which backtracking patterns blow up: long runs of each character the pattern names (and of letters,
    spaces and words), each ending in a character that makes the match fail at the very end."""
    chars = {c for c in source if c.isalnum() or c == " "} | {"a", " ", "0"}
    probes = [c * PROBE_CHARS + "!" for c in sorted(chars)]
    probes += ["word " * (PROBE_CHARS // 5) + "!", "ab" * (PROBE_CHARS // 2) + "!", "a b " * (PROBE_CHARS // 4) + "!"]
    return probes


def compile_pattern(source: str) -> regex.Pattern[str]:
    """Compile a regular expression for the blocklist, or refuse it (invalid, matches everything, or too slow)."""
    if not source.strip():
        raise EntryRefused("That regular expression is empty.")
    try:
        pattern = regex.compile(source, regex.IGNORECASE | regex.V0)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise EntryRefused(f"That is not a valid regular expression ({exc}).") from exc
    try:
        if pattern.search("", timeout=MATCH_TIMEOUT_S) is not None:
            raise EntryRefused("That regular expression matches an empty prompt, so it would refuse every prompt.")
        for probe in _probes(source):
            pattern.search(probe, timeout=MATCH_TIMEOUT_S)
    except TimeoutError as exc:
        raise EntryRefused("That regular expression is too slow on long prompts (it backtracks without limit); "
                           "please write it without nested repetition such as `(a+)+`.") from exc
    return pattern


def parse_entry(text: str) -> Entry:
    """An entry as typed by an owner or read from PROMPT_BLOCKLIST_FILE: `re:<pattern>` or a word or phrase."""
    text = text.strip()
    if not text:
        raise EntryRefused("A blocklist entry cannot be empty.")
    if len(text) > MAX_ENTRY_CHARS:
        raise EntryRefused(f"A blocklist entry may be at most {MAX_ENTRY_CHARS} characters (this one has "
                           f"{len(text)}).")
    if text.lower().startswith(REGEX_PREFIX):
        return Entry(text, pattern=compile_pattern(text[len(REGEX_PREFIX):]))
    word = normalise_entry(text)
    if not any(c.isalnum() for c in word):
        raise EntryRefused("That entry has no letters or digits left once normalised, so it cannot match anything.")
    return Entry(text, word=word)


@dataclass(frozen=True)
class Hit:
    """Why a prompt was refused: the entry as the owner wrote it (never shown to the member)."""

    entry: str
    timed_out: bool = False


class Blocklist:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries = tuple(entries)
        words = [e.word for e in self.entries if e.word]
        # One alternation for all words, longest first; boundaries are "not a word character" on either side.
        self._words = re.compile(
            rf"(?<!{WORD_CHAR})(?:{'|'.join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))})"
            rf"(?!{WORD_CHAR})") if words else None
        self._by_word = {e.word: e.text for e in self.entries if e.word}

    def __len__(self) -> int:
        return len(self.entries)

    def __add__(self, other: Blocklist) -> Blocklist:
        return Blocklist((*self.entries, *other.entries))

    def check(self, prompt: str) -> Hit | None:
        """The first entry that the prompt matches, or None. CPU-bound: call it in a worker thread."""
        if not self.entries:
            return None
        text = normalise(prompt)
        return self._word_hit(text) or self._pattern_hit(text)

    def _word_hit(self, text: Normalised) -> Hit | None:
        if self._words is None:
            return None
        for reading in text.readings:
            found = self._words.search(reading)
            if found:
                return Hit(self._by_word.get(found.group(), found.group()))
        # Inside a run of joined single letters ("a n u d e") no word boundary can be known.
        for run in text.joined:
            for word, written in self._by_word.items():
                if word.replace(" ", "") in run:
                    return Hit(written)
        return None

    def _pattern_hit(self, text: Normalised) -> Hit | None:
        for entry in self.entries:
            if entry.pattern is None:
                continue
            for reading in (*text.readings, *text.joined):
                try:
                    if entry.pattern.search(reading, timeout=MATCH_TIMEOUT_S, concurrent=True):
                        return Hit(entry.text)
                except TimeoutError:
                    log.warning("blocklist pattern %r ran out of time on a prompt; the prompt is refused",
                                entry.text)
                    return Hit(entry.text, timed_out=True)
        return None


def parse_entries(texts: Sequence[str]) -> Blocklist:
    """Entries stored by a guild (each was checked when added; one that fails now is skipped and logged)."""
    entries: list[Entry] = []
    for text in texts:
        try:
            entries.append(parse_entry(text))
        except EntryRefused as exc:
            log.warning("blocklist entry %r skipped: %s", text, exc)
    return Blocklist(entries)


def load_file(path: Path) -> Blocklist:
    """PROMPT_BLOCKLIST_FILE: one entry a line; blank lines and lines starting with # are skipped. A bad entry stops
    the start with its line number, so an operator never runs with a blocklist that is silently shorter."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"PROMPT_BLOCKLIST_FILE {path}: cannot be read ({exc})") from exc
    entries: list[Entry] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append(parse_entry(line))
        except EntryRefused as exc:
            raise ConfigError(f"PROMPT_BLOCKLIST_FILE {path}, line {number}: {exc}") from exc
    return Blocklist(entries)

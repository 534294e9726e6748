"""A prompt as the blocklist sees it: the tricks people use to slip a word past a filter are undone first.

Steps, in order: Unicode NFKC (fullwidth and mathematical letters become plain ones), case folding, accents stripped
(NFD, combining marks dropped), zero-width and other format characters removed, look-alike letters from Cyrillic and
Greek mapped to the Latin letters they imitate, runs of single characters separated by spaces or punctuation joined
("n u d e", "n.u.d.e" → "nude"), and digits and symbols used as letters ("n00d", "@$$") read as letters inside words
that are not plain numbers (so "1990" stays as written). "1" reads as "i" or "l", so the text has two readings.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Cyrillic and Greek letters that render like Latin ones in common fonts (lower case: the text is case-folded first).
HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ɡ": "g",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "μ": "u", "ϲ": "c", "ϳ": "j",
})
# Digits and symbols written for letters. "1" is ambiguous (k1ll, 1ewd): it has its own two readings below.
LEET = str.maketrans({"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s"})
ONE_READINGS = ("i", "l")

# A "character of a word" after mapping: any letter or digit, and the symbols that stand for letters.
WORD_CHAR = r"[^\W_]|[@$]"
_TOKEN = re.compile(rf"(?:{WORD_CHAR})+")
# Two or more single characters, each separated by 1-3 characters of spaces or punctuation (not a line break).
# Not inside a longer word: the characters around the run are not word characters either, "$" and "@" included
# (in "a$s a" the "s" belongs to "a$s", so "s a" is no run of single letters).
_SPACED = re.compile(rf"(?<![^\W_])(?<![@$])(?:{WORD_CHAR})(?:(?:[^\w@$\n]|_){{1,3}}(?:{WORD_CHAR}))+"
                     rf"(?![^\W_])(?![@$])")
_SPACE_RUN = re.compile(r"\s+")


@dataclass(frozen=True)
class Normalised:
    """The readings of one text (each a string of words separated by single spaces), and the runs of single letters
    that were joined: within those no word boundary can be known, so a blocked word anywhere inside one counts."""

    readings: tuple[str, ...]
    joined: tuple[str, ...]


def _drop_marks_and_formats(text: str) -> str:
    # Mn/Me: accents and other combining marks; Cf: zero-width spaces and joiners, soft hyphens, bidi controls.
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) not in ("Mn", "Me", "Cf"))


def _letters(text: str) -> str:
    """NFKC, case folded, accents and format characters gone, look-alikes mapped (no leet, no joining yet)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _drop_marks_and_formats(text).translate(HOMOGLYPHS)
    # Some letters only decompose or fold after mapping (e.g. a Cyrillic letter with a combining mark).
    return unicodedata.normalize("NFC", _drop_marks_and_formats(text))


def _read_leet(token: str, one: str) -> str:
    if token.isdigit():
        return token  # a number (1990, 4, 1080) is a number
    return token.translate(LEET).replace("1", one)


def _with_leet(text: str, one: str) -> str:
    return _TOKEN.sub(lambda m: _read_leet(m.group(), one), text)


def normalise(text: str) -> Normalised:
    letters = _letters(text)
    joined_runs: list[str] = []

    def join(match: re.Match[str]) -> str:
        run = "".join(_TOKEN.findall(match.group()))
        joined_runs.append(run)
        return run

    joined = _SPACE_RUN.sub(" ", _SPACED.sub(join, letters)).strip()
    readings = tuple(dict.fromkeys(_with_leet(joined, one) for one in ONE_READINGS))
    runs = tuple(dict.fromkeys(_with_leet(run, one) for run in joined_runs for one in ONE_READINGS))
    return Normalised(readings, runs)


def normalise_entry(word: str) -> str:
    """A blocked word or phrase as it is matched: the same letters the text is reduced to (first reading)."""
    return _SPACE_RUN.sub(" ", _with_leet(_letters(word), ONE_READINGS[0])).strip()

"""The catalogs as shipped: compiled from their sources, complete for every text the code shows, and with the same
placeholders in every language (a translation that drops `{member}` would post a caption that pings nobody)."""

from __future__ import annotations

import io
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, translate
from bot.i18n.catalogs import DOMAIN, LOCALE_DIR
from bot.i18n.formats import duration, money, percent
from bot.i18n.locales import ENGLISH, normalise

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [name for name in LANGUAGES if name != ENGLISH]


def source(name: str) -> Catalog:
    with (LOCALE_DIR / name / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as f:
        return read_po(f, locale=name)


def used_in_code() -> set[str]:
    """Every msgid `pybabel extract -F babel.cfg` finds, found the same way (babel.cfg names bot/ and cogs/)."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    return {message if isinstance(message, str) else message[0]
            for _, _, message, _, _ in extract_from_dir(ROOT, method_map, options_map)}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("name", TRANSLATED)
def test_the_committed_mo_is_what_its_po_compiles_to(name: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, source(name))
    committed = (LOCALE_DIR / name / "LC_MESSAGES" / f"{DOMAIN}.mo").read_bytes()
    assert compiled.getvalue() == committed, f"run: uv run pybabel compile -D {DOMAIN} -d bot/i18n/locale"


def test_the_code_marks_its_texts() -> None:
    """The extraction sees the converted texts at all (a broken extractor would make the next test vacuous)."""
    used = used_in_code()
    assert {"✅ done", "Retry", "Make an image from a prompt", "Whole outfit", "Edit this image",
            "Started job #{id}: {link}", "You have no job in flight to cancel."} <= used
    assert len(used) > 100


@pytest.mark.parametrize("name", TRANSLATED)
def test_every_text_in_code_is_translated_with_the_same_placeholders(name: str) -> None:
    catalog = source(name)
    missing, fuzzy, mismatched = [], [], []
    for msgid in sorted(used_in_code()):
        message = catalog.get(msgid)
        if message is None or not message.string:
            missing.append(msgid)
        elif message.fuzzy:
            fuzzy.append(msgid)
        elif placeholders(msgid) != placeholders(str(message.string)):
            mismatched.append((msgid, message.string))
    assert (missing, fuzzy, mismatched) == ([], [], []), "run pybabel extract/update (README: Languages)"


@pytest.mark.parametrize(("discord_locale", "catalog"), [
    ("de", "de"), ("pt-BR", "pt_BR"), ("es-ES", "es_ES"), ("es-419", "es_ES"), ("fr", "fr"), ("ja", "ja"),
    ("en-US", "en"), ("en-GB", "en"), ("zh-CN", "en"), ("xx", "en"), ("", "en"), (None, "en"),
])
def test_discord_locales_read_their_languages_catalog(discord_locale: str | None, catalog: str) -> None:
    assert normalise(discord_locale) == catalog


def test_texts_and_figures_in_each_language() -> None:
    assert translate("ja", "✅ done") == "✅ 完了"
    assert translate("de", "{operation} · job #{id}", operation="Edit", id=7) == "Edit · Auftrag #7"
    assert translate("zh-CN", "✅ done") == translate("en-US", "✅ done") == "✅ done"
    assert translate("fr", "a text no catalog has") == "a text no catalog has"
    # English as it always was; the others as their language writes them.
    assert (duration("en-US", 75), duration("en-US", 9), percent("en-US", 45.4)) == ("1 min 15 s", "9 s", "45%")
    assert (duration("ja", 75), percent("de", 45.4), percent("fr", 45.0)) == ("1分15秒", "45\u00a0%", "45\u00a0%")
    # Money keeps every significant decimal (an estimate of $0.629146 is not $0.63), written the language's way.
    assert (money("en-US", 629_146), money("en-US", 5_000_000)) == ("$0.629146", "$5.00")
    assert (money("de", 629_146), money("pt-BR", 5_000_000), money("ja", 50_000)) == \
        ("0,629146\u00a0$", "US$\u00a05,00", "$0.05")

"""Atelier in the members' languages, as Discord and its members see it: the commands as published (translated
descriptions and choices, English names), and a job's public posts in its server's language."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job
from tests.fakes.discord import Message

GUILD_COMMANDS = "/applications/{application_id}/guilds/{guild_id}/commands"
TRANSLATED = ("de", "es-ES", "fr", "pt-BR", "ja")


def published(e2e: E2E) -> list[dict[str, Any]]:
    """The commands as last published to the test guild (the bot publishes them when they change)."""
    puts = [c for c in e2e.discord.calls("PUT", GUILD_COMMANDS) if c.path.endswith(f"/guilds/{e2e.guild.id}/commands")]
    assert puts, "the bot published its commands"
    body = puts[-1].body
    assert isinstance(body, list)
    return body


def options(command: dict[str, Any]) -> list[dict[str, Any]]:
    """Every option of a command, subcommands' options included, with the subcommands themselves."""
    found = []
    for option in command.get("options", []):
        found.append(option)
        found.extend(options(option))
    return found


def test_descriptions_and_choices_are_published_in_every_language(e2e: E2E) -> None:
    commands = published(e2e)
    slash = [c for c in commands if c.get("type", 1) == 1]
    assert {"imagine", "tryon", "settings", "atelier"} <= {c["name"] for c in slash}
    # "…" is what discord.py sends for an option the code gave no description: nothing to translate.
    described = [item for item in (*slash, *(o for c in slash for o in options(c))) if item["description"] != "…"]
    assert len(described) > 60
    for item in described:
        localized = item.get("description_localizations") or {}
        assert set(TRANSLATED) <= set(localized), (item["name"], item["description"], localized)
        for locale, text in localized.items():
            assert 1 <= len(text) <= 100 and text != item["description"], (item["name"], locale, text)
        # Names stay English, as members, the README and the help texts say them.
        assert not item.get("name_localizations"), item["name"]
    imagine = next(c for c in slash if c["name"] == "imagine")
    assert imagine["description_localizations"]["de"] == "Ein Bild aus einem Prompt erzeugen"
    assert imagine["description_localizations"]["ja"] == "プロンプトから画像を生成"
    size = next(o for o in imagine["options"] if o["name"] == "size")
    square = next(c for c in size["choices"] if c["value"] == "square")
    assert square["name"] == "Square (1:1)"
    assert square["name_localizations"]["fr"] == "Carré (1:1)" and square["name_localizations"]["ja"] == "正方形（1:1）"
    # A translation the same as the English ("Portrait 3:4" in French) is not sent: Discord shows the English then.
    assert all({"de", "ja"} <= set(c.get("name_localizations") or {}) for c in size["choices"])


def test_context_menus_are_named_in_every_language(e2e: E2E) -> None:
    menus = {c["name"]: c for c in published(e2e) if c.get("type") == 3}
    assert menus["Edit this image"]["name_localizations"]["de"] == "Dieses Bild bearbeiten"
    for menu in menus.values():
        localized = menu.get("name_localizations") or {}
        assert set(TRANSLATED) <= set(localized), menu["name"]
        assert all(1 <= len(name) <= 32 for name in localized.values()), localized


async def imagine_in(e2e: E2E, guild_locale: str, member_locale: str) -> tuple[Message, Message, int]:
    e2e.guild.guild.locale = guild_locale
    alice = await e2e.member("alice")
    alice.locale = member_locale
    run = await alice.run_command(e2e.channel, "imagine", prompt="a lighthouse at dusk")
    job_id = started_job((await run.reply()).content)
    result = await e2e.result(job_id)
    status = e2e.status_message(job_id)
    assert status is not None
    await e2e.job(job_id)
    return result, status, job_id


async def test_a_japanese_server_reads_its_posts_in_japanese(e2e: E2E) -> None:
    # The member's client is in English: public posts speak the server's language, not the asker's.
    result, status, job_id = await imagine_in(e2e, "ja", "en-US")
    assert f"さんの **画像生成 · ジョブ #{job_id}**" in status.versions[0]
    await e2e.discord.wait_for(lambda: "✅ 完了" in status.content, what="the status message to say done (ja)")
    assert "“a lighthouse at dusk”" in result.content and "novita" in result.content
    assert f"**画像**ができました · ジョブ #{job_id}" in result.content
    assert result.labels() == ["再試行", "バリエーション", "リミックス", "削除"]
    assert "秒" in result.content.splitlines()[-1]  # the time it took, as Japanese writes it


@pytest.mark.parametrize("guild_locale", ["zh-CN", "xx-unknown"])
async def test_a_server_in_another_language_reads_english(e2e: E2E, guild_locale: str) -> None:
    result, status, job_id = await imagine_in(e2e, guild_locale, guild_locale)
    assert status.versions[0].startswith(f"**Imagine · job #{job_id}** for <@")
    await e2e.discord.wait_for(lambda: "✅ done" in status.content, what="the status message to say done")
    assert f"your **imagine** is ready · job #{job_id}" in result.content
    assert result.labels() == ["Retry", "Vary", "Remix", "Delete"]


async def test_a_german_client_reads_its_private_answers_in_german(e2e: E2E) -> None:
    # The server speaks English, the member's client German: private answers follow the member.
    alice = await e2e.member("alice")
    alice.locale = "de"
    cancel = await (await alice.run_command(e2e.channel, "cancel")).reply()
    assert cancel.ephemeral and cancel.content == "Du hast keinen laufenden Auftrag, der sich abbrechen ließe."

    run = await alice.run_command(e2e.channel, "imagine", prompt="a lighthouse at dusk")
    reply = await run.reply()
    started = re.fullmatch(r"Auftrag #(\d+) gestartet: https://discord\.com/channels/\S+\n"
                           r"Geschätzte Kosten: bis zu \d+,\d+\xa0\$\.", reply.content)  # its worst case, in German
    assert reply.ephemeral and started is not None, reply.content
    job_id = int(started[1])
    result = await e2e.result(job_id)
    assert f"your **imagine** is ready · job #{job_id}" in result.content  # public: the server's language
    await e2e.job(job_id)

    jobs = await (await alice.run_command(e2e.channel, "jobs")).reply()
    assert f"✅ **#{job_id}** Imagine · novita · fertig · " in jobs.content and "[öffnen](" in jobs.content
    quota = await (await alice.run_command(e2e.channel, "quota")).reply()
    assert quota.content.startswith("Du hast heute **1** von **25** Bildern verbraucht (noch 24)"), quota.content
    assert "\nLaufende Aufträge: 0 von 10." in quota.content

    alice.locale = "en-US"  # the same member, their client switched to English
    quota = await (await alice.run_command(e2e.channel, "quota")).reply()
    assert quota.content.startswith("You have used **1** of **25** images today (24 left)"), quota.content


async def test_refusals_are_told_in_the_members_language(e2e: E2E) -> None:
    admin, alice = await e2e.member("admin", manage_guild=True), await e2e.member("alice")
    alice.locale = "de"
    shown = await (await alice.run_command(e2e.channel, "show", job=987654)).reply()
    assert shown.ephemeral
    assert shown.content == "Du hast auf diesem Server keinen Auftrag #987654 (/jobs listet deine auf)."
    # An input's problem names the input in the member's language too.
    photo = await (await alice.run_command(e2e.channel, "settings", photo=("me.png", b"not an image"))).reply()
    assert photo.content == "Das Foto ist kein lesbares Bild (PNG, JPEG, WEBP oder GIF)."
    edit = await (await alice.run_command(e2e.channel, "edit", image=("a.png", b""), prompt="x")).reply()
    assert edit.content == "Das Bild 1 ist leer (0 Bytes)."

    await (await admin.run_command(e2e.channel, "atelier command", name="imagine", enabled=False)).reply()
    before = len(e2e.db.jobs_of(alice.id))
    try:
        alice.locale = "ja"
        off = await (await alice.run_command(e2e.channel, "imagine", prompt="a fox")).reply()
        assert off.ephemeral and off.content == "このサーバーでは /imagine はオフになっています。"
        alice.locale = "en-US"
        off = await (await alice.run_command(e2e.channel, "imagine", prompt="a fox")).reply()
        assert off.content == "/imagine is turned off in this server."
    finally:
        await (await admin.run_command(e2e.channel, "atelier command", name="imagine", enabled=True)).reply()
    assert len(e2e.db.jobs_of(alice.id)) == before  # refused before anything was recorded


async def test_settings_forget_and_forms_speak_the_members_language(e2e: E2E) -> None:
    carol = await e2e.member("carol")
    carol.locale = "de"
    settings = await (await carol.run_command(e2e.channel, "settings", count=2)).reply()
    assert settings.ephemeral and settings.content == (
        "**Deine Einstellungen** (gelten überall, wo du nichts anderes angibst)\nFormat: Standard des Anbieters · "
        "Bilder pro Auftrag: 2 · Ergebnisse: im Kanal · Mein Foto (für die Anprobe): keins")

    carol.locale = "en-US"
    job_id = started_job((await (await carol.run_command(e2e.channel, "imagine", prompt="a fox")).reply()).content)
    result = await e2e.result(job_id)
    await e2e.job(job_id)
    carol.locale = "ja"  # a form is in the language of the member who opens it, whatever the post's
    opened = await carol.click(result, "Remix")
    await opened.acked()
    form = opened.interaction.modal
    assert form is not None and form["title"] == f"ジョブ #{job_id} をリミックス"
    assert [row["label"] for row in form["components"]] == ["プロンプト", "サイズ", "シード", "画像の枚数"]

    forget = await (await carol.run_command(e2e.channel, "forget")).reply()
    assert forget.content.startswith("このボットが使われているすべてのサーバーで")
    assert forget.labels() == ["私を忘れる", "すべて残す"]
    await carol.click(forget, "すべて残す")  # the answer replaces the question
    await e2e.discord.wait_for(lambda: forget.content == "何も削除していません。", what="the kept answer (ja)")


async def test_a_result_by_direct_message_speaks_the_members_language(e2e: E2E) -> None:
    dave = await e2e.member("dave")
    await (await dave.run_command(e2e.channel, "settings", private=True)).reply()
    try:
        dave.locale = "ja"  # the server speaks English; the DM reaches Dave alone, so it speaks his language
        run = await dave.run_command(e2e.channel, "imagine", prompt="a lighthouse at dusk")
        started = re.match(r"ジョブ #(\d+) を開始しました", (await run.reply()).content)
        assert started is not None
        job_id = int(started[1])
        dm = await e2e.discord.wait_for(lambda: next((m for m in dave.dms() if m.attachments), None),
                                        what="the result by direct message")
        assert f"**画像**ができました · ジョブ #{job_id}" in dm.content, dm.content
        await e2e.job(job_id)
    finally:
        dave.locale = "en-US"
        await (await dave.run_command(e2e.channel, "settings", clear="everything")).reply()


async def test_a_quota_refusal_is_told_in_the_members_language(e2e: E2E) -> None:
    admin, erin = await e2e.member("admin", manage_guild=True), await e2e.member("erin")
    await (await admin.run_command(e2e.channel, "atelier allowance", target=erin, daily=1, concurrent=5)).reply()
    erin.locale = "de"
    refused = await (await erin.run_command(e2e.channel, "imagine", prompt="two foxes", count=2)).reply()
    assert refused.ephemeral
    assert refused.content == "Dieser Auftrag braucht 2 Bilder, mehr als dein Tageskontingent von 1."
    erin.locale = "en-US"
    refused = await (await erin.run_command(e2e.channel, "imagine", prompt="two foxes", count=2)).reply()
    assert refused.content == "This job needs 2 images, more than your daily quota of 1."
    assert e2e.db.jobs_of(erin.id) == []

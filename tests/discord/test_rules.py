"""Owners' rules against SimCord, with the real bot, a real SQLite file and the provider fakes on real sockets.

Every refusal is private, reaches no provider and charges nothing: each test asserts all three."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

from typing import Any

import discord

from bot.app import App
from bot.discord_bot import AtelierBot
from bot.money.caps import usd
from bot.store.models import Subject
from tests.discord.conftest import World, settle_until
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    admin,
    app,
    atelier,
    fal,
    glam,
    late_wait,
    simcord_bot,
    wait_for_result,
)
from tests.fakes.fal import FakeFal


def member_subject(member: Any) -> Subject:
    return Subject.member(member.guild.id, member.id, ())


async def assert_refused_for_free(result: Any, fal: FakeFal, app: App, member: Any, says: str) -> None:
    assert result.ephemeral and result.response is not None, "the refusal must be private"
    assert says in result.response.content, result.response.content
    assert fal.requests == [], "nothing may reach the provider"
    assert await app.store.list_jobs(member_subject(member), limit=50) == [], "nothing may be recorded or charged"


async def test_an_interaction_from_a_guild_not_served_is_answered_privately_and_costs_nothing(
        atelier: World, app: App, fal: FakeFal) -> None:
    app.settings.discord_allowed_guilds = str(atelier.guild.id + 1)
    result = await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    await assert_refused_for_free(result, fal, app, atelier.alice, "serves listed servers only")
    assert [m for m in atelier.channel.history() if not m.flags.ephemeral] == []


async def test_an_allowlisted_install_syncs_commands_to_its_guilds_only_and_leaves_others(
        atelier: World, app: App, late_wait: Any) -> None:
    app.settings.discord_allowed_guilds = str(atelier.guild.id)
    app.settings.discord_leave_other_guilds = True
    fresh = AtelierBot(app)
    old = atelier.env.bot
    await atelier.env.restart_bot(fresh)
    await old.close()
    puts = [r for r in atelier.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    [guild_put] = [r for r in puts if f"/guilds/{atelier.guild.id}/commands" in r.path]
    assert "imagine" in {c["name"] for c in guild_put.json}
    global_puts = [r for r in puts if "/guilds/" not in r.path]
    assert global_puts[-1].json == [], "the global commands must be cleared"
    assert "imagine" in atelier.alice.available_commands(atelier.channel)
    other = atelier.env.create_guild("Somebody else's")
    await atelier.env.settle()
    assert any(r.method == "DELETE" and r.path.endswith(f"/users/@me/guilds/{other.id}")
               for r in atelier.env.http_requests), "the bot must leave a guild it does not serve"
    assert fresh.get_guild(other.id) is None and fresh.get_guild(atelier.guild.id) is not None
    await app.runner.stop()


async def test_channel_rules_point_to_the_allowed_channel_and_deny_where_told(
        atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    art = atelier.guild.create_text_channel("art")
    done = await admin.slash(atelier.channel, "atelier channels", command="imagine", rule="allow", channel=art)
    assert done.response is not None and f"<#{art.id}>" in done.response.content
    refused = await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    await assert_refused_for_free(refused, fal, app, atelier.alice, f"Use <#{art.id}>")
    await admin.slash(atelier.channel, "atelier channels", command="*", rule="deny", channel=art)
    denied = await atelier.alice.slash(art, "imagine", prompt="a fox")
    await assert_refused_for_free(denied, fal, app, atelier.alice, "cannot be used in this channel")
    await admin.slash(atelier.channel, "atelier channels", command="*", rule="clear")
    ok = await atelier.alice.slash(art, "imagine", prompt="a fox")
    assert ok.response is not None and ok.response.content.startswith("Started job #1")
    assert len(await app.store.list_jobs(member_subject(atelier.alice), limit=5)) == 1  # the helper sees jobs


async def test_a_blocked_member_or_role_is_refused_privately_and_for_free(
        atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    await admin.slash(atelier.channel, "atelier block add", target=atelier.alice)
    refused = await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    await assert_refused_for_free(refused, fal, app, atelier.alice, "cannot use Atelier in this server")
    listing = await admin.slash(atelier.channel, "atelier block list")
    assert listing.response is not None and atelier.alice.mention in listing.response.content
    await admin.slash(atelier.channel, "atelier block remove", target=atelier.alice)
    muted = atelier.guild.create_role("muted")
    dave = atelier.guild.add_member(atelier.env.create_user("dave"), roles=[muted])
    await admin.slash(atelier.channel, "atelier block add", target=muted)
    refused = await dave.slash(atelier.channel, "imagine", prompt="a fox")
    await assert_refused_for_free(refused, fal, app, dave, "cannot use Atelier in this server")
    ok = await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    assert ok.response is not None and ok.response.content.startswith("Started job #1")


async def test_a_channel_without_attach_files_is_refused_up_front_naming_the_permission(
        atelier: World, app: App, fal: FakeFal) -> None:
    me = atelier.env.bot.user
    bare = atelier.guild.create_text_channel("no-files", overwrites={
        me: discord.PermissionOverwrite(attach_files=False)})
    refused = await atelier.alice.slash(bare, "imagine", prompt="a fox")
    await assert_refused_for_free(refused, fal, app, atelier.alice, "missing permission: Attach Files")
    assert [m for m in bare.history() if not m.flags.ephemeral] == []


async def test_the_blocklist_refuses_tricks_and_spares_innocent_words(
        atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    added = await admin.slash(atelier.channel, "atelier blocklist add", entry="nude")
    assert added.response is not None and "now refused" in added.response.content
    await admin.slash(atelier.channel, "atelier blocklist add", entry="ass")
    for prompt in ("a NÜDE portrait", "a nu\u200bde portrait", "a nudе portrait", "a n u d e portrait",
                   "a n.u.d.e portrait", "an @ss"):
        refused = await atelier.alice.slash(atelier.channel, "imagine", prompt=prompt)
        await assert_refused_for_free(refused, fal, app, atelier.alice, "That prompt is not allowed")
    ok = await atelier.alice.slash(atelier.channel, "imagine", prompt="a class of assistants")
    assert ok.response is not None and ok.response.content.startswith("Started job #1")


async def test_a_slow_or_invalid_pattern_is_refused_when_added_and_nothing_changes(
        atelier: World, admin: Any, app: App) -> None:
    slow = await admin.slash(atelier.channel, "atelier blocklist add", entry=r"re:(a+)+$")
    assert slow.ephemeral and slow.response is not None and "too slow" in slow.response.content
    bad = await admin.slash(atelier.channel, "atelier blocklist add", entry="re:[")
    assert bad.response is not None and "not a valid regular expression" in bad.response.content
    assert "blocklist" not in await app.store.guild_settings(atelier.guild.id)
    listing = await admin.slash(atelier.channel, "atelier blocklist list")
    assert listing.response is not None and "empty" in listing.response.content


async def test_retry_by_button_and_by_reaction_follow_the_blocklist_and_blocks(
        atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    await atelier.alice.slash(atelier.channel, "imagine", prompt="a naked tree")
    first = await wait_for_result(atelier, 1)
    asked = len(fal.requests)
    await admin.slash(atelier.channel, "atelier blocklist add", entry="naked")
    clicked = await atelier.bob.click(first, label="Retry")
    assert clicked.ephemeral and clicked.response is not None and "not allowed" in clicked.response.content
    await admin.slash(atelier.channel, "atelier blocklist remove", entry="naked")
    await admin.slash(atelier.channel, "atelier block add", target=atelier.bob)
    await atelier.bob.react(first, "🔄")
    await atelier.env.settle()
    assert len(fal.requests) == asked
    assert await app.store.list_jobs(member_subject(atelier.bob), limit=10) == []


async def test_the_audit_log_gets_jobs_refusals_deletions_and_settings_and_pings_nobody(
        atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    audit = atelier.guild.create_text_channel("audit")
    await admin.slash(atelier.channel, "atelier auditlog", channel=audit)
    await admin.slash(atelier.channel, "atelier blocklist add", entry="gore")
    await atelier.alice.slash(atelier.channel, "imagine", prompt="so much gore")
    await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox for @everyone and <@&1>")
    result = await wait_for_result(atelier, 1)
    await admin.slash(atelier.channel, "atelier limits", daily=1)
    capped = await atelier.alice.slash(atelier.channel, "imagine", prompt="one more")
    assert capped.response is not None and "used 1 of your 1" in capped.response.content
    await admin.slash(atelier.channel, "atelier block add", target=atelier.bob)
    await atelier.bob.slash(atelier.channel, "imagine", prompt="a fox")
    await atelier.alice.click(result, label="Delete")

    def lines() -> list[discord.Message]:
        return audit.history()

    await settle_until(atelier.env, lambda: any("deleted the result of job #1" in m.content for m in lines()),
                       timeout=10, what="the audit line for the deletion")
    text = "\n".join(m.content for m in lines())
    assert "the audit log now goes to" in text and "blocklist entry added" in text
    assert "refused /imagine" in text and "the blocklist" in text and "daily cap reached (1 of 1)" in text
    assert f"refused /imagine for {atelier.bob.mention}: the member is blocked" in text
    assert "job #1 by" in text and "/imagine" in text and "fal" in text and "1 image(s)" in text
    spend = await app.store.job_spend(1)  # what the job cost as settled: its image at fal's price for its size
    assert spend is not None and spend.settled_at is not None and spend.reserved_micro > 0
    assert f"1 image(s) · {usd(spend.reserved_micro)} · " in text
    assert result.jump_url in text
    # Nothing in the audit channel may ping: every post there tells Discord to parse no mention at all.
    posts = [r for r in atelier.env.http_requests if r.method == "POST" and r.path == f"/channels/{audit.id}/messages"]
    assert len(posts) == len(lines()) >= 5
    assert all(r.json["allowed_mentions"] == {"parse": []} for r in posts), [r.json for r in posts]
    await admin.slash(atelier.channel, "atelier auditlog")
    await settle_until(atelier.env, lambda: "audit log is turned off" in lines()[-1].content, timeout=10,
                       what="the last line in the audit channel")
    await admin.slash(atelier.channel, "atelier cooldown", seconds=5)  # would be audited, were the log on
    await atelier.env.settle()
    assert "audit log is turned off" in lines()[-1].content


async def test_a_reaction_rerun_where_the_bot_lost_attach_files_is_refused_and_costs_nothing(
        atelier: World, app: App, fal: FakeFal) -> None:
    await atelier.alice.slash(atelier.channel, "imagine", prompt="a fox")
    first = await wait_for_result(atelier, 1)
    asked = len(fal.requests)
    # A moderator takes Attach Files from the bot in this channel (through Discord, so the bot hears of it).
    bot_ = atelier.env.bot
    channel = bot_.get_channel(atelier.channel.id)
    assert isinstance(channel, discord.TextChannel) and channel.guild.me is not None
    await channel.set_permissions(channel.guild.me, attach_files=False)
    await atelier.env.settle()
    await atelier.bob.react(first, "🔄")
    await settle_until(atelier.env, lambda: any("Attach Files" in m.content
                                                for m in atelier.bob.user.dm_channel.history()),
                       timeout=10, what="bob told privately which permission is missing")
    assert len(fal.requests) == asked
    assert await app.store.list_jobs(member_subject(atelier.bob), limit=10) == []


async def test_a_thread_follows_its_parent_channels_rules(atelier: World, admin: Any, app: App, fal: FakeFal) -> None:
    art = atelier.guild.create_text_channel("art")
    await admin.slash(atelier.channel, "atelier channels", command="imagine", rule="allow", channel=art)
    parent = atelier.env.bot.get_channel(art.id)
    assert isinstance(parent, discord.TextChannel)
    await parent.create_thread(name="sketches", type=discord.ChannelType.public_thread)
    await atelier.env.settle()
    [thread] = art.threads
    ok = await atelier.alice.slash(thread, "imagine", prompt="a fox")
    assert ok.response is not None and ok.response.content.startswith("Started job #1"), ok.response
    await admin.slash(atelier.channel, "atelier channels", command="imagine", rule="deny", channel=art)
    refused = await atelier.alice.slash(thread, "imagine", prompt="a fox")
    assert refused.ephemeral and refused.response is not None
    assert "cannot be used in this channel" in refused.response.content

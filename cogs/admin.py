"""/atelier …: a guild's own settings, for members with Manage Server. Everything persists in the database."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_audit import SETTING as AUDIT_SETTING
from bot.discord_audit import quote
from bot.discord_bot import AtelierBot
from bot.discord_errors import handled
from bot.errors import Refusal
from bot.money.caps import CHEAPEST, GuildBudget, month_bounds, parse_budget_amount, usd
from bot.money.usage import totals_by
from bot.operations import Operation
from bot.providers.registry import DEFAULT_ORDER, KNOWN
from bot.rules.blocklist import MAX_ENTRIES, parse_entry
from cogs._common import COMMANDS, Interaction, acknowledge, answer
from cogs._rules import ANY_COMMAND

OPERATIONS = [app_commands.Choice(name=op.value, value=op.value) for op in Operation]
LIMIT = app_commands.Range[int, 0, 10_000]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="atelier", group_description="Atelier settings for this server"):
    """Errors here reach the member through the command tree's one handler (bot.discord_errors)."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot
        super().__init__()

    def _scope(self, interaction: Interaction) -> str:
        assert interaction.guild is not None
        return f"guild:{interaction.guild.id}"

    async def _set(self, interaction: Interaction, key: str, value: object) -> None:
        assert interaction.guild is not None
        await self.bot.engine.set_guild_setting(interaction.guild.id, key, value)

    async def _settings(self, interaction: Interaction) -> dict[str, Any]:
        assert interaction.guild is not None
        return await self.bot.engine.guild_settings(interaction.guild.id)

    def _audit(self, interaction: Interaction, change: str, *, channel_id: int | None = None) -> None:
        """Every settings change by an admin gets a line in the audit log."""
        self.bot.audit.note(interaction.guild_id, f"{interaction.user.mention} changed a setting: {change}",
                            channel_id=channel_id)

    # --- where and who ---------------------------------------------------------------------------------------

    @app_commands.command(name="channels", description="Allow or deny a command in a channel")
    @app_commands.describe(command="The command (or all of them)", rule="allow: only there; deny: never there; "
                           "clear: remove this command's rules", channel="The channel (not needed for clear)")
    @app_commands.choices(command=[app_commands.Choice(name=c, value=c) for c in COMMANDS]
                          + [app_commands.Choice(name="all commands", value=ANY_COMMAND)],
                          rule=[app_commands.Choice(name=r, value=r) for r in ("allow", "deny", "clear")])
    async def channels(self, interaction: Interaction, command: app_commands.Choice[str],
                       rule: app_commands.Choice[str], channel: discord.TextChannel | discord.Thread | None = None,
                       ) -> None:
        async with handled(interaction, "/atelier channels"):
            await acknowledge(interaction)
            rules: dict[str, dict[str, list[int]]] = dict((await self._settings(interaction)).get("channel_rules", {}))
            name = "every command" if command.value == ANY_COMMAND else f"/{command.value}"
            if rule.value == "clear":
                rules.pop(command.value, None)
                text = f"{name} has no channel rules any more."
            else:
                if channel is None:
                    raise Refusal(f"Name the channel to {rule.value}.")
                mine = {k: list(v) for k, v in rules.get(command.value, {}).items()}
                other = "deny" if rule.value == "allow" else "allow"
                mine[rule.value] = sorted({*mine.get(rule.value, []), channel.id})
                mine[other] = [c for c in mine.get(other, []) if c != channel.id]
                rules[command.value] = mine
                text = (f"{name} now runs only in " + ", ".join(f"<#{c}>" for c in mine["allow"])
                        if rule.value == "allow" else f"{name} no longer runs in {channel.mention}") + "."
            await self._set(interaction, "channel_rules", rules)
            self._audit(interaction, text)
            await answer(interaction, text)

    block = app_commands.Group(name="block", description="Block members or roles from using Atelier here")

    @block.command(name="add", description="Block a member or a role from starting jobs in this server")
    async def block_add(self, interaction: Interaction, target: discord.Role | discord.Member) -> None:
        await self._block(interaction, target, add=True)

    @block.command(name="remove", description="Unblock a member or a role")
    async def block_remove(self, interaction: Interaction, target: discord.Role | discord.Member) -> None:
        await self._block(interaction, target, add=False)

    @block.command(name="list", description="Who is blocked in this server")
    async def block_list(self, interaction: Interaction) -> None:
        async with handled(interaction, "/atelier block list"):
            await acknowledge(interaction)
            blocked = (await self._settings(interaction)).get("blocked", {})
            names = [f"<@{m}>" for m in blocked.get("members", [])] + [f"<@&{r}>" for r in blocked.get("roles", [])]
            await answer(interaction, "Blocked: " + ", ".join(names) if names else "Nobody is blocked.")

    async def _block(self, interaction: Interaction, target: discord.Role | discord.Member, *, add: bool) -> None:
        async with handled(interaction, "/atelier block"):
            await acknowledge(interaction)
            kind = "roles" if isinstance(target, discord.Role) else "members"
            blocked = {k: list(v) for k, v in (await self._settings(interaction)).get("blocked", {}).items()}
            ids = set(blocked.get(kind, []))
            ids.add(target.id) if add else ids.discard(target.id)
            blocked[kind] = sorted(ids)
            await self._set(interaction, "blocked", blocked)
            text = f"{target.mention} is {'blocked' if add else 'no longer blocked'}."
            self._audit(interaction, text)
            await answer(interaction, text)

    # --- the prompt blocklist ----------------------------------------------------------------------------------

    blocklist = app_commands.Group(name="blocklist", description="Words or patterns refused in prompts here")

    @blocklist.command(name="add", description="Refuse prompts with this word or phrase (or re:<regular expression>)")
    @app_commands.describe(entry="A word or phrase, or re: followed by a regular expression")
    async def blocklist_add(self, interaction: Interaction, entry: app_commands.Range[str, 1, 300]) -> None:
        async with handled(interaction, "/atelier blocklist add"):
            await acknowledge(interaction)
            parsed = parse_entry(entry)  # refuses what is invalid, too long or too slow: nothing is stored then
            entries: list[str] = list((await self._settings(interaction)).get("blocklist", []))
            if parsed.text in entries:
                await answer(interaction, f"{quote(parsed.text, 200)} is already on the blocklist.")
                return
            if len(entries) >= MAX_ENTRIES:
                raise Refusal(f"The blocklist is full ({MAX_ENTRIES} entries); remove one first.")
            entries.append(parsed.text)
            await self._set(interaction, "blocklist", entries)
            self._audit(interaction, f"blocklist entry added: {quote(parsed.text, 200)}")
            await answer(interaction, f"Prompts matching {quote(parsed.text, 200)} are now refused "
                                      f"({'regular expression' if parsed.is_regex else 'word'}).")

    @blocklist.command(name="remove", description="Remove an entry from the blocklist")
    async def blocklist_remove(self, interaction: Interaction, entry: app_commands.Range[str, 1, 300]) -> None:
        async with handled(interaction, "/atelier blocklist remove"):
            await acknowledge(interaction)
            entries: list[str] = list((await self._settings(interaction)).get("blocklist", []))
            if entry.strip() not in entries:
                raise Refusal(f"{quote(entry, 200)} is not on this server's blocklist.")
            entries.remove(entry.strip())
            await self._set(interaction, "blocklist", entries)
            self._audit(interaction, f"blocklist entry removed: {quote(entry, 200)}")
            await answer(interaction, f"Removed {quote(entry, 200)} from the blocklist.")

    @blocklist.command(name="list", description="This server's blocklist")
    async def blocklist_list(self, interaction: Interaction) -> None:
        async with handled(interaction, "/atelier blocklist list"):
            await acknowledge(interaction)
            entries = (await self._settings(interaction)).get("blocklist", [])
            installed = len(self.bot.engine.install_blocklist)
            extra = f"\n(and {installed} entries for every server, set by the bot's operator)" if installed else ""
            await answer(interaction, ("Blocklist: " + ", ".join(quote(e, 100) for e in entries) if entries
                                       else "This server's blocklist is empty.") + extra)

    # --- the audit log ---------------------------------------------------------------------------------------

    @app_commands.command(name="auditlog", description="Where Atelier logs jobs, refusals and settings changes")
    @app_commands.describe(channel="The audit channel (leave empty to turn the audit log off)")
    async def auditlog(self, interaction: Interaction, channel: discord.TextChannel | None = None) -> None:
        async with handled(interaction, "/atelier auditlog"):
            await acknowledge(interaction)
            assert interaction.guild is not None
            if channel is None:
                current = (await self._settings(interaction)).get(AUDIT_SETTING)
                await self.bot.engine.clear_guild_setting(interaction.guild.id, AUDIT_SETTING)
                if current:  # the last line the old channel gets
                    self._audit(interaction, "the audit log is turned off", channel_id=int(current))
                await answer(interaction, "The audit log is off.")
                return
            await self._set(interaction, AUDIT_SETTING, channel.id)
            self._audit(interaction, f"the audit log now goes to {channel.mention}")
            await answer(interaction, f"The audit log now goes to {channel.mention}.")

    @app_commands.command(name="limits", description="Set this server's default daily and concurrent limits")
    @app_commands.describe(daily="Images per member per UTC day", concurrent="Jobs a member may have in flight")
    async def limits(self, interaction: Interaction, daily: LIMIT | None = None,
                     concurrent: app_commands.Range[int, 1, 100] | None = None) -> None:
        async with handled(interaction, "/atelier limits"):
            await acknowledge(interaction)
            await self.bot.engine.set_limit(self._scope(interaction), "scope", "", daily=daily,
                                               concurrent=concurrent)
            defaults = self.bot.engine.default_limits
            self._audit(interaction, f"server limits: daily {daily}, concurrent {concurrent}")
            await answer(interaction, f"Members now get {daily if daily is not None else defaults.daily} "
                                      f"images a day and {concurrent or defaults.concurrent} jobs at once, "
                                      f"unless a role or a member allowance says otherwise.")

    @app_commands.command(name="allowance", description="Give a role or a member their own limits")
    @app_commands.describe(target="A role or a member", daily="Images per day (leave both empty to remove)",
                           concurrent="Jobs at once")
    async def allowance(self, interaction: Interaction, target: discord.Role | discord.Member,
                        daily: LIMIT | None = None,
                        concurrent: app_commands.Range[int, 1, 100] | None = None) -> None:
        async with handled(interaction, "/atelier allowance"):
            await acknowledge(interaction)
            kind = "role" if isinstance(target, discord.Role) else "member"
            await self.bot.engine.set_limit(self._scope(interaction), kind, str(target.id), daily=daily,
                                               concurrent=concurrent)
            self._audit(interaction, f"allowance of {target.mention}: daily {daily}, concurrent {concurrent}")
            if daily is None and concurrent is None:
                await answer(interaction, f"{target.mention} has no allowance of its own any more.")
            else:
                await answer(interaction, f"{target.mention}: {daily if daily is not None else 'default'} images a "
                                          f"day, {concurrent or 'default'} jobs at once.")

    @app_commands.command(name="command", description="Turn a command on or off in this server")
    @app_commands.choices(name=[app_commands.Choice(name=c, value=c) for c in (*COMMANDS, "jobs", "quota")])
    async def command(self, interaction: Interaction, name: app_commands.Choice[str], enabled: bool) -> None:
        async with handled(interaction, "/atelier command"):
            await acknowledge(interaction)
            assert interaction.guild is not None
            current = set((await self.bot.engine.guild_settings(interaction.guild.id)).get("disabled_commands", []))
            current.discard(name.value) if enabled else current.add(name.value)
            await self._set(interaction, "disabled_commands", sorted(current))
            self._audit(interaction, f"/{name.value} turned {'on' if enabled else 'off'}")
            await answer(interaction, f"/{name.value} is now {'on' if enabled else 'off'} in this server.")

    @app_commands.command(name="providers", description="Choose the provider order for an operation")
    @app_commands.describe(operation="The operation",
                           order="Provider names in order, comma-separated, 'cheapest' or 'default'")
    @app_commands.choices(operation=OPERATIONS)
    async def providers(self, interaction: Interaction, operation: app_commands.Choice[str],
                        order: app_commands.Range[str, 1, 100]) -> None:
        async with handled(interaction, "/atelier providers"):
            await acknowledge(interaction)
            assert interaction.guild is not None
            op = Operation(operation.value)
            settings = await self.bot.engine.guild_settings(interaction.guild.id)
            chosen = dict(settings.get("provider_order", {}))
            if order.strip().lower() == "default":
                chosen.pop(op.value, None)
                names = list(DEFAULT_ORDER[op])
            elif order.strip().lower() == CHEAPEST:  # follows the prices, whatever they become
                chosen[op.value] = [CHEAPEST]
                await self._set(interaction, "provider_order", chosen)
                cheapest = ", ".join(self.bot.engine.cheapest_order(op)) or "nothing configured"
                await answer(interaction, f"{op.value} now runs on the cheapest provider first (today: {cheapest}).")
                return
            else:
                names = [n.strip().lower() for n in order.split(",") if n.strip()]
                unknown = [n for n in names if n not in KNOWN]
                able = self.bot.engine.providers_for(op)
                unable = [n for n in names if n in KNOWN and n not in able]
                if unknown or unable or not names:
                    problems = [f"unknown: {', '.join(unknown)}"] if unknown else []
                    problems += [f"not configured for {op.value}: {', '.join(unable)}"] if unable else []
                    await answer(interaction, "That order cannot be used (" + "; ".join(problems or ["empty"]) +
                                 f"). Configured for {op.value}: {', '.join(sorted(able)) or 'none'}.")
                    return
                chosen[op.value] = names
            await self._set(interaction, "provider_order", chosen)
            self._audit(interaction, f"{op.value} runs on {', '.join(names)}")
            await answer(interaction, f"{op.value} now runs on: {', '.join(names)}.")

    @app_commands.command(name="cooldown", description="Seconds a member waits between two jobs (0 = off)")
    async def cooldown(self, interaction: Interaction, seconds: app_commands.Range[int, 0, 3600]) -> None:
        async with handled(interaction, "/atelier cooldown"):
            await acknowledge(interaction)
            await self._set(interaction, "cooldown_s", seconds)
            self._audit(interaction, f"cooldown {seconds} s")
            await answer(interaction, "Cooldown is off." if seconds == 0 else f"Members wait {seconds} s between jobs.")

    @app_commands.command(name="usage", description="Who used how much today in this server")
    async def usage(self, interaction: Interaction) -> None:
        async with handled(interaction, "/atelier usage"):
            await acknowledge(interaction)
            rows = await self.bot.engine.scope_usage(self._scope(interaction))
            if not rows:
                await answer(interaction, "Nobody has made anything today.")
                return
            total = sum(r[1] for r in rows)
            lines = [f"<@{user}>: {images} image(s), {jobs} job(s)" for user, images, jobs in rows[:25]]
            await answer(interaction, f"Today: {total} image(s) by {len(rows)} member(s)\n" + "\n".join(lines)
                         + await self._spend_summary(interaction))

    async def _spend_summary(self, interaction: Interaction) -> str:
        """Issue 17: this month's spend in dollars, by day, member, command and provider."""
        assert interaction.guild is not None
        now = interaction.created_at
        rows = await self.bot.engine.spend_report(interaction.guild.id, since=month_bounds(now)[0])
        if not rows:
            return ""
        total = sum(r.micro for r in rows)
        parts = [f"\n\n**Spend this month: {usd(total)}**"]
        for title, field, show in (("by day", "date", str), ("by member", "user_id", lambda u: f"<@{u}>"),
                                   ("by command", "operation", lambda o: f"/{o}"), ("by provider", "provider", str)):
            entries = totals_by(rows, field)[:10]
            parts.append(f"{title}: " + ", ".join(f"{show(key)} {usd(micro)} ({images} img)"
                                                  for key, _, images, micro in entries))
        return "\n".join(parts)

    @app_commands.command(name="budget", description="Cap what this server's jobs may cost (US dollars)")
    @app_commands.describe(daily="Dollars per UTC day for the whole server, or 'off'",
                           monthly="Dollars per calendar month (UTC), or 'off'",
                           member_daily="Dollars per member per UTC day, or 'off'")
    async def budget(self, interaction: Interaction, daily: app_commands.Range[str, 1, 20] | None = None,
                     monthly: app_commands.Range[str, 1, 20] | None = None,
                     member_daily: app_commands.Range[str, 1, 20] | None = None) -> None:
        async with handled(interaction, "/atelier budget"):
            await acknowledge(interaction)
            assert interaction.guild is not None
            current = await self.bot.engine.budget(interaction.guild.id)
            given = {"daily": daily, "monthly": monthly, "member_daily": member_daily}
            if all(v is None for v in given.values()):
                await answer(interaction, describe_budget(current))
                return
            amounts: dict[str, int | None] = {}
            for name, text in given.items():
                if text is None:
                    amounts[name] = getattr(current, name)
                    continue
                try:
                    amounts[name] = parse_budget_amount(text)
                except ValueError as exc:
                    await answer(interaction, f"Nothing changed: {name.replace('_', ' ')} {exc}.")
                    return
            budget = GuildBudget(daily=amounts["daily"], monthly=amounts["monthly"],
                                 member_daily=amounts["member_daily"], set_by=str(interaction.user.id))
            await self.bot.engine.set_budget(interaction.guild.id, budget)
            await answer(interaction, describe_budget(budget) + " You will get a DM when the server passes 80% "
                                                                "of its daily or monthly budget.")


def describe_budget(budget: GuildBudget) -> str:
    def show(micro: int | None) -> str:
        return "no cap" if micro is None else usd(micro)

    return (f"Budget: {show(budget.daily)} a day, {show(budget.monthly)} a month for the server; "
            f"{show(budget.member_daily)} a day per member.")


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Admin(bot))

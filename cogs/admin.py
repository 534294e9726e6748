"""/atelier …: a guild's own settings, for members with Manage Server. Everything persists in the database."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_errors import handled
from bot.money.caps import CHEAPEST, GuildBudget, month_bounds, parse_budget_amount, usd
from bot.money.usage import totals_by
from bot.operations import Operation
from bot.providers.registry import DEFAULT_ORDER, KNOWN
from cogs._common import COMMANDS, Interaction, acknowledge, answer

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

    @app_commands.command(name="limits", description="Set this server's default daily and concurrent limits")
    @app_commands.describe(daily="Images per member per UTC day", concurrent="Jobs a member may have in flight")
    async def limits(self, interaction: Interaction, daily: LIMIT | None = None,
                     concurrent: app_commands.Range[int, 1, 100] | None = None) -> None:
        async with handled(interaction, "/atelier limits"):
            await acknowledge(interaction)
            await self.bot.engine.set_limit(self._scope(interaction), "scope", "", daily=daily,
                                               concurrent=concurrent)
            defaults = self.bot.engine.default_limits
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
            elif order.strip().lower() == CHEAPEST:  # issue 17: follows the prices, whatever they become
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
            await answer(interaction, f"{op.value} now runs on: {', '.join(names)}.")

    @app_commands.command(name="cooldown", description="Seconds a member waits between two jobs (0 = off)")
    async def cooldown(self, interaction: Interaction, seconds: app_commands.Range[int, 0, 3600]) -> None:
        async with handled(interaction, "/atelier cooldown"):
            await acknowledge(interaction)
            await self._set(interaction, "cooldown_s", seconds)
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

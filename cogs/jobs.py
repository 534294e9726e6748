"""/jobs, /quota and /cancel: a member's own view of their work, always private."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import AtelierError
from bot.store.models import IN_FLIGHT_STATES
from cogs._common import Refusal, acknowledge, answer, guild_context, refusal_text
from cogs._render import OPERATION_NAMES, jump_url

if TYPE_CHECKING:
    from bot.discord_bot import AtelierBot

STATE_ICONS = {"pending": "⏳", "submitting": "📡", "queued": "🕒", "running": "🎨", "fetching": "📡",
               "succeeded": "✅", "failed": "❌", "cancelled": "🚫"}


class Jobs(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent jobs (only you see this)")
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction)
        try:
            ctx = await guild_context(interaction, "jobs")
        except Refusal as exc:
            await answer(interaction, str(exc))
            return
        jobs = await self.bot.app.store.list_jobs(ctx.subject, limit=10)
        if not jobs:
            await answer(interaction, "You have no jobs in this server yet. Try /imagine.")
            return
        lines = []
        for job in jobs:
            link = jump_url(ctx.guild.id, job.channel_id, job.message_id or job.extra.get("status_message_id"))
            when = discord.utils.format_dt(job.created_at, "R")
            detail = f"{len(job.outputs)} image(s)" if job.outputs else (job.error_message or "")
            note = "undeliverable: the result could not be posted" if job.undeliverable else \
                job.extra.get("delivery_note")
            lines.append(f"{STATE_ICONS.get(job.state.value, '')} **#{job.id}** "
                         f"{OPERATION_NAMES.get(job.operation, job.operation)} · {job.provider} · {job.state.value} "
                         f"· {when}" + (f" · {detail[:80]}" if detail else "") + (f" · {note}" if note else "")
                         + (f" · [open]({link})" if link else ""))
        await answer(interaction, "\n".join(lines))

    @app_commands.command(name="quota", description="What you have used and have left today (only you see this)")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction)
        try:
            ctx = await guild_context(interaction, "quota")
        except Refusal as exc:
            await answer(interaction, str(exc))
            return
        usage = await self.bot.app.runner.usage(ctx.subject)
        resets = discord.utils.format_dt(usage.resets_at, "R")
        await answer(interaction, f"You have used **{usage.used_today}** of **{usage.limits.daily}** images today "
                                  f"({usage.remaining_today} left); the quota resets {resets}.\n"
                                  f"Jobs in flight: {usage.in_flight} of {usage.limits.concurrent}.")

    @app_commands.command(name="cancel", description="Cancel your job (your newest one in flight if no id is given)")
    @app_commands.describe(job="The job number (see /jobs)")
    @app_commands.guild_only()
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        await acknowledge(interaction)
        try:
            ctx = await guild_context(interaction, "cancel")
            if job is None:
                running = await self.bot.app.store.list_jobs(ctx.subject, limit=1, states=sorted(IN_FLIGHT_STATES))
                if not running:
                    raise Refusal("You have no job in flight to cancel.")
                job = running[0].id
            cancelled = await self.bot.app.runner.cancel(job, ctx.subject)
            refund = " Nothing was charged to your quota." if cancelled.refunded else ""
            await answer(interaction, f"Job #{job} is cancelled.{refund}")
        except (Refusal, AtelierError) as exc:
            await answer(interaction, refusal_text(exc))


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Jobs(bot))

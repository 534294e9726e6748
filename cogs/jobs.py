"""/jobs, /quota and /cancel: a member's own view of their work, always private, in the language of their Discord
client (`interaction.locale`)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.discord_errors import handled
from bot.errors import Refusal
from bot.i18n import N_, translate
from bot.i18n.formats import number
from bot.store.models import IN_FLIGHT_STATES, OUTFIT_KEY, OUTFIT_STEP_KEY, PostKind
from cogs._common import Interaction, acknowledge, answer, guild_context
from cogs._delivery import status_message_id
from cogs._render import OPERATION_NAMES, STATE_NAMES, jump_url
from cogs._show import show_again, showable

STATE_ICONS = {"pending": "⏳", "submitting": "📡", "queued": "🕒", "running": "🎨", "fetching": "📡",
               "succeeded": "✅", "failed": "❌", "cancelled": "🚫"}


class Jobs(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent jobs (only you see this)")
    @app_commands.guild_only()
    async def jobs(self, interaction: Interaction) -> None:
        async with handled(interaction, "/jobs"):
            await acknowledge(interaction)
            ctx = await guild_context(interaction, "jobs")
            jobs = await self.bot.engine.jobs_of(ctx.subject, limit=10)
            locale = interaction.locale
            if not jobs:
                await answer(interaction, translate(locale, "You have no jobs in this server yet. Try /imagine."))
                return
            # An outfit is two jobs and one entry: its second step's, once that has started.
            continued = {j.parent_job_id for j in jobs if j.extra.get(OUTFIT_STEP_KEY) == 2}
            lines = []
            for job in jobs:
                if job.id in continued:
                    continue
                posts = await self.bot.engine.posts_of(job.id)
                link = jump_url(ctx.guild_id, job.channel_id, job.message_id or status_message_id(posts))
                when = discord.utils.format_dt(job.created_at, "R")
                detail = translate(locale, "{count} image(s)", count=number(locale, len(job.outputs))) \
                    if job.outputs else (job.error_message or "")
                note = translate(locale, "undeliverable: the result could not be posted") if job.undeliverable \
                    else next((p.note for p in reversed(posts) if p.kind is PostKind.RESULT and p.note), None)
                name = N_("Outfit") if job.extra.get(OUTFIT_STEP_KEY) == 2 else N_("Outfit (step 1 of 2)") \
                    if job.extra.get(OUTFIT_KEY) else OPERATION_NAMES.get(job.operation)
                name = translate(locale, name) if name else job.operation
                state = STATE_NAMES.get(job.state.value)
                lines.append(f"{STATE_ICONS.get(job.state.value, '')} **#{job.id}** "
                             f"{name} · {job.provider} · {translate(locale, state) if state else job.state.value}"
                             f" · {when}" + (f" · {detail[:80]}" if detail else "") + (f" · {note}" if note else "")
                             + (f" · [{translate(locale, 'open')}]({link})" if link else ""))
            await answer(interaction, "\n".join(lines))

    @app_commands.command(name="show", description="Post one of your finished jobs here again, with its buttons")
    @app_commands.describe(job="The job number (see /jobs)")
    @app_commands.guild_only()
    async def show(self, interaction: Interaction, job: app_commands.Range[int, 1]) -> None:
        async with handled(interaction, "/show"):
            await acknowledge(interaction)
            ctx = await guild_context(interaction, "show")
            found = await showable(interaction, ctx, job)
            message = await show_again(interaction, ctx, found)
            await answer(interaction, translate(interaction.locale, "Posted job #{id} again: {link}", id=found.id,
                                                link=message.jump_url))

    @app_commands.command(name="quota", description="What you have used and have left today (only you see this)")
    @app_commands.guild_only()
    async def quota(self, interaction: Interaction) -> None:
        async with handled(interaction, "/quota"):
            await acknowledge(interaction)
            ctx = await guild_context(interaction, "quota")
            usage = await self.bot.engine.usage(ctx.subject)
            locale = interaction.locale
            # Discord shows the reset time in the reader's own language and time zone.
            resets = discord.utils.format_dt(usage.resets_at, "R")
            await answer(interaction, translate(
                locale, "You have used **{used}** of **{daily}** images today ({left} left); the quota resets "
                "{resets}.\nJobs in flight: {in_flight} of {concurrent}.", used=number(locale, usage.used_today),
                daily=number(locale, usage.limits.daily), left=number(locale, usage.remaining_today),
                resets=resets, in_flight=number(locale, usage.in_flight),
                concurrent=number(locale, usage.limits.concurrent)))

    @app_commands.command(name="cancel", description="Cancel your job (your newest one in flight if no id is given)")
    @app_commands.describe(job="The job number (see /jobs)")
    @app_commands.guild_only()
    async def cancel(self, interaction: Interaction, job: app_commands.Range[int, 1] | None = None) -> None:
        async with handled(interaction, "/cancel"):
            await acknowledge(interaction)
            ctx = await guild_context(interaction, "cancel")
            if job is None:
                running = await self.bot.engine.jobs_of(ctx.subject, limit=1, states=sorted(IN_FLIGHT_STATES))
                if not running:
                    raise Refusal(N_("You have no job in flight to cancel."))
                job = running[0].id
            cancelled = await self.bot.engine.cancel(job, ctx.subject)
            locale = interaction.locale
            refund = translate(locale, " Nothing was charged to your quota.") if cancelled.refunded else ""
            await answer(interaction, translate(locale, "Job #{id} is cancelled.", id=job) + refund)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Jobs(bot))

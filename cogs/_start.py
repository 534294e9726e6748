"""Starting a job from Discord: record it (quota charged), post its public message, then let it run."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from bot.codec import takes_seed
from bot.discord_bot import AtelierBot
from bot.discord_errors import handled
from bot.i18n import N_, translate
from bot.i18n.formats import money, percent
from bot.money.caps import CapState
from bot.operations import Request
from bot.store.models import Job
from cogs._common import (
    GuildContext,
    Interaction,
    acknowledge,
    answer,
    audited_refusals,
    check_job_prompt,
    guild_context,
)
from cogs._render import jump_url
from cogs._status import StatusPost

log = logging.getLogger(__name__)


Builder = Callable[[GuildContext], Awaitable[Request]]


async def run_job_command(interaction: Interaction, command: str, build: Builder, *,
                          parent: Callable[[], Awaitable[int | None]] | None = None,
                          extra: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Everything a job command does, however the member asked (a slash command, a context menu's form):
    acknowledge, check the owners' rules, build the request (downloads, checks), check the prompt, start the job.
    Refusals and failures alike go to the one error handler (bot.discord_errors). `parent`: the job the new one
    is made from (a context menu on a result), looked up once the interaction is acknowledged. `extra`: what the
    job's record keeps besides its request, read once the request is built (an outfit's second garment)."""
    bot = interaction.client
    async with handled(interaction, f"/{command}"):
        await acknowledge(interaction)
        async with audited_refusals(bot, interaction.guild_id, interaction.user, command):
            ctx = await guild_context(interaction, command)
            request = await build(ctx)
            await check_job_prompt(bot, ctx, command, getattr(request, "prompt", None))
            await start_job(interaction, ctx, request, parent_job_id=await parent() if parent else None,
                            extra=extra() if extra else None)


async def start_job(interaction: Interaction, ctx: GuildContext, request: Request, *,
                    parent_job_id: int | None = None, extra: Mapping[str, Any] | None = None) -> Job:
    """Charge the quota and record the job, post its public message, then let it run."""
    shown = StatusPost(interaction.client, ctx.channel, ctx.channel_id)
    prefs = await interaction.client.engine.member_prefs(ctx.member.id)
    job = await interaction.client.engine.start(ctx.subject, request, channel_id=str(ctx.channel_id),
                                                preferred=ctx.provider_order(request.operation), prepare=shown,
                                                withhold_nsfw=not await shows_nsfw(interaction.client, ctx),
                                                private=prefs.private_delivery, parent_job_id=parent_job_id,
                                                extra=extra, locale=ctx.locale, member_locale=ctx.member_locale)
    await tell_started(interaction, job, shown, cost=await price_line(interaction.client, ctx, job))
    await tell_budget_admins(interaction.client, ctx)
    return job


async def rerun_job(bot: AtelierBot, ctx: GuildContext, original: Job, *, vary: bool,
                    changes: Mapping[str, Any] | None = None) -> tuple[Job, StatusPost]:
    """Retry, vary or remix (`changes`) `original` as ctx's member's new job (charged to them), shown in ctx's
    channel like any other. 🎲 on an operation without a seed acts as Retry."""
    shown = StatusPost(bot, ctx.channel, ctx.channel_id)
    prefs = await bot.engine.member_prefs(ctx.member.id)  # whoever asks: their own way of getting results
    job = await bot.engine.rerun(original, ctx.subject, vary=vary and takes_seed(original.operation),
                                 channel_id=str(ctx.channel_id), prepare=shown,
                                 preferred=ctx.provider_order_for(original.operation),
                                 withhold_nsfw=not await shows_nsfw(bot, ctx), changes=changes,
                                 private=prefs.private_delivery, locale=ctx.locale,
                                 member_locale=ctx.member_locale)
    await tell_budget_admins(bot, ctx)
    return job, shown


async def shows_nsfw(bot: AtelierBot, ctx: GuildContext) -> bool:
    """Whether a result flagged NSFW will be shown in ctx's channel (age-restricted), as the deliverer decides it;
    a job whose result will be withheld is not charged for it. A reaction brings only a partial channel, so the
    flag comes from the gateway's cache or, failing that, from REST; unknown counts as not age-restricted."""
    nsfw = getattr(ctx.channel, "nsfw", None)
    if isinstance(nsfw, bool):
        return nsfw
    channel = bot.get_channel(ctx.channel_id)
    if channel is None:
        try:
            channel = await bot.fetch_channel(ctx.channel_id)
        except discord.HTTPException:
            return False
    return bool(getattr(channel, "nsfw", False))


async def tell_started(interaction: Interaction, job: Job, shown: StatusPost, *, cost: str = "") -> None:
    link = jump_url(job.subject.scope.removeprefix("guild:"), job.channel_id, shown.message_id)
    started = translate(interaction.locale, "Started job #{id}: {link}", id=job.id, link=link) if link else \
        translate(interaction.locale, "Started job #{id}.", id=job.id)
    await answer(interaction, started + cost)


# --- money ---------------------------------------------------------------------------------------------------

LEFT_LABELS = {"member_daily": N_("you today"), "guild_daily": N_("this server today"),
               "guild_monthly": N_("this server this month"), "install_daily": N_("this bot today")}


async def price_line(bot: AtelierBot, ctx: GuildContext, job: Job) -> str:
    """For a paid job: its estimated (worst-case) price and what is left of the member's and the server's budget."""
    cost = await bot.engine.reserved_cost(job.id)
    if cost == 0:
        return ""
    caps = await bot.engine.spend_caps(ctx.subject)
    locale = ctx.member_locale
    left = [translate(locale, "{who} {left} of {limit}", who=translate(locale, LEFT_LABELS[c.name]),
                      left=money(locale, c.left), limit=money(locale, c.limit)) for c in caps]
    if not left:
        return "\n" + translate(locale, "Estimated cost: up to {cost}.", cost=money(locale, cost))
    return "\n" + translate(locale, "Estimated cost: up to {cost}; left: {left}.", cost=money(locale, cost),
                            left=", ".join(left))


def budget_notice(locale: object, server: str, cap: CapState, *, monthly: bool) -> str:
    """That a server passed 80% of a cap, in `locale`'s language (the audit log's is English: None)."""
    text = N_("the server {server} has used {spent} of its monthly budget of {limit} ({share}). Jobs that would go "
              "over it are refused; `/atelier budget` changes it.") if monthly else \
        N_("the server {server} has used {spent} of its daily budget of {limit} ({share}). Jobs that would go over "
           "it are refused; `/atelier budget` changes it.")
    return translate(locale, text, server=server, spent=money(locale, cap.spent), limit=money(locale, cap.limit),
                     share=percent(locale, cap.spent * 100 // cap.limit))


async def tell_budget_admins(bot: AtelierBot, ctx: GuildContext) -> None:
    """Once per period, the server's admins hear that it passed 80% of a cap: in its audit channel (where it has
    one) and by DM to the member who set the budget."""
    try:
        due = await bot.engine.due_budget_notices(ctx.subject)
        if not due:
            return
        budget = await bot.engine.budget(ctx.guild_id)
        texts = []
        for cap in due:
            monthly = cap.name == "guild_monthly"
            bot.audit.note(ctx.guild_id, "budget: " + budget_notice(None, ctx.member.guild.name, cap, monthly=monthly))
            # The member who set the budget is told in the server's language: theirs is not known outside a command.
            texts.append(budget_notice(ctx.locale, ctx.member.guild.name, cap, monthly=monthly))
        if budget.set_by is None:
            return
        user = bot.get_user(int(budget.set_by)) or await bot.fetch_user(int(budget.set_by))
        for text in texts:
            await user.send(translate(ctx.locale, "Atelier: {notice}", notice=text),
                            allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as exc:  # DMs closed, or the member left: the budget still holds
        log.warning("guild %s: could not tell its budget's owner it passed 80%%: %s", ctx.guild_id, exc)

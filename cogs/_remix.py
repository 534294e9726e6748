"""Remix: a result's button opens a form pre-filled with the job's parameters; what the member changes runs as
their new job, through the same rules, caps and refusals as the command itself.

A form (modal) must be the interaction's first response — it cannot follow a defer — so the button opens it at once
(the job was already looked up by its token) and all the slow work happens when the form is submitted.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.discord_errors import handled, report_interaction
from bot.errors import Refusal
from bot.i18n import N_, translate
from bot.operations import MASKS, Size
from bot.store.models import Job
from cogs._common import Interaction, acknowledge, audited_refusals, check_job_prompt, guild_context
from cogs._start import price_line, rerun_job, tell_started

FORM_TIMEOUT_S = 30 * 60  # Discord never says when a form is closed unsent; after this it is forgotten
MAX_SEED = 2**32 - 1  # the commands' own range for seed
MAX_COUNT = 4
PROMPT_INPUT_MAX = 4000  # Discord's limit for a text input; the prompt's own limit is checked like a command's
MASK_LABELS = {"overall": N_("Whole outfit"), "upper": N_("Upper body"), "lower": N_("Lower body")}


def _text(label: str, custom_id: str, default: str, *, style: discord.TextStyle = discord.TextStyle.short,
          required: bool = False, max_length: int = 40, description: str | None = None
          ) -> discord.ui.Label[Any]:
    field: discord.ui.TextInput[Any] = discord.ui.TextInput(custom_id=custom_id, style=style, default=default or None,
                                                            required=required, max_length=max_length)
    return discord.ui.Label(text=label, component=field, description=description)


class RemixForm(discord.ui.Modal):
    """The job's parameters, as the member may change them: prompt, size, seed and count (edit, imagine), the
    filter's name (filter) or the mask (try-on). At most five components, as Discord allows."""

    def __init__(self, job: Job, locale: object = None) -> None:
        """`locale`: the member's Discord client's, whose language the form speaks."""
        def _(text: str, **params: object) -> str:
            return translate(locale, text, **params)
        # A random custom_id (discord.py's default): two members may have this job's form open at once.
        super().__init__(title=_("Remix job #{id}", id=job.id)[:45], timeout=FORM_TIMEOUT_S)
        self.job = job
        self.fields: dict[str, discord.ui.TextInput[Any] | discord.ui.Select[Any]] = {}
        request = job.request
        if job.operation in ("edit", "imagine"):
            self._add("prompt", _text(_("Prompt"), "prompt", request.get("prompt") or "", required=True,
                                      style=discord.TextStyle.paragraph, max_length=PROMPT_INPUT_MAX))
            self._add("size", _text(_("Size"), "size", request.get("size") or "", description=_(
                "A preset such as square_hd or landscape_16_9, or WIDTHxHEIGHT; empty: the provider's default")))
            seed = request.get("seed")
            self._add("seed", _text(_("Seed"), "seed", "" if seed is None else str(seed),
                                    description=_("{low} to {high}; empty: a new random one", low=0, high=MAX_SEED)))
            self._add("count", _text(_("How many images"), "count", str(request.get("count") or 1), required=True,
                                     max_length=2, description=_("{low} to {high}", low=1, high=MAX_COUNT)))
        elif job.operation == "filter":
            self._add("name", _text(_("Filter"), "name", request.get("name") or "", required=True, max_length=100,
                                    description=_("The filter's name, as /filter offers them")))
        else:
            current = request.get("mask") or "overall"
            select: discord.ui.Select[Any] = discord.ui.Select(custom_id="mask", required=False, options=[
                discord.SelectOption(label=_(MASK_LABELS[m]), value=m, default=m == current) for m in MASKS])
            self.fields["mask"] = select
            self.add_item(discord.ui.Label(text=_("Which part of the outfit to replace"), component=select))

    def _add(self, name: str, label: discord.ui.Label[Any]) -> None:
        assert isinstance(label.component, discord.ui.TextInput)
        self.fields[name] = label.component
        self.add_item(label)

    def value(self, name: str) -> str:
        field = self.fields[name]
        if isinstance(field, discord.ui.TextInput):
            return field.value.strip()
        return str(field.values[0]) if field.values else ""

    def changes(self) -> dict[str, Any]:
        """What the member asked for, as the request's fields; a value no command would take is refused here with
        the command's own words (the rest — prompt length, the size a provider takes, a filter's name — is checked
        where every new job is)."""
        if self.job.operation in ("edit", "imagine"):
            size = self.value("size")
            return {"prompt": self.value("prompt"), "size": Size.parse(size) if size else None,
                    "seed": _whole(self.value("seed"), "seed", 0, MAX_SEED, empty=None),
                    "count": _whole(self.value("count"), "count", 1, MAX_COUNT, empty=1)}
        if self.job.operation == "filter":
            name = self.value("name")
            if not name:
                raise Refusal(N_("Name a filter (start typing in /filter to see them)."))
            return {"name": name}
        mask = self.value("mask") or "overall"
        if mask not in MASKS:
            raise Refusal(N_("mask must be overall, upper or lower."))
        return {"mask": mask}

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        async with handled(interaction, "the Remix form"):
            await acknowledge(interaction)
            bot, original = interaction.client, self.job
            async with audited_refusals(bot, interaction.guild_id, interaction.user, original.operation):
                ctx = await guild_context(interaction, original.operation)
                changes = self.changes()
                await check_job_prompt(bot, ctx, original.operation, changes.get("prompt"))
                job, shown = await rerun_job(bot, ctx, original, vary=False, changes=changes)
            await tell_started(interaction, job, shown, cost=await price_line(bot, ctx, job))

    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction(interaction, error, "the Remix form")


def _whole(text: str, name: str, low: int, high: int, *, empty: int | None) -> int | None:
    if not text:
        return empty
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise Refusal(N_("The {name} must be a whole number from {low} to {high}; {value} is not."), name=name, low=low,
                      high=high, value=repr(text[:20]))
    return number


async def open_remix(interaction: Interaction, job: Job) -> None:
    """The Remix button: the form is the first (and only) response, within Discord's three seconds."""
    await interaction.response.send_modal(RemixForm(job, interaction.locale))

"""Buttons that name their job by its public token, so they keep working after restarts and can never act on
another installation's job. Buttons posted before tokens existed name the row id; they are honoured only on the very
message this database recorded for that job."""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import discord

from bot.codec import takes_seed
from bot.discord_errors import AtelierView, handled
from bot.errors import Refusal
from bot.i18n import N_, translate
from bot.store.models import Job, JobState
from cogs._common import Interaction, acknowledge
from cogs._render import locale_of

RETRY, VARY, REMIX, DELETE, CANCEL, MAIL = "🔄", "🎲", "🎛️", "❌", "🚫", "✉️"
ACTIONS = "retry|vary|remix|delete|cancel"
# These answer with a form, which must be the interaction's first response: no defer before them.
OPENS_A_FORM = frozenset({"remix"})
RESULT_ACTIONS = ("retry", "vary", "delete")
EARLIER_INSTALLATION = N_("This button is from an earlier installation of Atelier, so it no longer does anything "
                          "here. Start a new job with a command.")
LABELS = {"retry": (N_("Retry"), RETRY, discord.ButtonStyle.secondary),
          "vary": (N_("Vary"), VARY, discord.ButtonStyle.secondary),
          "remix": (N_("Remix"), REMIX, discord.ButtonStyle.secondary),
          "delete": (N_("Delete"), DELETE, discord.ButtonStyle.danger),
          "cancel": (N_("Cancel"), CANCEL, discord.ButtonStyle.secondary)}


def custom_id(action: str, token: str) -> str:
    return f"atelier:v2:{action}:{token}"


@runtime_checkable
class ButtonActions(Protocol):
    async def on_button(self, interaction: Interaction, action: str, job: Job) -> None: ...


async def _act(interaction: Interaction, action: str, job: Job | None) -> None:
    async with handled(interaction, f"the {action} button"):
        if action not in OPENS_A_FORM:
            await acknowledge(interaction)
        if job is None:
            raise Refusal(EARLIER_INSTALLATION)
        # The actions live with the Results cog, which owns everything a result can do.
        results = interaction.client.get_cog("Results")
        if not isinstance(results, ButtonActions):
            raise Refusal(N_("Atelier is restarting; please try again in a moment."))
        await results.on_button(interaction, action, job)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=rf"atelier:v2:(?P<action>{ACTIONS}):(?P<token>[0-9a-f]{{20}})"):
    def __init__(self, action: str, token: str, locale: str | None = None) -> None:
        # The label is in the post's language; a click is recognised by its custom_id alone, whatever the label.
        label, emoji, style = LABELS[action]
        super().__init__(discord.ui.Button(label=translate(locale, label), emoji=emoji, style=style,
                                           custom_id=custom_id(action, token)))
        self.action = action
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> JobButton:
        return cls(match["action"], match["token"])

    # discord.py types item callbacks for any client; this one only ever runs in an AtelierBot.
    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # A token this database never issued is another installation's job (or a forged id): nothing to act on.
        await _act(interaction, self.action, await interaction.client.engine.job_by_token(self.token))


class LegacyJobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                      template=rf"atelier:(?P<action>{ACTIONS}):(?P<job>\d+)"):
    """`atelier:<action>:<row id>`, as posted before job tokens. A row id means nothing across databases (in a
    fresh one, row 5 is somebody else's job), so it is believed only where this database recorded that message as
    a post of that very job."""

    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"atelier:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> LegacyJobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        job = None
        if interaction.message is not None:
            found = await interaction.client.engine.job_for_message(interaction.message.id)
            job = found if found is not None and found.id == self.job_id else None
        await _act(interaction, self.action, job)


def result_view(job: Job) -> discord.ui.View:
    locale = locale_of(job)
    view = AtelierView(timeout=None)
    view.add_item(JobButton("retry", job.token, locale))
    if takes_seed(job.operation):
        view.add_item(JobButton("vary", job.token, locale))
    view.add_item(JobButton("remix", job.token, locale))
    if job.state is JobState.SUCCEEDED:
        view.add_item(JobButton("delete", job.token, locale))
    return view


def status_view(job: Job) -> discord.ui.View:
    view = AtelierView(timeout=None)
    if not job.state.terminal:
        view.add_item(JobButton("cancel", job.token, locale_of(job)))
    return view


def carries_legacy_id(message: discord.Message, job_id: int, actions: tuple[str, ...]) -> bool:
    """Whether one of the message's buttons is an old-format one (row id) naming this job and one of these actions.
    Alone this proves nothing (every database has a job 1); see DiscordDelivery._already_posted."""
    wanted = {f"atelier:{action}:{job_id}" for action in actions}
    return any(getattr(child, "custom_id", None) in wanted for row in message.components
               for child in getattr(row, "children", ()))


def carries_token(message: discord.Message, token: str, actions: tuple[str, ...]) -> bool:
    """Whether one of the message's buttons names this job and one of these actions: only a post of this job can
    (the token is random per job and per installation), whatever the message's text says."""
    wanted = {custom_id(action, token) for action in actions}
    return any(getattr(child, "custom_id", None) in wanted for row in message.components
               for child in getattr(row, "children", ()))

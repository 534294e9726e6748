"""Buttons keyed by job id in their custom_id, so they keep working on old messages and after restarts."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord.ext import commands

from bot.codec import takes_seed
from bot.store.models import Job, JobState
from cogs._common import acknowledge, answer

RETRY, VARY, DELETE, CANCEL, MAIL = "🔄", "🎲", "❌", "🚫", "✉️"


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                template=r"atelier:(?P<action>retry|vary|delete|cancel):(?P<job>\d+)"):
    def __init__(self, action: str, job_id: int) -> None:
        labels = {"retry": ("Retry", RETRY, discord.ButtonStyle.secondary),
                  "vary": ("Vary", VARY, discord.ButtonStyle.secondary),
                  "delete": ("Delete", DELETE, discord.ButtonStyle.danger),
                  "cancel": ("Cancel", CANCEL, discord.ButtonStyle.secondary)}
        label, emoji, style = labels[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"atelier:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction)
        # The actions live with the Results cog, which owns everything a result can do.
        results = interaction.client.get_cog("Results") if isinstance(interaction.client, commands.Bot) else None
        if results is None:
            await answer(interaction, "Atelier is restarting; please try again in a moment.")
            return
        await results.on_button(interaction, self.action, self.job_id)  # type: ignore[attr-defined]


def result_view(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("retry", job.id))
    if takes_seed(job.operation):
        view.add_item(JobButton("vary", job.id))
    if job.state is JobState.SUCCEEDED:
        view.add_item(JobButton("delete", job.id))
    return view


def status_view(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if not job.state.terminal:
        view.add_item(JobButton("cancel", job.id))
    return view

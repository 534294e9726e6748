"""The one error handler for everything a member triggers in Discord: slash commands (the tree's on_error), buttons
(DynamicItem callbacks), views (AtelierView.on_error; a modal, when there is one, does the same) and reactions.

An error Atelier expected (bot.errors: a refusal, a quota, bad input, a provider's answer) is told to the member as
it is. Anything else is logged with its traceback under a short reference, and the member is told that reference, so
the operator can find the traceback. The answer is private: the interaction's response or a follow-up while the
interaction lives; else a direct message; else a mention in the channel that deletes itself.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import discord
from discord import app_commands

from bot.discord_mentions import NOBODY, only
from bot.errors import AtelierError, InputError, Refusal, Term
from bot.i18n import N_, translate

log = logging.getLogger(__name__)

OTHER_GUILD = N_("This install of Atelier serves listed servers only, so it does nothing here.")
MENTION_LIFETIME_S = 30.0  # long enough to read, short enough not to clutter the channel
MAX_ANSWER = 1900


def new_reference() -> str:
    return secrets.token_hex(3).upper()


def unwrap(error: BaseException) -> BaseException:
    """The exception the command itself raised (discord.py wraps it in CommandInvokeError)."""
    while isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError) and \
            error.__cause__ is not None:
        error = error.__cause__
    return error


def explain(error: BaseException, where: str, locale: object = None) -> str:
    """What the member reads, in `locale`'s language (a Discord locale; English for None or one without a
    catalog); unexpected errors are logged here, with their traceback, under a new reference."""
    error = unwrap(error)
    if isinstance(error, Refusal | InputError):
        return translate(locale, error.msgid, **_told(locale, error.params))
    if isinstance(error, AtelierError) and error.args and isinstance(error.args[0], Term):  # a quota's words
        return told(locale, error.args[0])
    if isinstance(error, AtelierError):
        return translate(locale, str(error))  # a text the catalogs know, or as it is (a provider's own words)
    if isinstance(error, app_commands.NoPrivateMessage):
        return translate(locale, "Atelier works in servers: use this command in a server channel.")
    if isinstance(error, app_commands.CheckFailure | app_commands.CommandOnCooldown):
        return str(error) or translate(locale, "You cannot use this here.")
    reference = new_reference()
    log.error("unexpected error in %s (reference %s)", where, reference, exc_info=error)
    return translate(locale, "Something went wrong on our side (reference `{reference}`). Please try again; if it "
                     "keeps happening, give this reference to the server's admins.", reference=reference)


def told(locale: object, term: Term) -> str:
    """A Term in `locale`'s language, its own Term parameters too."""
    return translate(locale, term.msgid, **_told(locale, term.params))


def _told(locale: object, params: dict[str, object]) -> dict[str, object]:
    return {k: told(locale, v) if isinstance(v, Term) else v for k, v in params.items()}


async def tell(client: discord.Client, text: str, *, user_id: int, channel_id: int | None = None,
               interaction: discord.Interaction[Any] | None = None) -> None:
    """Say something to one member privately, by the best way still open."""
    text = text[:MAX_ANSWER]
    if interaction is not None and not interaction.is_expired() and await _answer(interaction, text):
        return
    if await _direct(client, user_id, text):
        return
    if channel_id is not None and await _mention(client, channel_id, user_id, text):
        return
    log.warning("could not tell member %s: %s", user_id, text)


async def _answer(interaction: discord.Interaction[Any], text: str) -> bool:
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NOBODY)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NOBODY)
    except discord.HTTPException as exc:
        log.info("could not answer interaction %s (%s); trying a direct message", interaction.id, exc.status)
        return False
    return True


async def _direct(client: discord.Client, user_id: int, text: str) -> bool:
    try:
        user = client.get_user(user_id) or await client.fetch_user(user_id)
        await user.send(text, allowed_mentions=NOBODY)
    except discord.HTTPException:
        return False
    return True


async def _mention(client: discord.Client, channel_id: int, user_id: int, text: str) -> bool:
    """Reactions carry no interaction, and DMs may be closed: a mention in the channel that deletes itself."""
    try:
        await client.get_partial_messageable(channel_id).send(
            f"<@{user_id}> {text}", delete_after=MENTION_LIFETIME_S, allowed_mentions=only(user_id))
    except discord.HTTPException:
        return False
    return True


async def report(client: discord.Client, error: BaseException, *, where: str, user_id: int,
                 channel_id: int | None = None, interaction: discord.Interaction[Any] | None = None) -> None:
    """Handle an error from anything a member triggered: explain it to them privately, in the language of their
    Discord client when there is an interaction to say it (logging what was not expected). Never raises: it is the
    last handler."""
    try:
        locale = interaction.locale if interaction is not None else None
        await tell(client, explain(error, where, locale), user_id=user_id, channel_id=channel_id,
                   interaction=interaction)
    except Exception:
        log.exception("the error handler failed for %s", where)


async def report_interaction(interaction: discord.Interaction[Any], error: BaseException, where: str) -> None:
    await report(interaction.client, error, where=where, user_id=interaction.user.id,
                 channel_id=interaction.channel_id, interaction=interaction)


_answering = 0


def answering() -> int:
    """Commands and buttons being answered right now: a drain waits for them (bot.ops.drain), so that a process
    stopping never leaves a member looking at "thinking…" for ever."""
    return _answering


@contextlib.asynccontextmanager
async def handled(interaction: discord.Interaction[Any], where: str) -> AsyncIterator[None]:
    """Wrap a command's body: whatever it raises is answered by the one handler, here, so a refusal is an answer and
    not an error of the command (what escapes a command's body still reaches AtelierTree.on_error)."""
    global _answering  # noqa: PLW0603 - one count per process, as there is one bot per process
    _answering += 1
    try:
        yield
    except Exception as exc:
        await report_interaction(interaction, exc, where)
    finally:
        _answering -= 1


class AtelierTree(app_commands.CommandTree[Any]):
    """The command tree whose on_error is the one handler (discord.py's default only logs)."""

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """DISCORD_ALLOWED_GUILDS: a command from any other guild is answered privately, and nothing runs."""
        allowed: frozenset[int] = interaction.client.engine.allowed_guilds
        if not allowed or interaction.guild_id in allowed:
            return True
        if interaction.type is discord.InteractionType.application_command:  # autocomplete gets no choices
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.send_message(translate(interaction.locale, OTHER_GUILD), ephemeral=True,
                                                        allowed_mentions=NOBODY)
        return False

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        command = interaction.command
        await report_interaction(interaction, error, f"/{command.qualified_name}" if command else "a command")


class AtelierView(discord.ui.View):
    """Every view Atelier builds: a failing item callback reaches the one handler."""

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception,
                       item: discord.ui.Item[Any], /) -> None:
        await report_interaction(interaction, error, f"component {getattr(item, 'custom_id', item)!r}")


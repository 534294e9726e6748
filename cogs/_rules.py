"""An owner's rules, checked before anything paid is sent: which guilds, which channels, who is blocked, whether the
bot may post the result where it was asked for, and the prompt blocklist. A broken rule is a private Refusal and
costs nothing; the ones an owner wants to know about (a blocked member, a blocked prompt) also go to the audit log.

Guild settings used (each a JSON value in guild_settings, so no migration is needed):
- "channel_rules": {command or "*": {"allow": [channel ids], "deny": [channel ids]}}
- "blocked": {"members": [ids], "roles": [ids]}
- "blocklist": [entries as typed: a word or phrase, or "re:<pattern>"]
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Any

import discord

from bot.discord_audit import quote
from bot.discord_errors import OTHER_GUILD
from bot.errors import Refusal
from bot.i18n import N_
from bot.rules.blocklist import Blocklist, Hit, parse_entries

log = logging.getLogger(__name__)
__all__ = ["OTHER_GUILD", "RuleRefusal", "check_blocked", "check_channel", "check_permissions", "check_prompt",
           "serves"]

ANY_COMMAND = "*"


class RuleRefusal(Refusal):
    """A refusal an owner's rule made (block, blocklist): audited, besides being told to the member."""

    def __init__(self, message: str, audit: str) -> None:
        super().__init__(message)
        self.audit = audit


def serves(allowed: frozenset[int], guild_id: int | None) -> bool:
    """Whether this install serves the guild (DISCORD_ALLOWED_GUILDS empty: every guild)."""
    return not allowed or (guild_id is not None and guild_id in allowed)


def check_channel(settings: dict[str, Any], command: str, channel_id: int, parent_id: int | None = None) -> None:
    """The guild's channel rules for `command` (a thread follows its parent channel's rules)."""
    rules: dict[str, dict[str, list[int]]] = settings.get("channel_rules", {})
    here = {channel_id} | ({parent_id} if parent_id else set())
    for key in (ANY_COMMAND, command):
        rule = rules.get(key, {})
        if here & set(rule.get("deny", [])):
            raise _not_here(command, rule.get("allow", []) or rules.get(ANY_COMMAND, {}).get("allow", []))
        allowed = rule.get("allow", [])
        if allowed and not here & set(allowed):
            raise _not_here(command, allowed)


def _not_here(command: str, channels: list[int]) -> Refusal:
    if not channels:
        return Refusal(N_("/{command} cannot be used in this channel."), command=command)
    # Channel mentions ping nobody; they render as links to the channel.
    return Refusal(N_("/{command} cannot be used in this channel. Use {channels}."), command=command,
                   channels=", ".join(f"<#{c}>" for c in channels[:5]))


def check_blocked(settings: dict[str, Any], member: discord.Member, command: str) -> None:
    blocked: dict[str, list[int]] = settings.get("blocked", {})
    if member.id in blocked.get("members", []):
        raise RuleRefusal(N_("You cannot use Atelier in this server."), f"refused /{command} for {member.mention}: "
                          "the member is blocked")
    roles = {r.id for r in member.roles} & set(blocked.get("roles", []))
    if roles:
        raise RuleRefusal(N_("You cannot use Atelier in this server."), f"refused /{command} for {member.mention}: "
                          f"role <@&{min(roles)}> is blocked")


def missing_permissions(perms: discord.Permissions, *, in_thread: bool) -> list[str]:
    """What the bot lacks to post a result here: the status message, the images as attachments, and the reply to
    the status message (a reply needs Read Message History; so does looking for a result already posted)."""
    missing = []
    if not perms.view_channel:
        missing.append("View Channel")
    if in_thread and not perms.send_messages_in_threads:
        missing.append("Send Messages in Threads")
    if not in_thread and not perms.send_messages:
        missing.append("Send Messages")
    if not perms.attach_files:
        missing.append("Attach Files")
    if not perms.read_message_history:
        missing.append("Read Message History")
    return missing


def check_permissions(perms: discord.Permissions | None, *, in_thread: bool) -> None:
    """Refuse before anything is charged when the result could not be posted here. None: not known (a reaction
    in a channel the gateway cache does not hold); the delivery's DM fallback still covers that case."""
    if perms is None:
        return
    missing = missing_permissions(perms, in_thread=in_thread)
    if missing:
        # Permission names as Discord's English settings name them: they are what an admin searches for.
        raise Refusal(N_("Atelier may not post its result in this channel (missing permission: {missing}). Ask an "
                         "admin to allow it, or use another channel. Nothing was charged."), missing=", ".join(missing))


@lru_cache(maxsize=256)
def _guild_blocklist(entries: tuple[str, ...]) -> Blocklist:
    # Parsed once per distinct list; a guild's list changes only by /atelier blocklist.
    return parse_entries(entries)


async def check_prompt(install: Blocklist, settings: dict[str, Any], prompt: str | None, *, command: str,
                       member: discord.Member) -> None:
    """The install's and the guild's blocklists. The log and the audit line name the entry, not the prompt in full:
    the owner sees which rule fired and a short quote, the bot's log holds no member's text."""
    if not prompt:
        return
    entries = tuple(settings.get("blocklist", []))
    if not len(install) and not entries:
        return

    def check() -> Hit | None:  # compiling a changed list and matching are CPU work: off the event loop
        return (install + _guild_blocklist(entries)).check(prompt)

    hit = await asyncio.to_thread(check)
    if hit is None:
        return
    log.info("prompt refused by the blocklist for member %s (/%s, entry %r%s)", member.id, command, hit.entry,
             ", timed out" if hit.timed_out else "")
    raise RuleRefusal(N_("That prompt is not allowed in this server. Nothing was sent or charged."),
                      f"refused /{command} for {member.mention}: the blocklist (entry {quote(hit.entry, 60)}) "
                      f"matched {quote(prompt, 80)}")

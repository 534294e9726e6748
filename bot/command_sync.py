"""Publishing the slash commands only when they changed, and by one process.

Discord allows 200 command creates a day per guild, and a fleet whose every process synced at every start would
spend that on restarts. Before publishing a scope (the global commands, or one guild's), the payload discord.py
would send — translations included, as `CommandTree.sync` builds it — is hashed with the application id; the store
publishes it only when that digest differs from the one recorded when the scope was last published, one process at
a time (bot.store: `sync_commands_once`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import discord
from discord import app_commands

from bot.store.base import JobStore

GLOBAL = "global"


def scope_of(guild: discord.abc.Snowflake | None) -> str:
    return GLOBAL if guild is None else f"guild:{guild.id}"


async def payload(tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None) -> list[dict[str, Any]]:
    """What `tree.sync(guild=guild)` would send, built the same way."""
    commands = tree._get_all_commands(guild=guild)  # the very list CommandTree.sync sends
    translator = tree.translator
    if translator is not None:
        return [await command.get_translated_payload(tree, translator) for command in commands]
    return [command.to_dict(tree) for command in commands]


def digest(application_id: int | None, commands: list[dict[str, Any]]) -> str:
    text = json.dumps({"application": application_id, "commands": commands}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def publish_if_changed(tree: app_commands.CommandTree[Any], store: JobStore,
                             guild: discord.abc.Snowflake | None = None) -> bool:
    """Publish the commands of one scope unless they are as last published; True when they were published."""
    sent = await payload(tree, guild)

    async def publish() -> None:
        await tree.sync(guild=guild)

    return await store.sync_commands_once(scope_of(guild), digest(tree.client.application_id, sent), publish)

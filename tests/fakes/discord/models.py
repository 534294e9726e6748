"""The fake Discord's world: users, guilds, roles, channels, messages, attachments and interactions, and the JSON
shapes discord.py 2.7 parses from them (/work/shared/docs/discord.md §1.3).

Only the fields discord.py reads, plus those a test asserts on. Ids are real snowflakes (discord.py derives
`created_at` and `Interaction.expires_at` from them), so they carry the current time.
"""

from __future__ import annotations

import io
import itertools
import mimetypes
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntFlag
from typing import Any

from PIL import Image, UnidentifiedImageError

DISCORD_EPOCH_MS = 1_420_070_400_000
_counter = itertools.count()
_counter_lock = threading.Lock()


def snowflake() -> int:
    """A new id, increasing, stamped with the current time like Discord's."""
    with _counter_lock:
        increment = next(_counter) & 0xFFF
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17) | increment


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class Perm(IntFlag):
    """The permission bits the fake checks (discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    MANAGE_GUILD = 1 << 5
    USE_APPLICATION_COMMANDS = 1 << 31


# What @everyone may do in a fresh guild (a subset of Discord's defaults that matters here).
EVERYONE_DEFAULT = (Perm.CREATE_INSTANT_INVITE | Perm.ADD_REACTIONS | Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES
                    | Perm.EMBED_LINKS | Perm.ATTACH_FILES | Perm.READ_MESSAGE_HISTORY | Perm.MENTION_EVERYONE
                    | Perm.USE_EXTERNAL_EMOJIS | Perm.USE_APPLICATION_COMMANDS)
ALL_PERMISSIONS = (1 << 53) - 1


class Intent(IntFlag):
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13


# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2

# Channel types.
GUILD_TEXT = 0
DM = 1


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    dms_open: bool = True  # False: the bot cannot DM them (403 50007)

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.username, "discriminator": "0", "global_name": self.username,
                "avatar": None, "bot": self.bot, "system": False, "public_flags": 0, "flags": 0, "banner": None,
                "accent_color": None, "avatar_decoration_data": None, "primary_guild": None}

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None
    mentionable: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "name": self.name, "color": 0, "colors": {"primary_color": 0},
            "hoist": False, "icon": None, "unicode_emoji": None, "position": self.position,
            "permissions": str(self.permissions), "managed": self.managed, "mentionable": self.mentionable,
            "flags": 0}
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass
class GuildMember:
    user: User
    guild: Guild
    roles: list[int] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)

    @property
    def id(self) -> int:
        return self.user.id

    def to_json(self, *, with_user: bool = True, channel: Channel | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"roles": [str(r) for r in self.roles], "joined_at": iso(self.joined_at),
                                "deaf": False, "mute": False, "flags": 0, "nick": None, "avatar": None,
                                "premium_since": None, "pending": False, "communication_disabled_until": None}
        if with_user:
            data["user"] = self.user.to_json()
        if channel is not None:
            data["permissions"] = str(self.guild.permissions_of(self, channel))
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, GuildMember] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    # The server's language (its Community "primary language"): GUILD_CREATE's preferred_locale and every
    # interaction's guild_locale.
    locale: str = "en-US"

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    @property
    def upload_limit(self) -> int:
        """Bytes one message may carry, by boost tier, as discord.py's `Guild.filesize_limit` computes it."""
        return {0: 10_485_760, 1: 10_485_760, 2: 52_428_800, 3: 104_857_600}[self.premium_tier]

    def base_permissions(self, member: GuildMember) -> int:
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in member.roles:
            if role_id in self.roles:
                perms |= self.roles[role_id].permissions
        return ALL_PERMISSIONS if perms & Perm.ADMINISTRATOR else perms

    def permissions_of(self, member: GuildMember, channel: Channel) -> int:
        """Discord's algorithm: base permissions, then @everyone, role and member overwrites of the channel."""
        perms = self.base_permissions(member)
        if perms & Perm.ADMINISTRATOR:
            return ALL_PERMISSIONS
        overwrites = {(o.type, o.id): o for o in channel.overwrites}
        if (everyone := overwrites.get((0, self.id))) is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role_id in member.roles:
            if (ow := overwrites.get((0, role_id))) is not None:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        if (own := overwrites.get((1, member.id))) is not None:
            perms = (perms & ~own.deny) | own.allow
        return perms

    def to_json(self, bot: User) -> dict[str, Any]:
        """The full GUILD_CREATE payload: small and fully chunked, so discord.py never asks for members."""
        members = [m.to_json() for m in self.members.values()]
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": str(self.owner_id), "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "features": [], "mfa_level": 0,
            "application_id": None, "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": self.premium_tier,
            "premium_subscription_count": 0, "preferred_locale": self.locale, "public_updates_channel_id": None,
            "nsfw_level": 0, "premium_progress_bar_enabled": False, "safety_alerts_channel_id": None,
            "roles": [r.to_json() for r in self.roles.values()], "emojis": [], "stickers": [],
            "joined_at": iso(self.members[bot.id].joined_at) if bot.id in self.members else iso(self.created),
            "large": False, "unavailable": False, "member_count": len(members), "members": members,
            "channels": [c.to_json() for c in self.channels.values()], "threads": [], "presences": [],
            "voice_states": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
            "lazy": True,
        }


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes = field(repr=False)
    url: str
    content_type: str | None
    width: int | None = None
    height: int | None = None
    description: str | None = None

    @classmethod
    def describe(cls, data: bytes) -> tuple[int | None, int | None]:
        """Discord reports the size of images it can read, and nothing for other files."""
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.width, img.height
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            return None, None

    @staticmethod
    def guess_type(filename: str) -> str | None:
        # Like Discord, by the name: a text file named .png is announced as image/png.
        return mimetypes.guess_type(filename)[0]

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def spoiler(self) -> bool:
        return self.filename.startswith("SPOILER_")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": str(self.id), "filename": self.filename, "size": self.size, "url": self.url,
                                "proxy_url": self.url}
        if self.content_type:
            data["content_type"] = self.content_type
        if self.width is not None:
            data.update(width=self.width, height=self.height)
        if self.description:
            data["description"] = self.description
        return data


@dataclass
class Reaction:
    emoji: str
    users: list[int] = field(default_factory=list)


MENTION = re.compile(r"<@!?(\d+)>")


@dataclass
class Message:
    id: int
    channel: Channel
    author: User
    content: str = ""
    flags: int = 0
    type: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    nonce: str | int | None = None
    reference: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction: Interaction | None = None  # the interaction this message answers
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    # Who was notified when the message was posted (edits notify nobody), and the allowed_mentions it was sent with.
    pinged: set[int] = field(default_factory=set)
    allowed_mentions: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    edited: float | None = None
    deleted: bool = False
    reactions: list[Reaction] = field(default_factory=list)
    # What a member watching the channel saw over time: the content of each version, first to last.
    versions: list[str] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def visible_to(self) -> int | None:
        """For an ephemeral message, the only member who sees it; None: everyone in the channel."""
        return self.interaction.user.id if self.ephemeral and self.interaction is not None else None

    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", []) if c.get("type") == 2]

    def labels(self) -> list[str]:
        return [b.get("label") or "" for b in self.buttons()]

    def reacted(self, emoji: str) -> list[int]:
        return next((r.users for r in self.reactions if r.emoji == emoji), [])

    def to_json(self, *, with_nonce: bool = False) -> dict[str, Any]:
        """The message as Discord serialises it. The nonce only comes back in the answer to the post that sent it
        and in its MESSAGE_CREATE: Discord does not keep it, so history and GET never show one."""
        channel = self.channel
        data: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(channel.id), "type": self.type, "content": self.content,
            "author": self.author.to_json(), "attachments": [a.to_json() for a in self.attachments],
            "embeds": self.embeds, "mentions": [channel.user_json(u) for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_roles], "mention_everyone": self.mention_everyone,
            "pinned": False, "tts": False, "timestamp": iso(self.created),
            "edited_timestamp": iso(self.edited) if self.edited else None, "flags": self.flags,
            "components": self.components,
            "reactions": [{"emoji": {"id": None, "name": r.emoji}, "count": len(r.users),
                           "count_details": {"burst": 0, "normal": len(r.users)}, "me": channel.bot_id in r.users,
                           "me_burst": False, "burst_colors": []} for r in self.reactions if r.users],
        }
        if channel.guild is not None:
            data["guild_id"] = str(channel.guild.id)
        if self.nonce is not None and with_nonce:
            data["nonce"] = self.nonce
        if self.reference is not None:
            data["message_reference"] = self.reference
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction is not None:
            i = self.interaction
            owners = {"0": str(channel.guild_id)} if channel.guild_id else {"1": str(i.user.id)}
            data["interaction_metadata"] = {"id": str(i.id), "type": i.type, "user": i.user.to_json(),
                                            "authorizing_integration_owners": owners}
        return data


@dataclass
class Channel:
    id: int
    name: str
    guild: Guild | None
    bot_id: int
    type: int = GUILD_TEXT
    position: int = 0
    nsfw: bool = False
    overwrites: list[Overwrite] = field(default_factory=list)
    recipient: User | None = None  # DM channels
    messages: dict[int, Message] = field(default_factory=dict)  # in posting order
    users: dict[int, User] = field(default_factory=dict)  # for mentions: who can be named here

    @property
    def guild_id(self) -> int | None:
        return self.guild.id if self.guild else None

    def user_json(self, user_id: int) -> dict[str, Any]:
        user = self.users.get(user_id)
        return user.to_json() if user else {"id": str(user_id), "username": "unknown", "discriminator": "0",
                                            "global_name": None, "avatar": None}

    def live(self) -> list[Message]:
        return [m for m in list(self.messages.values()) if not m.deleted]

    def to_json(self) -> dict[str, Any]:
        last = next(reversed(self.messages), None)
        if self.type == DM:
            assert self.recipient is not None
            return {"id": str(self.id), "type": DM, "last_message_id": str(last) if last else None, "flags": 0,
                    "recipients": [self.recipient.to_json()]}
        assert self.guild is not None
        return {"id": str(self.id), "type": self.type, "guild_id": str(self.guild.id), "name": self.name,
                "position": self.position, "permission_overwrites": [o.to_json() for o in self.overwrites],
                "nsfw": self.nsfw, "topic": None, "last_message_id": str(last) if last else None,
                "rate_limit_per_user": 0, "parent_id": None, "flags": 0}


@dataclass
class Interaction:
    """One interaction: a command (type 2), a component click (type 3) or a modal submit (type 5), and what the bot
    did with it."""

    id: int
    token: str
    type: int
    user: User
    channel: Channel
    payload: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    delivered: bool = False  # dispatched to a connected gateway session (lost otherwise, as on Discord)
    acked_at: float | None = None
    ack_type: int | None = None
    original: Message | None = None  # the response message (loading while deferred)
    followups: list[Message] = field(default_factory=list)
    rejected: list[tuple[str, int, int]] = field(default_factory=list)  # (what, status, code) Discord refused
    modal: dict[str, Any] | None = None  # the form the bot answered with (callback type 9), as it sent it
    modal_submitted: bool = False  # a form closes once sent

    @property
    def ack_latency(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.created

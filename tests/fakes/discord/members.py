"""Members as tests drive them: they act through their Discord client (slash commands, button clicks, reactions)
and see what it shows them. Whatever Discord's client would not let a member send raises instead of reaching the bot.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes.discord.modals import submission
from tests.fakes.discord.models import (
    Attachment,
    Channel,
    Guild,
    GuildMember,
    Interaction,
    Message,
    Perm,
    Role,
    User,
    snowflake,
)
from tests.fakes.discord.threads import on_fake_loop

if TYPE_CHECKING:
    from tests.fakes.discord.control import FakeDiscord

MAX_OPTION_CHARS = 6000  # Discord's limit on a string option's value


@dataclass(frozen=True)
class Upload:
    """A file a member attaches to a command option."""

    filename: str
    data: bytes
    content_type: str | None = None


FileLike = bytes | tuple[str, bytes] | Upload | Attachment


class InteractionRun:
    """One interaction a member started, as the member experiences it."""

    def __init__(self, fake: FakeDiscord, interaction: Interaction) -> None:
        self.fake = fake
        self.interaction = interaction

    @property
    def delivered(self) -> bool:
        return self.interaction.delivered

    @property
    def ack_latency(self) -> float | None:
        return self.interaction.ack_latency

    @property
    def response(self) -> Message | None:
        return self.interaction.original

    @property
    def followups(self) -> list[Message]:
        return list(self.interaction.followups)

    async def acked(self) -> float:
        """Wait for the acknowledgement; fail as the member would see it ("The application did not respond")."""
        remaining = self.fake.ack_deadline_s - (time.monotonic() - self.interaction.created)
        try:
            await self.fake.wait_for(lambda: self.interaction.acked_at is not None, timeout=max(0.0, remaining) + 0.5,
                                     what="the acknowledgement")
        except AssertionError:
            raise AssertionError(f"The application did not respond (rejected: {self.interaction.rejected})") \
                from None
        latency = self.interaction.ack_latency
        assert latency is not None
        return latency

    async def reply(self, timeout: float = 15.0) -> Message:
        """The answer the member reads: the response message once it is no longer "thinking…"."""
        await self.acked()

        def answered() -> Message | None:
            message = self.interaction.original
            return message if message is not None and not message.loading else None

        return await self.fake.wait_for(answered, timeout=timeout, what="the answer to the interaction")


class MemberActor:
    """A member acting through their client: commands, clicks and reactions, and what their client shows."""

    def __init__(self, fake: FakeDiscord, member: GuildMember) -> None:
        self.fake = fake
        self.member = member
        self.locale = "en-US"  # the language of the member's Discord client, sent with each interaction

    def __repr__(self) -> str:
        return f"<member {self.user.username} {self.id}>"

    @property
    def user(self) -> User:
        return self.member.user

    @property
    def id(self) -> int:
        return self.member.id

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def guild(self) -> Guild:
        return self.member.guild

    # --- what the member sees --------------------------------------------------------------------------------

    def can_see(self, message: Message) -> bool:
        return not message.deleted and message.visible_to in (None, self.id)

    def sees(self, channel: Channel) -> list[Message]:
        """The channel as this member's client shows it: public messages and the private answers meant for them."""
        return [m for m in list(channel.messages.values()) if self.can_see(m)]

    def find(self, channel: Channel, text: str, *, public: bool = True) -> Message | None:
        """The newest visible message containing `text` (public ones only unless public=False)."""
        for message in reversed(self.sees(channel)):
            if text in message.content and (not public or not message.ephemeral):
                return message
        return None

    def dms(self) -> list[Message]:
        channel = self.fake.dm_channels.get(self.id)
        return channel.live() if channel else []

    # --- acting ----------------------------------------------------------------------------------------------

    def _envelope(self, channel: Channel, kind: int, data: dict[str, Any]) -> Interaction:
        guild = self.guild
        if channel.guild is not guild:
            raise ValueError(f"{channel.name} is not in {guild.name}")
        bot_member = guild.members[self.fake.bot.id]
        interaction_id = snowflake()
        token = f"itok.{secrets.token_urlsafe(32)}"
        payload = {
            "id": str(interaction_id), "application_id": str(self.fake.application_id), "type": kind,
            "token": token, "version": 1, "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "channel_id": str(channel.id), "channel": channel.to_json(),
            "member": self.member.to_json(channel=channel),
            "app_permissions": str(guild.permissions_of(bot_member, channel)), "locale": self.locale,
            "guild_locale": guild.locale, "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": guild.upload_limit, "data": data,
        }
        interaction = Interaction(id=interaction_id, token=token, type=kind, user=self.user, channel=channel,
                                  payload=payload)
        self.fake.interactions[interaction_id] = interaction
        self.fake.by_token[token] = interaction
        return interaction

    async def _send(self, interaction: Interaction) -> InteractionRun:
        interaction.created = time.monotonic()
        interaction.delivered = await self.fake.gateway.dispatch("INTERACTION_CREATE", interaction.payload)
        self.fake.changed()
        return InteractionRun(self.fake, interaction)

    @on_fake_loop
    async def run_command(self, channel: Channel, command: str, **options: Any) -> InteractionRun:
        """Run a slash command as this member would from the command picker: `"imagine"`, `"atelier usage"`.

        Options take plain values; attachment options take bytes (named `<option>.png`), (filename, bytes), an
        Upload or an existing Attachment; user/mentionable options a MemberActor; role options a Role. Whatever
        Discord's client would not let a member send (an unknown or missing option, a value outside its choices
        or range, a command hidden from them) raises instead.
        """
        name, *path = command.split()
        definition = self._command(name)
        required_bits = definition.get("default_member_permissions")
        if required_bits is not None:
            perms = self.guild.base_permissions(self.member)
            if perms & int(required_bits) != int(required_bits) and not perms & Perm.ADMINISTRATOR:
                raise PermissionError(f"/{name} is not offered to {self.user.username}")
        resolved: dict[str, dict[str, Any]] = {}
        levels = _subcommands(definition, path)
        innermost = levels[-1] if levels else definition
        values = self._options(command, channel, innermost.get("options", []), options, resolved)
        for level in reversed(levels):
            values = [{"name": level["name"], "type": level["type"], "options": values}]
        data: dict[str, Any] = {"id": definition["id"], "name": name, "type": 1, "options": values}
        if definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return await self._send(self._envelope(channel, 2, data))

    def _command(self, name: str, kind: int = 1) -> dict[str, Any]:
        for scope in (self.guild.id, None):
            for command in self.fake.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command
        raise LookupError(f"{name!r} (type {kind}) has not been synced to {self.guild.name} (or globally)")

    @on_fake_loop
    async def post(self, channel: Channel, content: str = "", *, files: Sequence[FileLike] = ()) -> Message:
        """Post a message of their own in the channel, with files attached (bytes are named `file<n>.png`)."""
        if not self.guild.permissions_of(self.member, channel) & Perm.SEND_MESSAGES:
            raise PermissionError(f"{self.user.username} may not post in {channel.name}")
        attachments = [self._attach(channel, f"file{i}", value) for i, value in enumerate(files, 1)]
        message = Message(id=snowflake(), channel=channel, author=self.user, content=content,
                          attachments=attachments)
        message.versions.append(content)
        self.fake.add_message(message)
        self.fake.changed()
        return message

    @on_fake_loop
    async def run_message_command(self, message: Message, name: str) -> InteractionRun:
        """Apps → `name` on a message, as Discord sends a message command: interaction type 2 whose data has type
        3, the message's id as target_id and the message itself in resolved.messages."""
        if not self.can_see(message) or message.ephemeral:
            raise LookupError(f"{self.user.username} cannot open the Apps menu on message {message.id}")
        definition = self._command(name, kind=3)
        data: dict[str, Any] = {"id": definition["id"], "name": name, "type": 3, "target_id": str(message.id),
                                "resolved": {"messages": {str(message.id): message.to_json()}}}
        if definition.get("guild_id"):
            data["guild_id"] = definition["guild_id"]
        return await self._send(self._envelope(message.channel, 2, data))

    def _options(self, command: str, channel: Channel, definitions: list[dict[str, Any]], given: dict[str, Any],
                 resolved: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in definitions}
        unknown = set(given) - set(by_name)
        if unknown:
            raise TypeError(f"/{command} has no option(s) {sorted(unknown)}; it has {sorted(by_name)}")
        missing = [o["name"] for o in definitions if o.get("required") and o["name"] not in given]
        if missing:
            raise TypeError(f"/{command} needs {missing}")
        values = []
        for option in definitions:
            if option["name"] not in given or given[option["name"]] is None:
                continue
            value = self._option_value(command, channel, option, given[option["name"]], resolved)
            values.append({"name": option["name"], "type": option["type"], "value": value})
        return values

    def _option_value(self, command: str, channel: Channel, option: dict[str, Any], value: Any,
                      resolved: dict[str, dict[str, Any]]) -> Any:
        kind, name = option["type"], option["name"]
        where = f"/{command} {name}"
        if kind == 11:  # attachment
            attachment = self._attach(channel, name, value)
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_json()
            return str(attachment.id)
        if kind in (6, 9) and isinstance(value, MemberActor):  # user, mentionable
            resolved.setdefault("users", {})[str(value.id)] = value.user.to_json()
            resolved.setdefault("members", {})[str(value.id)] = value.member.to_json(with_user=False, channel=channel)
            return str(value.id)
        if kind in (8, 9) and isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_json()
            return str(value.id)
        if kind == 3:
            if not isinstance(value, str):
                raise TypeError(f"{where} takes text")
            low, high = option.get("min_length", 0), option.get("max_length", MAX_OPTION_CHARS)
            if not low <= len(value) <= high:
                raise ValueError(f"{where}: {len(value)} characters, Discord allows {low}-{high}")
        elif kind in (4, 10):
            if isinstance(value, bool) or not isinstance(value, int if kind == 4 else int | float):
                raise TypeError(f"{where} takes a number")
            low, high = option.get("min_value", -(2**53)), option.get("max_value", 2**53)
            if not low <= value <= high:
                raise ValueError(f"{where}: {value} is outside {low}..{high}")
        elif kind == 5:
            if not isinstance(value, bool):
                raise TypeError(f"{where} takes true or false")
        else:
            raise TypeError(f"{where}: cannot pass {value!r} for option type {kind}")
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where}: {value!r} is not one of {[c['value'] for c in choices]}")
        return value

    def _attach(self, channel: Channel, option: str, value: FileLike) -> Attachment:
        if isinstance(value, Attachment):
            return value
        if isinstance(value, bytes):
            value = Upload(f"{option}.png", value)
        elif isinstance(value, tuple):
            value = Upload(*value)
        return self.fake.cdn.store(channel.id, value.filename, value.data, content_type=value.content_type)

    @on_fake_loop
    async def click(self, message: Message, button: str) -> InteractionRun:
        """Click the button labelled `button` (or with that custom_id) on a message this member sees."""
        if not self.can_see(message):
            raise LookupError(f"{self.user.username} cannot see message {message.id}")
        found = next((b for b in message.buttons() if button in (b.get("label"), b.get("custom_id"))), None)
        if found is None:
            raise LookupError(f"no button {button!r} on message {message.id}; it has {message.labels()}")
        if found.get("disabled"):
            raise LookupError(f"the button {button!r} is disabled")
        data = {"custom_id": found["custom_id"], "component_type": 2}
        interaction = self._envelope(message.channel, 3, data)
        interaction.payload["message"] = message.to_json()
        return await self._send(interaction)

    @on_fake_loop
    async def submit_modal(self, shown: InteractionRun, values: dict[str, Any]) -> InteractionRun:
        """Fill in and send the form the bot answered `shown` with (values by custom_id: text for a text input, a
        list of option values for a select, a list of (filename, bytes) for a file upload; a field left out keeps
        what the form showed)."""
        opened = shown.interaction
        if opened.user.id != self.id:
            raise LookupError(f"only {opened.user.username} sees that form")
        if opened.modal is None:
            raise LookupError("the bot did not answer with a form")
        if opened.modal_submitted:
            raise LookupError("that form was already sent (Discord closes it)")
        data = submission(opened.modal, values,
                          upload=lambda name, blob: self._attach(opened.channel, "upload", (name, blob)).to_json())
        opened.modal_submitted = True
        interaction = self._envelope(opened.channel, 5, data)
        if "message" in opened.payload:  # a form opened from a component carries that component's message
            interaction.payload["message"] = opened.payload["message"]
        return await self._send(interaction)

    @on_fake_loop
    async def react(self, message: Message, emoji: str) -> None:
        if not self.can_see(message) or message.ephemeral:
            raise LookupError(f"{self.user.username} cannot react to message {message.id}")
        await self.fake.reaction_added(message, self.user, emoji)

    @on_fake_loop
    async def unreact(self, message: Message, emoji: str) -> None:
        await self.fake.reaction_removed(message, self.user, emoji)


def _subcommands(definition: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
    """The subcommand (group) definitions along a path such as ["allowance"] of /atelier."""
    found, level = [], definition
    for sub in path:
        match = next((o for o in level.get("options", []) if o["name"] == sub and o["type"] in (1, 2)), None)
        if match is None:
            raise LookupError(f"/{definition['name']} has no subcommand {sub}")
        found.append(match)
        level = match
    return found

"""The fake Discord's REST endpoints: the routes discord.py 2.7 calls for Atelier, strict where Discord is.

Enforced as Discord does: the 3 s acknowledgement deadline (404 10062) and one acknowledgement per interaction
(400 40060); the interaction token's lifetime (401 50027 on every token call after it); the upload limit (413
40005); the bot's permissions per channel (403 50013); ephemeral messages exist only for their member (channel reads
answer 404 10008 and history leaves them out); `nonce` + `enforce_nonce` returns the message already posted with that
nonce. The first follow-up after a deferred response resolves the loading message (same id, its ephemeral flag
kept). Events are echoed on the gateway only where the bot's intents ask for them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord.mentions import InvalidAllowedMentions, Mentions, resolve
from tests.fakes.discord.modals import validate_form
from tests.fakes.discord.models import (
    DM,
    EPHEMERAL,
    LOADING,
    SUPPRESS_EMBEDS,
    Channel,
    Intent,
    Interaction,
    Message,
    Perm,
    snowflake,
)
from tests.fakes.discord.rest import (
    FILES,
    MAX_CONTENT,
    PAYLOAD,
    ApiError,
    Handler,
    UploadedFile,
    json_response,
    missing_permissions,
    unknown_message,
)

if TYPE_CHECKING:
    from tests.fakes.discord.control import FakeDiscord


def check_command(command: dict[str, Any]) -> None:
    """What Discord refuses in a synced command: a user or message command (types 2, 3) has a name of 1-32
    characters (spaces and capitals allowed), an empty description and no options."""
    kind = command.get("type", 1)
    if kind not in (1, 2, 3):
        raise ApiError(400, 50035, "Invalid Form Body: type: not a command type")
    if kind in (2, 3):
        name = command.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise ApiError(400, 50035, "Invalid Form Body: name: 1-32 characters")
        if command.get("description") or command.get("options"):
            raise ApiError(400, 50035, "Invalid Form Body: a context menu has no description or options")


class Endpoints:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path under /api/v10, handler) for every route the fake serves."""
        return [
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/{user_id}", self.get_user),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway),
            ("PUT", "/applications/{application_id}/commands", self.put_commands),
            ("GET", "/applications/{application_id}/commands", self.get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback),
            ("POST", "/webhooks/{application_id}/{token}", self.followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self.webhook_get),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self.webhook_edit),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self.webhook_delete),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("POST", "/channels/{channel_id}/typing", self.typing),
            ("POST", "/channels/{channel_id}/messages", self.post_message),
            ("GET", "/channels/{channel_id}/messages", self.history),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.add_reaction),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.remove_reaction),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
        ]

    # --- users, application, gateway, commands --------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.fake.bot.to_json())

    async def get_user(self, request: web.Request) -> web.StreamResponse:
        user = self.fake.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user.to_json())

    async def create_dm(self, request: web.Request) -> web.StreamResponse:
        user = self.fake.users.get(int(request[PAYLOAD]["recipient_id"]))
        if user is None:
            raise ApiError(400, 50035, "Invalid Form Body")
        return json_response(self.fake.dm_channel(user).to_json())

    async def get_application(self, request: web.Request) -> web.StreamResponse:
        bot = self.fake.bot
        return json_response({
            "id": str(self.fake.application_id), "name": bot.username, "icon": None, "description": "",
            "bot_public": True, "bot_require_code_grant": False, "owner": self.fake.owner.to_json(),
            "verify_key": "0" * 64, "flags": 0, "team": None, "summary": "", "bot": bot.to_json(),
            "rpc_origins": [], "tags": [], "redirect_uris": []})

    async def get_gateway(self, request: web.Request) -> web.StreamResponse:
        """What a sharded bot asks before it connects: the shard count to run, and how many IDENTIFYs it has left
        today and may send at once (gateway.py enforces both)."""
        return json_response({"url": self.fake.gateway_url, "shards": self.fake.shard_count, "session_start_limit": {
            "total": 1000, "remaining": self.fake.gateway.identify_remaining(), "reset_after": 86_400_000,
            "max_concurrency": self.fake.max_concurrency}})

    def _check_application(self, request: web.Request) -> None:
        if request.match_info["application_id"] != str(self.fake.application_id):
            raise ApiError(404, 10002, "Unknown Application")

    async def put_commands(self, request: web.Request) -> web.StreamResponse:
        self._check_application(request)
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        if guild_id is not None and guild_id not in self.fake.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        stored = []
        known = {c["name"]: c for c in self.fake.commands.get(guild_id, [])}
        for command in request[PAYLOAD]:
            check_command(command)
            previous = known.get(command["name"])
            # Discord answers every command with a description ("" for a context menu, which is sent without one).
            entry = {"description": "", **command, "id": previous["id"] if previous else str(snowflake()),
                     "application_id": str(self.fake.application_id), "version": str(snowflake()),
                     "type": command.get("type", 1)}
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        self.fake.commands[guild_id] = stored
        return json_response(stored)

    async def get_commands(self, request: web.Request) -> web.StreamResponse:
        self._check_application(request)
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        return json_response(self.fake.commands.get(guild_id, []))

    # --- interactions ---------------------------------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.StreamResponse:
        interaction = self.fake.interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        now = time.monotonic()
        if interaction.acked_at is not None:
            self._reject(interaction, "callback", ApiError(400, 40060, "Interaction has already been acknowledged."))
        if now - interaction.created > self.fake.ack_deadline_s:
            self._reject(interaction, "callback", ApiError(404, 10062, "Unknown interaction"))
        payload, files = request[PAYLOAD] or {}, request[FILES]
        kind = payload.get("type")
        data = payload.get("data") or {}
        message: Message | None = None
        component_message = self.fake.messages.get(int(interaction.payload["message"]["id"])) \
            if interaction.type in (3, 5) and "message" in interaction.payload else None
        if kind == 4:
            message = self._new_interaction_message(interaction, data, files, loading=False)
        elif kind == 5:
            message = self._new_interaction_message(interaction, data, [], loading=True)
        elif kind in (6, 7):
            if component_message is None or component_message.deleted:
                raise ApiError(400, 50035, "Invalid Form Body: this response type needs a component's message")
            message = component_message
            if kind == 7:
                self._apply(message, data, files, editing=True)
                self._edited(message)
        elif kind == 9:
            if interaction.type not in (2, 3):
                raise ApiError(400, 50035, "Invalid Form Body: a modal answers only a command or a component")
            validate_form(data)
            interaction.modal = data
        elif kind != 8:
            raise ApiError(400, 50035, "Invalid Form Body: unknown interaction response type")
        interaction.acked_at, interaction.ack_type = now, kind
        if message is not None:
            interaction.original = message
            if kind in (4, 5):
                await self._announce_create(message)
            elif kind == 7:
                await self._announce_update(message)
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        body: dict[str, Any] = {"interaction": {
            "id": str(interaction.id), "type": interaction.type,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5, "response_message_ephemeral": bool(message and message.ephemeral)}}
        if message is not None:
            body["resource"] = {"type": kind, "message": message.to_json()}
        return json_response(body)

    def _new_interaction_message(self, interaction: Interaction, data: dict[str, Any], files: list[UploadedFile],
                                 *, loading: bool) -> Message:
        flags = (int(data.get("flags") or 0) & (EPHEMERAL | SUPPRESS_EMBEDS)) | (LOADING if loading else 0)
        message = Message(id=snowflake(), channel=interaction.channel, author=self.fake.bot, flags=flags,
                          type=20 if interaction.type == 2 else 0, webhook_id=self.fake.application_id,
                          application_id=self.fake.application_id, interaction=interaction)
        self._apply(message, data, files, editing=False)
        self.fake.add_message(message)
        return message

    def _reject(self, interaction: Interaction, what: str, error: ApiError) -> None:
        interaction.rejected.append((what, error.status, error.code))
        raise error

    def _token_interaction(self, request: web.Request, what: str) -> Interaction:
        """The interaction behind a webhook token, if Discord would still honour the token."""
        if request.match_info["application_id"] != str(self.fake.application_id):
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self.fake.by_token.get(request.match_info["token"])
        if interaction is None:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        age = time.monotonic() - interaction.created
        if age > self.fake.token_ttl_s or (interaction.acked_at is None and age > self.fake.ack_deadline_s):
            self._reject(interaction, what, ApiError(401, 50027, "Invalid Webhook Token"))
        if interaction.acked_at is None:
            self._reject(interaction, what, ApiError(404, 10015, "Unknown Webhook"))
        return interaction

    def _token_message(self, interaction: Interaction, message_id: str) -> Message:
        if message_id == "@original":
            message = interaction.original
        else:
            message = next((m for m in [interaction.original, *interaction.followups]
                            if m is not None and str(m.id) == message_id), None)
        if message is None or message.deleted:
            raise unknown_message()
        return message

    async def followup(self, request: web.Request) -> web.StreamResponse:
        interaction = self._token_interaction(request, "followup")
        payload, files = request[PAYLOAD] or {}, request[FILES]
        self._check_size(interaction.channel, files)
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred response is that response: same message, same visibility.
            self._apply(original, payload, files, editing=True)
            original.flags &= ~LOADING
            self._edited(original)
            await self._announce_update(original)
            return json_response(original.to_json())
        flags = int(payload.get("flags") or 0) & (EPHEMERAL | SUPPRESS_EMBEDS)
        message = Message(id=snowflake(), channel=interaction.channel, author=self.fake.bot, flags=flags,
                          webhook_id=self.fake.application_id, application_id=self.fake.application_id,
                          interaction=interaction)
        self._apply(message, payload, files, editing=False)
        interaction.followups.append(message)
        self.fake.add_message(message)
        await self._announce_create(message)
        return json_response(message.to_json())

    async def webhook_get(self, request: web.Request) -> web.StreamResponse:
        interaction = self._token_interaction(request, "get")
        return json_response(self._token_message(interaction, request.match_info["message_id"]).to_json())

    async def webhook_edit(self, request: web.Request) -> web.StreamResponse:
        interaction = self._token_interaction(request, "edit")
        message = self._token_message(interaction, request.match_info["message_id"])
        self._check_size(interaction.channel, request[FILES])
        self._apply(message, request[PAYLOAD] or {}, request[FILES], editing=True)
        message.flags &= ~LOADING
        self._edited(message)
        await self._announce_update(message)
        return json_response(message.to_json())

    async def webhook_delete(self, request: web.Request) -> web.StreamResponse:
        interaction = self._token_interaction(request, "delete")
        message = self._token_message(interaction, request.match_info["message_id"])
        await self._delete(message)
        return web.Response(status=204)

    # --- channels and messages ------------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> Channel:
        channel = self.fake.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if channel.guild is not None and not self.fake.bot_can(channel, Perm.VIEW_CHANNEL):
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _public_message(self, channel: Channel, message_id: str) -> Message:
        """A message as the bot's token sees it: ephemeral ones do not exist for it."""
        message = channel.messages.get(int(message_id)) if message_id.isdigit() else None
        if message is None or message.deleted or message.ephemeral:
            raise unknown_message()
        return message

    def _check_size(self, channel: Channel, files: list[UploadedFile]) -> None:
        limit = channel.guild.upload_limit if channel.guild is not None else 10_485_760
        if sum(len(f.data) for f in files) > limit:
            raise ApiError(413, 40005, "Request entity too large")

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._channel(request).to_json())

    async def typing(self, request: web.Request) -> web.StreamResponse:
        self._channel(request)
        return web.Response(status=204)

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        payload, files = request[PAYLOAD] or {}, request[FILES]
        if channel.type == DM:
            assert channel.recipient is not None
            if not channel.recipient.dms_open:
                raise ApiError(403, 50007, "Cannot send messages to this user")
        else:
            needed = Perm.SEND_MESSAGES | (Perm.ATTACH_FILES if files else 0) | \
                (Perm.READ_MESSAGE_HISTORY if payload.get("message_reference") else 0)
            if not self.fake.bot_can(channel, needed):
                raise missing_permissions()
        self._check_size(channel, files)
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            window = time.time() - self.fake.nonce_window_s
            earlier = next((m for m in channel.messages.values() if m.nonce == nonce and m.author is self.fake.bot
                            and m.created >= window), None)
            if earlier is not None:
                self.fake.nonce_hits += 1
                return json_response(earlier.to_json(with_nonce=True))
        reference = payload.get("message_reference")
        if reference is not None:
            target = channel.messages.get(int(reference.get("message_id", 0)))
            if target is None or target.deleted:
                if reference.get("fail_if_not_exists", True):
                    raise ApiError(400, 50035, "Invalid Form Body: Unknown message")
                reference = None
            else:
                reference = {"type": 0, "message_id": str(target.id), "channel_id": str(channel.id),
                             **({"guild_id": str(channel.guild_id)} if channel.guild_id else {})}
        message = Message(id=snowflake(), channel=channel, author=self.fake.bot, nonce=nonce,
                          flags=int(payload.get("flags") or 0) & SUPPRESS_EMBEDS,
                          type=19 if reference else 0, reference=reference)
        self._apply(message, payload, files, editing=False)
        self.fake.add_message(message)
        await self._announce_create(message)
        return json_response(message.to_json(with_nonce=True))

    async def history(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        if channel.guild is not None and not self.fake.bot_can(channel, Perm.READ_MESSAGE_HISTORY):
            return json_response([])
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = [m for m in channel.messages.values() if not m.deleted and not m.ephemeral]
        if "before" in request.query:
            messages = [m for m in messages if m.id < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > int(request.query["after"])]
            return json_response([m.to_json() for m in sorted(messages, key=lambda m: m.id)[:limit]][::-1])
        newest_first = sorted(messages, key=lambda m: m.id, reverse=True)
        return json_response([m.to_json() for m in newest_first[:limit]])

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        if channel.guild is not None and not self.fake.bot_can(channel, Perm.READ_MESSAGE_HISTORY):
            raise missing_permissions()
        return json_response(self._public_message(channel, request.match_info["message_id"]).to_json())

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._public_message(channel, request.match_info["message_id"])
        if message.author is not self.fake.bot:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        files = request[FILES]
        if files and channel.guild is not None and not self.fake.bot_can(channel, Perm.ATTACH_FILES):
            raise missing_permissions()
        self._check_size(channel, files)
        self._apply(message, request[PAYLOAD] or {}, files, editing=True)
        self._edited(message)
        await self._announce_update(message)
        return json_response(message.to_json())

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._public_message(channel, request.match_info["message_id"])
        if message.author is not self.fake.bot and channel.guild is not None and \
                not self.fake.bot_can(channel, Perm.MANAGE_MESSAGES):
            raise missing_permissions()
        await self._delete(message)
        return web.Response(status=204)

    async def add_reaction(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._public_message(channel, request.match_info["message_id"])
        emoji = request.match_info["emoji"]
        reaction = next((r for r in message.reactions if r.emoji == emoji), None)
        if channel.guild is not None:
            needed = Perm.READ_MESSAGE_HISTORY | (Perm.ADD_REACTIONS if reaction is None or not reaction.users else 0)
            if not self.fake.bot_can(channel, needed):
                raise missing_permissions()
        await self.fake.reaction_added(message, self.fake.bot, emoji)
        return web.Response(status=204)

    async def remove_reaction(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        message = self._public_message(channel, request.match_info["message_id"])
        await self.fake.reaction_removed(message, self.fake.bot, request.match_info["emoji"])
        return web.Response(status=204)

    async def get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self.fake.guilds.get(int(request.match_info["guild_id"]))
        if guild is None or self.fake.bot.id not in guild.members:
            raise ApiError(404, 10004, "Unknown Guild")
        data = guild.to_json(self.fake.bot)
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at", "large",
                    "member_count"):
            data.pop(key, None)
        return json_response(data)

    async def get_member(self, request: web.Request) -> web.StreamResponse:
        guild = self.fake.guilds.get(int(request.match_info["guild_id"]))
        member = guild.members.get(int(request.match_info["user_id"])) if guild else None
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(member.to_json())

    # --- what every write does ------------------------------------------------------------------------------

    def _apply(self, message: Message, payload: dict[str, Any], files: list[UploadedFile], *, editing: bool) -> None:
        """Apply a create/edit body to a message: content, embeds, components, mentions and attachments."""
        if "content" in payload and payload["content"] is not None:
            content = str(payload["content"])
            if len(content) > MAX_CONTENT:
                raise ApiError(400, 50035, f"Invalid Form Body: content must be {MAX_CONTENT} or fewer in length.")
            message.content = content
        elif not editing:
            message.content = ""
        if "embeds" in payload and payload["embeds"] is not None:
            message.embeds = list(payload["embeds"])
        if "components" in payload and payload["components"] is not None:
            message.components = list(payload["components"])
        if "flags" in payload and payload["flags"] is not None and editing:
            message.flags = (message.flags & ~SUPPRESS_EMBEDS) | (int(payload["flags"]) & SUPPRESS_EMBEDS)
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        new = []
        for upload in sorted(files, key=lambda f: f.index):
            spec = described.get(str(upload.index), {})
            new.append(self.fake.cdn.store(message.channel.id, spec.get("filename") or upload.filename, upload.data,
                                           description=spec.get("description")))
        if editing and "attachments" in payload and payload["attachments"] is not None:
            kept = [a for a in message.attachments if str(a.id) in described]
            message.attachments = kept + new
        else:
            message.attachments = ([*message.attachments] if editing else []) + new
        if not editing and not (message.content or message.embeds or message.attachments or message.components) \
                and not message.loading:
            raise ApiError(400, 50006, "Cannot send an empty message")
        allowed = payload.get("allowed_mentions")
        found = self._mentions(message, allowed)
        message.mentions, message.mention_roles, message.mention_everyone = found.users, found.roles, found.everyone
        if not editing:
            message.pinged, message.allowed_mentions = found.pinged, allowed
            message.versions.append(message.content)

    def _mentions(self, message: Message, allowed: dict[str, Any] | None) -> Mentions:
        channel, guild = message.channel, message.channel.guild
        role_members: dict[int, set[int]] = {}
        everyone: set[int] = set()
        mentionable: set[int] = set()
        may_mention_everyone = True
        if guild is not None:
            everyone = set(guild.members)
            role_members = {r: {m for m, member in guild.members.items() if r in member.roles} for r in guild.roles
                            if r != guild.id}
            mentionable = {r.id for r in guild.roles.values() if r.mentionable}
            author = guild.members.get(message.author.id)
            may_mention_everyone = author is not None and \
                bool(guild.permissions_of(author, channel) & Perm.MENTION_EVERYONE)
        replied = None
        if message.reference is not None:
            target = channel.messages.get(int(message.reference["message_id"]))
            replied = target.author.id if target is not None else None
        try:
            return resolve(message.content, allowed, author=message.author.id, known_users=set(self.fake.users),
                           role_members=role_members, mentionable_roles=mentionable, everyone_members=everyone,
                           may_mention_everyone=may_mention_everyone, replied_author=replied)
        except InvalidAllowedMentions as exc:
            raise ApiError(400, 50035, f"Invalid Form Body: allowed_mentions: {exc}") from exc

    def _edited(self, message: Message) -> None:
        message.edited = time.time()
        message.versions.append(message.content)

    async def _announce_create(self, message: Message) -> None:
        if not message.ephemeral:
            intent = Intent.DIRECT_MESSAGES if message.channel.type == DM else Intent.GUILD_MESSAGES
            await self.fake.gateway.dispatch("MESSAGE_CREATE", message.to_json(with_nonce=True), intent)

    async def _announce_update(self, message: Message) -> None:
        if not message.ephemeral:
            intent = Intent.DIRECT_MESSAGES if message.channel.type == DM else Intent.GUILD_MESSAGES
            await self.fake.gateway.dispatch("MESSAGE_UPDATE", message.to_json(), intent)

    async def _delete(self, message: Message) -> None:
        message.deleted = True
        if not message.ephemeral:
            intent = Intent.DIRECT_MESSAGES if message.channel.type == DM else Intent.GUILD_MESSAGES
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel.id)}
            if message.channel.guild_id:
                data["guild_id"] = str(message.channel.guild_id)
            await self.fake.gateway.dispatch("MESSAGE_DELETE", data, intent)

"""A local fake of Discord (REST v10, gateway, CDN) that the unmodified bot process talks to in end-to-end tests.

See control.py for the API tests use, and /work/shared/docs/discord.md for what discord.py needs from it.
"""

from tests.fakes.discord.control import FakeDiscord, GuildHandle
from tests.fakes.discord.members import InteractionRun, MemberActor, Upload
from tests.fakes.discord.models import Attachment, Channel, Message, Perm, Role
from tests.fakes.discord.rest import RestCall

__all__ = ["Attachment", "Channel", "FakeDiscord", "GuildHandle", "InteractionRun", "MemberActor", "Message", "Perm",
           "RestCall", "Role", "Upload"]

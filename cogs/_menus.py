"""The forms behind the message context menus (Apps → …): each asks for what the image on the message lacks — a
prompt, a filter's name, the other photo of a try-on — and then runs the job exactly as its slash command would
(cogs._start.run_job_command: the same rules, caps, cooldown and refusals).

The message's image is downloaded only once the form is sent: a form must be the interaction's first response, and
Discord gives three seconds for it."""

from __future__ import annotations

from typing import Any, Literal

import discord

from bot.discord_bot import AtelierBot
from bot.discord_errors import report_interaction
from bot.errors import Refusal, Term
from bot.i18n import N_, translate
from bot.operations import MASKS, EditRequest, FilterRequest, Request, TryonRequest
from cogs._common import GuildContext, Interaction, read_attachment
from cogs._prefs import defaults, saved_photo
from cogs._remix import FORM_TIMEOUT_S, MASK_LABELS, PROMPT_INPUT_MAX
from cogs._start import run_job_command

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_NAMES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
Side = Literal["garment", "person"]  # what the message's image is in a try-on


def image_of(message: discord.Message) -> discord.Attachment:
    """The message's first image attachment (its type decides, else its name; the content is checked later)."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        if kind in IMAGE_TYPES or (not kind and attachment.filename.lower().endswith(IMAGE_NAMES)):
            return attachment
    raise Refusal(N_("That message has no image attached: use this on a message with a PNG, JPEG, WEBP or GIF "
                     "image."))


class ImageForm(discord.ui.Modal):
    """What every menu's form shares: the message's image, the job it shows (if any), and the way to run."""

    command: str

    def __init__(self, bot: AtelierBot, *, title: str, message: discord.Message, locale: object = None) -> None:
        """`locale`: the member's Discord client's, whose language the form speaks."""
        self.locale = locale
        super().__init__(title=self._(title), timeout=FORM_TIMEOUT_S)
        self.bot = bot
        self.image = image_of(message)
        self.message_id = message.id

    def _(self, text: str) -> str:
        return translate(self.locale, text)

    async def parent(self, interaction: Interaction) -> int | None:
        """A result made from another result links to its parent job (the job one of whose posts this is)."""
        job = await interaction.client.engine.job_for_message(self.message_id)
        return job.id if job is not None else None

    async def build(self, ctx: GuildContext) -> Request:
        raise NotImplementedError

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        await run_job_command(interaction, self.command, self.build, parent=lambda: self.parent(interaction))

    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction(interaction, error, f"the {self.command} form")  # the log's words: English


def _mask_select(locale: object) -> discord.ui.Select[Any]:
    return discord.ui.Select(custom_id="mask", required=False, options=[
        discord.SelectOption(label=translate(locale, MASK_LABELS[m]), value=m, default=m == "overall") for m in MASKS])


class EditForm(ImageForm):
    command = "edit"

    def __init__(self, bot: AtelierBot, message: discord.Message, locale: object = None) -> None:
        super().__init__(bot, title=N_("Edit this image"), message=message, locale=locale)
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt", style=discord.TextStyle.paragraph, max_length=PROMPT_INPUT_MAX)
        self.add_item(discord.ui.Label(text=self._("What to change"), component=self.prompt))

    async def build(self, ctx: GuildContext) -> Request:
        size, count = await defaults(self.bot, ctx, None, None)  # the member's /settings, as /edit uses them
        return EditRequest(images=(await read_attachment(self.bot, self.image, Term(N_("image"))),),
                           prompt=self.prompt.value.strip(), size=size, count=count)


class FilterForm(ImageForm):
    command = "filter"

    def __init__(self, bot: AtelierBot, message: discord.Message, locale: object = None) -> None:
        super().__init__(bot, title=N_("Apply a filter"), message=message, locale=locale)
        # A select holds only 25 options and there are more filters: the name is typed, and checked like /filter's.
        self.name: discord.ui.TextInput[Any] = discord.ui.TextInput(custom_id="name", max_length=100)
        self.add_item(discord.ui.Label(text=self._("Filter"), component=self.name,
                                       description=self._("Its name, as /filter offers them (start typing there)")))

    async def build(self, ctx: GuildContext) -> Request:
        return FilterRequest(image=await read_attachment(self.bot, self.image, Term(N_("image"))),
                             name=self.name.value.strip())


class TryonForm(ImageForm):
    """The message's image is the garment or the person; the other photo is uploaded here — or, for the person,
    the member's saved photo (/settings) when they upload none."""

    command = "tryon"

    def __init__(self, bot: AtelierBot, message: discord.Message, role: Side, locale: object = None) -> None:
        super().__init__(bot, title=N_("Try on: use as garment") if role == "garment" else N_("Try on: use as person"),
                         message=message, locale=locale)
        self.role = role
        other = "person" if role == "garment" else "garment"
        # Whether the member saved a photo is not looked up here (the form must go out at once): left empty, the
        # person is their saved photo, or they are told to save or upload one.
        optional = other == "person"
        self.upload: discord.ui.FileUpload[Any] = discord.ui.FileUpload(custom_id="other", required=not optional,
                                                                        max_values=1)
        hint = self._("Empty: your photo from /settings") if optional else None
        label = N_("The person photo") if optional else N_("The garment photo")
        self.add_item(discord.ui.Label(text=self._(label), component=self.upload, description=hint))
        self.mask = _mask_select(locale)
        self.add_item(discord.ui.Label(text=self._("Which part of the outfit to replace"), component=self.mask))

    async def build(self, ctx: GuildContext) -> Request:
        bot = self.bot
        labels = {"garment": Term(N_("garment photo")), "person": Term(N_("person photo"))}
        shown = await read_attachment(bot, self.image, labels[self.role])
        uploads = self.upload.values
        other_role = "person" if self.role == "garment" else "garment"
        if uploads:
            other = await read_attachment(bot, uploads[0], labels[other_role])
        elif other_role == "person":
            other = await saved_photo(bot, ctx)
        else:
            raise Refusal(N_("Upload the garment photo in the form."))
        mask = str(self.mask.values[0]) if self.mask.values else "overall"
        if mask not in MASKS:
            raise Refusal(N_("mask must be overall, upper or lower."))
        person, garment = (other, shown) if self.role == "garment" else (shown, other)
        return TryonRequest(person=person, garment=garment, mask=mask)

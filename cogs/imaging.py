"""/tryon, /filter, /edit and /imagine: acknowledge at once, check everything privately, then start a public job."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import AtelierBot
from bot.errors import AtelierError, Refusal, Term
from bot.i18n import N_
from bot.operations import EditRequest, FilterRequest, ImagineRequest, Request, TryonRequest
from bot.store.models import OUTFIT_KEY
from cogs._common import GuildContext, Interaction, read_attachment
from cogs._prefs import defaults, saved_photo
from cogs._render import SIZE_CHOICES
from cogs._start import Builder, run_job_command

log = logging.getLogger(__name__)

SIZES = [app_commands.Choice(name=label, value=value) for value, label in SIZE_CHOICES.items()]
# What a refusal calls each attachment of /edit (told in the member's language, like the sentence around it).
IMAGE_LABELS = (N_("image 1"), N_("image 2"), N_("image 3"), N_("image 4"))
MASKS = [app_commands.Choice(name="Whole outfit", value="overall"),
         app_commands.Choice(name="Upper body", value="upper"),
         app_commands.Choice(name="Lower body", value="lower")]
SEED = app_commands.Range[int, 0, 2**32 - 1]
COUNT = app_commands.Range[int, 1, 4]


class Imaging(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    async def _run(self, interaction: Interaction, command: str, build: Builder) -> None:
        await run_job_command(interaction, command, build)

    @app_commands.command(name="tryon", description="Put the garment from one photo onto the person in another")
    @app_commands.describe(garment="A photo of the garment (with garment2: the upper one)",
                           person="A photo of the person (default: your photo from /settings)",
                           mask="Which part of the outfit to replace (default: whole outfit)",
                           garment2="A lower garment too: an outfit in two steps, costing two images")
    @app_commands.choices(mask=MASKS)
    @app_commands.guild_only()
    async def tryon(self, interaction: Interaction, garment: discord.Attachment,
                    person: discord.Attachment | None = None, mask: app_commands.Choice[str] | None = None,
                    garment2: discord.Attachment | None = None) -> None:
        outfit: dict[str, object] = {}

        async def build(ctx: GuildContext) -> Request:
            if garment2 is not None:
                await check_outfit(self.bot, ctx, mask)
            photo = await read_attachment(self.bot, person, Term(N_("person photo"))) if person is not None else \
                await saved_photo(self.bot, ctx)
            upper = await read_attachment(self.bot, garment, Term(N_("garment photo")))
            if garment2 is None:
                return TryonRequest(person=photo, garment=upper, mask=mask.value if mask else "overall")  # type: ignore[arg-type]
            lower = await read_attachment(self.bot, garment2, Term(N_("second garment photo")))
            # Kept now, by content, so the second step has it whenever the first one ends (restarts included).
            outfit[OUTFIT_KEY] = {"garment": await self.bot.engine.keep_image(lower), "mask": "lower"}
            return TryonRequest(person=photo, garment=upper, mask="upper")
        await run_job_command(interaction, "tryon", build, extra=lambda: outfit)

    @app_commands.command(name="filter", description="Restyle a photo with a named filter")
    @app_commands.describe(image="The photo to restyle", name="The filter (start typing to see them)")
    @app_commands.guild_only()
    async def filter(self, interaction: Interaction, image: discord.Attachment,
                     name: app_commands.Range[str, 1, 100]) -> None:
        async def build(ctx: GuildContext) -> Request:
            return FilterRequest(image=await read_attachment(self.bot, image, Term(N_("image"))), name=name.strip())
        await self._run(interaction, "filter", build)

    @filter.autocomplete("name")
    async def filter_names(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        try:
            filters = await interaction.client.engine.filters()
        except AtelierError:
            return []
        needle = current.lower().strip()
        return [app_commands.Choice(name=f"{f.name} ({f.provider})"[:100], value=f.name)
                for f in filters if needle in f.name.lower()][:25]

    @app_commands.command(name="edit", description="Change an image by a text prompt")
    @app_commands.describe(image="The image to change", prompt="What to change", image2="Another image",
                           image3="Another image", image4="Another image", size="Output shape",
                           seed="Same seed + same prompt = same result", count="How many images (1-4)")
    @app_commands.choices(size=SIZES)
    @app_commands.guild_only()
    async def edit(self, interaction: Interaction, image: discord.Attachment, prompt: str,
                   image2: discord.Attachment | None = None, image3: discord.Attachment | None = None,
                   image4: discord.Attachment | None = None, size: app_commands.Choice[str] | None = None,
                   seed: SEED | None = None, count: COUNT | None = None) -> None:
        async def build(ctx: GuildContext) -> Request:
            attachments = [a for a in (image, image2, image3, image4) if a is not None]
            images = tuple([await read_attachment(self.bot, a, Term(label))
                            for label, a in zip(IMAGE_LABELS, attachments, strict=False)])
            chosen, many = await defaults(self.bot, ctx, size, count)
            return EditRequest(images=images, prompt=prompt.strip(), size=chosen, seed=seed, count=many)
        await self._run(interaction, "edit", build)

    @app_commands.command(name="imagine", description="Make an image from a prompt")
    @app_commands.describe(prompt="What to make", size="Output shape", seed="Same seed + same prompt = same result",
                           count="How many images (1-4)")
    @app_commands.choices(size=SIZES)
    @app_commands.guild_only()
    async def imagine(self, interaction: Interaction, prompt: str,
                      size: app_commands.Choice[str] | None = None, seed: SEED | None = None,
                      count: COUNT | None = None) -> None:
        async def build(ctx: GuildContext) -> Request:
            chosen, many = await defaults(self.bot, ctx, size, count)
            return ImagineRequest(prompt=prompt.strip(), size=chosen, seed=seed, count=many)
        await self._run(interaction, "imagine", build)


async def check_outfit(bot: AtelierBot, ctx: GuildContext, mask: app_commands.Choice[str] | None) -> None:
    """An outfit is an upper and a lower garment, two images: refused up front when it cannot be both."""
    if mask is not None:
        raise Refusal(N_("With garment2 the outfit is upper (garment) and lower (garment2): leave mask out."))
    usage = await bot.engine.usage(ctx.subject)
    if usage.remaining_today < 2:
        raise Refusal(N_("An outfit makes two images and you have {left} left today; the quota resets {resets}."),
                      left=usage.remaining_today, resets=discord.utils.format_dt(usage.resets_at, "R"))


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Imaging(bot))


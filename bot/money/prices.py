"""What an image costs, per provider (and model) and operation: the sourced defaults, and the operator's PRICES.

Money is exact: prices are `Decimal` dollars, and what a job costs is counted in whole micro-dollars (integers, so
SQL sums them exactly), rounded up: a cap never lets a fraction of a micro-dollar through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

MICRO_PER_USD = 1_000_000
PIXELS_PER_MP = 1_000_000
# Per-megapixel prices are reserved for the largest output a provider may send when no explicit size is asked for
# (fal's GLM Image grid stops at 2048 a side).
WORST_CASE_PIXELS = 2048 * 2048

PROVIDERS = ("glam", "fal", "pixazo", "novita", "local")
OPERATIONS = ("tryon", "filter", "edit", "imagine")
_KEY = re.compile(r"^(?P<provider>[a-z]+)(?::(?P<model>[a-z0-9][a-z0-9._-]*?))?\.(?P<operation>[a-z]+)$")
_VALUE = re.compile(r"^\s*(?P<usd>\d+(?:\.\d+)?)\s*(?P<mp>/\s*MP)?\s*$", re.IGNORECASE)
# Far beyond any image API's price; a figure above it is a typo (cents written as dollars, a missing dot).
MAX_USD = Decimal(100)


@dataclass(frozen=True, slots=True)
class Price:
    usd: Decimal  # dollars per image, or per output megapixel when per_mp
    per_mp: bool = False
    verified: bool = True  # False: no published price; a stand-in so that a cap still bites
    source: str = ""

    def image_micro(self, pixels: int | None) -> int:
        """What one image of `pixels` pixels costs, in micro-dollars rounded up (worst case when pixels is None)."""
        usd = self.usd
        if self.per_mp:
            usd = usd * Decimal(pixels if pixels is not None else WORST_CASE_PIXELS) / PIXELS_PER_MP
        return int((usd * MICRO_PER_USD).to_integral_value(rounding=ROUND_CEILING))

    def __str__(self) -> str:
        if not self.usd:
            return "free"
        return f"${self.usd}/MP" if self.per_mp else f"${self.usd}/image"


def parse_price(text: str) -> Price:
    """"0.05" (dollars per image) or "0.05/MP" (dollars per output megapixel). ValueError when it is neither."""
    match = _VALUE.match(text)
    if not match:
        raise ValueError(f'{text[:30]!r} is not a price: write dollars such as "0.05" or "0.05/MP"')
    try:
        usd = Decimal(match["usd"])
    except InvalidOperation as exc:  # pragma: no cover - the pattern only admits digits
        raise ValueError(f"{text[:30]!r} is not a number") from exc
    if usd > MAX_USD:
        raise ValueError(f"{text[:30]!r} is over ${MAX_USD} an image: write dollars, not cents")
    return Price(usd=usd, per_mp=bool(match["mp"]), verified=True, source="PRICES")


def parse_overrides(raw: str) -> dict[str, Price]:
    """PRICES: a JSON object of "provider.operation" or "provider:model.operation" to a price. The error names the
    first bad entry, so that start-up can stop with one line."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos}); write e.g. "
                         '{"pixazo.imagine": "0.05", "fal.edit": "0.05/MP"}') from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object such as {"pixazo.imagine": "0.05"}')  # noqa: TRY004 - pydantic
    prices: dict[str, Price] = {}
    for key, value in data.items():
        match = _KEY.match(key)
        if not match or match["provider"] not in PROVIDERS or match["operation"] not in OPERATIONS:
            raise ValueError(f"entry {key[:60]!r}: the key must be provider.operation or provider:model.operation "
                             f"(providers {', '.join(PROVIDERS)}; operations {', '.join(OPERATIONS)})")
        if not isinstance(value, str):
            # A JSON number would pass through a binary float on the way; money is written as text.
            raise ValueError(f'entry {key!r}: write the price as a string, e.g. "0.05" or "0.05/MP"')  # noqa: TRY004 - pydantic
        try:
            prices[key] = parse_price(value)
        except ValueError as exc:
            raise ValueError(f"entry {key!r}: {exc}") from None
    return prices


# The highest per-image price known for image generation and editing (Seedream 5.0 lite at the dearest host that
# lists it, providers.md §7): the stand-in where a provider publishes nothing, so that a cap is never toothless.
_HIGHEST_KNOWN = Decimal("0.052")


def _unverified(note: str) -> Price:
    return Price(usd=_HIGHEST_KNOWN, verified=False, source=f"{note}; the highest known image price stands in")


DEFAULTS: dict[str, Price] = {
    "fal.edit": Price(Decimal("0.05"), per_mp=True, source="fal's GLM Image image-to-image model page"),
    # fal's own GLM-Image guide says $0.15/MP, third-party tables $0.05/MP: the higher, until the operator knows.
    "fal.imagine": Price(Decimal("0.15"), per_mp=True, source="fal's GLM-Image user guide (2026-01-14)"),
    "pixazo.imagine": Price(Decimal("0.05"), source="Pixazo: GLM Image v1 Text to Image API Pricing"),
    "pixazo.edit": _unverified("Pixazo publishes no image-to-image price"),
    "novita:seedream-5.0-lite.imagine": _unverified("not on Novita's pages; other hosts list $0.028-0.052"),
    "novita:seedream-5.0-lite.edit": _unverified("not on Novita's pages; other hosts list $0.028-0.052"),
    "novita:glm-image.imagine": _unverified("retired at Novita on 2026-07-07, no price"),
    "glam.filter": _unverified("Glam publishes no credit-to-dollar rate; set GLAM_USD_PER_CREDIT"),
    "glam.tryon": _unverified("Glam publishes no try-on price"),
    "local.filter": Price(Decimal(0), source="runs on this machine"),
}


class PriceBook:
    """The price of each provider, model and operation: PRICES first (model-specific, then provider-wide), then
    a Glam filter's own credits at GLAM_USD_PER_CREDIT, then the defaults above."""

    def __init__(self, overrides: dict[str, Price] | None = None, *,
                 glam_usd_per_credit: Decimal | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.glam_usd_per_credit = glam_usd_per_credit

    def price(self, provider: str, model: str | None, operation: str, *, credits: Decimal | None = None) -> Price:
        keys = ([f"{provider}:{model}.{operation}"] if model else []) + [f"{provider}.{operation}"]
        for key in keys:
            if key in self.overrides:
                return self.overrides[key]
        if provider == "local":
            return DEFAULTS["local.filter"]
        if provider == "glam" and credits is not None and self.glam_usd_per_credit is not None:
            return Price(credits * self.glam_usd_per_credit, source=f"{credits} credits at GLAM_USD_PER_CREDIT")
        for key in keys:
            if key in DEFAULTS:
                return DEFAULTS[key]
        return _unverified(f"no price known for {provider} {operation}")

    def table(self, models: dict[str, str | None]) -> list[tuple[str, Price]]:
        """(key, price) of every provider and operation Atelier runs, as `atelier doctor` shows them."""
        rows: list[tuple[str, Price]] = []
        for key in DEFAULTS:
            match = _KEY.match(key)
            assert match is not None
            provider, model = match["provider"], match["model"]
            if model is not None and models.get(provider) != model:
                continue  # another model of that provider is the one configured
            rows.append((key, self.price(provider, model, match["operation"])))
        return rows

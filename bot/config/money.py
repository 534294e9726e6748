"""Money (README "Budgets"): price overrides, what one Glam credit costs, and the install's daily spend cap."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

from bot.config.area import Area
from bot.money.prices import PriceBook, parse_overrides


class MoneySettings(Area):
    # Price overrides as JSON ({"pixazo.imagine": "0.05", "fal.edit": "0.05/MP"}), the dollars one Glam credit
    # costs, and what all jobs of this install may cost per UTC day (unset: no cap; 0: no paid job at all).
    # Decimal, never float: "0.10" stays exactly ten cents.
    prices: str = ""
    glam_usd_per_credit: Decimal | None = Field(default=None, gt=0, le=100)
    spend_daily_usd: Decimal | None = Field(default=None, ge=0, le=1_000_000)

    @field_validator("prices")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        parse_overrides(value)  # the error names the first bad entry
        return value

    @field_validator("glam_usd_per_credit", "spend_daily_usd", mode="before")
    @classmethod
    def _blank_amount_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, float):
            raise ValueError('write the amount as text such as "0.10", not a binary float')  # noqa: TRY004 - pydantic
        return value

    @field_validator("spend_daily_usd")
    @classmethod
    def _whole_micro_dollars(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (value * 1_000_000) != (value * 1_000_000).to_integral_value():
            raise ValueError("must be whole millionths of a dollar at most (e.g. 0.10)")
        return value

    @property
    def price_book(self) -> PriceBook:
        return PriceBook(parse_overrides(self.prices), glam_usd_per_credit=self.glam_usd_per_credit)

    @property
    def spend_daily_micro(self) -> int | None:
        return None if self.spend_daily_usd is None else int(self.spend_daily_usd * 1_000_000)

"""Money: each job's price, its worst case reserved against the spend caps when it is recorded, and its
settlement by the same rule as the quota (bot.store.refunds) once it ends."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from bot.jobs.core import RunnerCore
from bot.money.caps import CapState
from bot.money.estimate import settle as settle_spend
from bot.money.estimate import worst_case_micro
from bot.money.prices import Price
from bot.operations import FilterRequest, Request
from bot.store.models import Job, SpendReservation, Subject


class Spending(RunnerCore):
    def price(self, provider: str, operation: str, *, credits: Decimal | None = None) -> Price:
        model = self.providers.get(provider).model if provider in self.providers else None
        return self.prices.price(provider, model, operation, credits=credits)

    async def _price_of(self, provider: str, operation: str, filter_name: str | None) -> Price:
        """The price of one job's images: a filter's own catalogue credits where the provider lists them."""
        credits = None
        if filter_name is not None and provider in self.providers and self.prices.glam_usd_per_credit is not None:
            listed = await self.providers.get(provider).list_filters()
            credits = next((f.credits for f in listed if f.name == filter_name), None)
        return self.price(provider, operation, credits=credits)

    async def spend_reservation(self, request: Request, providers: Sequence[str]) -> SpendReservation:
        """The job's worst case: at the dearest of the providers it may run on (the chosen one and fallbacks)."""
        name = request.name if isinstance(request, FilterRequest) else None
        prices = [await self._price_of(p, request.operation.value, name) for p in providers]
        return SpendReservation(worst_micro=worst_case_micro(prices, request),
                                install_daily_micro=self.settings.spend_daily_micro)

    async def _settle_spend(self, job: Job) -> None:
        spend = await self.store.job_spend(job.id)
        # Settled again when a delivery is given up later (the member then got nothing): only ever lowers it.
        if spend is None or not job.state.terminal:
            return
        name = job.request.get("name") if job.operation == "filter" else None
        price = await self._price_of(job.provider, job.operation, name if isinstance(name, str) else None)
        settled = settle_spend(job, price, asked_images=spend.images,
                               reserved_micro=spend.reserved_micro)
        await self.store.settle_spend(job.id, images=settled.images, reserved_micro=settled.reserved_micro,
                                      member_micro=settled.member_micro, provider=job.provider, now=self.clock())

    async def received_nothing(self, job: Job) -> None:
        """The receiver could show none of the job's images (withheld as NSFW where they went, or no channel and no
        DM would take them): like an undeliverable job, it costs its member nothing, in images and in money. Only
        the receiver knows this, so it says so (bot.store.refunds)."""
        await self.store.settle_cost(job.id, images=0, now=self.clock())
        if await self.store.job_spend(job.id) is not None:
            await self.store.settle_spend(job.id, images=0, reserved_micro=0, member_micro=0, provider=job.provider,
                                          now=self.clock())

    async def spend_caps(self, subject: Subject) -> list[CapState]:
        """Every spend cap on `subject`'s jobs as it stands now (what is spent, what is left, when it resets)."""
        return await self.store.spend_caps(subject.scope, subject.user_id,
                                           install_daily_micro=self.settings.spend_daily_micro, now=self.clock())

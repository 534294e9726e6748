"""Everything a process needs, built in one place and closed in reverse order: settings -> HTTP session ->
store -> providers -> blobs -> runner. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.blobs import BlobStore
from bot.fd_limit import raise_fd_limit
from bot.jobs import Deliverer, Runner, RunnerConfig
from bot.providers.registry import Providers, build_providers
from bot.settings import Settings
from bot.store import open_store
from bot.store.base import JobStore
from bot.store.sqlite import sqlite_path
from bot.webhooks.fal_signature import FalSignatureVerifier
from bot.webhooks.hub import WebhookHub
from bot.webhooks.listener import WebhookListener


@dataclass
class App:
    settings: Settings
    session: aiohttp.ClientSession
    store: JobStore
    providers: Providers
    blobs: BlobStore
    runner: Runner
    webhooks: WebhookListener | None = None


def data_dir(settings: Settings) -> Path:
    """Job files live beside the database: data/atelier.db -> data/blobs/."""
    path = sqlite_path(settings.database_url)
    return Path("data") if path == ":memory:" else Path(path).parent


@asynccontextmanager
async def open_app(settings: Settings, *, deliverers: Mapping[str, Deliverer], config: RunnerConfig,
                   start: bool = True, listen: bool = False) -> AsyncIterator[App]:
    """`listen`: serve the webhook endpoint (when WEBHOOK_PUBLIC_URL is set). Only the long-running bot
    listens; one-shot commands poll, so they never fight the bot for its port."""
    webhooks = listen and bool(settings.webhook_public_url)
    if listen:
        raise_fd_limit()  # the long-running bot holds many sockets; the soft limit is often far below the hard
    async with aiohttp.ClientSession() as session:
        store = await open_store(settings.database_url, busy_timeout_s=settings.database_busy_timeout_s)
        listener: WebhookListener | None = None
        try:
            providers = build_providers(settings, session, webhooks=webhooks)
            blobs = BlobStore(data_dir(settings) / "blobs")
            runner = Runner(store=store, providers=providers, blobs=blobs, settings=settings,
                            deliverers=deliverers, config=config)
            if webhooks:
                hub = WebhookHub()
                listener = WebhookListener(hub, providers, FalSignatureVerifier(session, settings.fal_jwks_url),
                                           read_timeout_s=settings.webhook_read_timeout_s,
                                           max_connections=settings.webhook_max_connections)
                await listener.start(settings.webhook_host, settings.webhook_port)
                runner.webhooks = hub
            if start:
                await runner.start()
            try:
                yield App(settings, session, store, providers, blobs, runner, listener)
            finally:
                await runner.stop()
        finally:
            if listener is not None:
                await listener.stop()
            await store.close()

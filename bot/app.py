"""Everything a process needs, built in one place and closed in reverse order: settings -> HTTP session ->
store -> providers -> blobs -> runner. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.blobs import Blobs, BlobStore
from bot.fd_limit import raise_fd_limit
from bot.jobs import Deliverer, Runner, RunnerConfig
from bot.providers.registry import Providers, build_providers
from bot.settings import Settings
from bot.store import PostgresJobStore, open_store
from bot.store.base import JobStore, shared
from bot.store.postgres.blobs import PostgresBlobs
from bot.store.sqlite import sqlite_path
from bot.webhooks.fal_signature import FalSignatureVerifier
from bot.webhooks.hub import WebhookHub
from bot.webhooks.listener import WebhookListener
from bot.webhooks.shared import SharedWebhooks


@dataclass
class App:
    settings: Settings
    session: aiohttp.ClientSession
    store: JobStore
    providers: Providers
    blobs: Blobs
    runner: Runner
    webhooks: WebhookListener | None = None


def data_dir(settings: Settings) -> Path:
    """Job files live beside the database: data/atelier.db -> data/blobs/."""
    path = sqlite_path(settings.database_url)
    return Path("data") if path == ":memory:" else Path(path).parent


def blobs_for(settings: Settings, store: JobStore) -> Blobs:
    """Images where every process of the store can read them: in PostgreSQL with a shared store, else in a
    directory beside the SQLite file."""
    if isinstance(store, PostgresJobStore):
        return PostgresBlobs(store)
    return BlobStore(data_dir(settings) / "blobs")


@asynccontextmanager
async def open_app(settings: Settings, *, deliverers: Mapping[str, Deliverer], config: RunnerConfig,
                   start: bool = True, listen: bool = False) -> AsyncIterator[App]:
    """`listen`: serve the webhook endpoint (when WEBHOOK_PUBLIC_URL is set). Only long-running processes
    listen; one-shot commands poll, so they never fight the bot for its port. On a shared store every long-running
    process follows jobs that expect a webhook call, received by whichever process the provider reached."""
    if listen:
        raise_fd_limit()  # the long-running bot holds many sockets; the soft limit is often far below the hard
    async with aiohttp.ClientSession() as session:
        store = await open_store(settings.database_url, busy_timeout_s=settings.database_busy_timeout_s,
                                 pool_size=settings.database_pool_size)
        listener: WebhookListener | None = None
        bridge: SharedWebhooks | None = None
        shared_store = shared(store)
        # Long-running processes (they adopt work) on a shared store follow jobs whose calls another one receives.
        hub_wanted = bool(settings.webhook_public_url) and (listen or (shared_store is not None and config.adopt))
        try:
            providers = build_providers(settings, session, webhooks=hub_wanted)
            blobs = blobs_for(settings, store)
            runner = Runner(store=store, providers=providers, blobs=blobs, settings=settings,
                            deliverers=deliverers, config=config)
            if hub_wanted:
                hub = WebhookHub()
                runner.webhooks = hub
                if shared_store is not None:
                    bridge = SharedWebhooks(hub, shared_store, clock=runner.clock)
                if listen:
                    listener = WebhookListener(hub, providers, FalSignatureVerifier(session, settings.fal_jwks_url),
                                               read_timeout_s=settings.webhook_read_timeout_s,
                                               max_connections=settings.webhook_max_connections)
                    await listener.start(settings.webhook_host, settings.webhook_port)
            if start:
                await runner.start()
            if bridge is not None:
                await bridge.start()
            try:
                yield App(settings, session, store, providers, blobs, runner, listener)
            finally:
                await runner.stop()
        finally:
            if bridge is not None:
                await bridge.close()
            if listener is not None:
                await listener.stop()
            await store.close()

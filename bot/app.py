"""Everything a process needs, built in one place and closed in reverse order: settings -> HTTP session ->
store -> providers -> blobs -> runner. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.blobs import Blobs, BlobStore
from bot.fd_limit import raise_fd_limit
from bot.jobs import Deliverer, Runner, RunnerConfig
from bot.ops import metrics
from bot.ops.drain import Drain
from bot.ops.health import Health
from bot.ops.loop_lag import watch_loop_lag
from bot.ops.server import OpsServer
from bot.providers.registry import Providers, build_providers
from bot.settings import Settings
from bot.store import PostgresJobStore, open_store
from bot.store.base import JobStore, shared
from bot.store.postgres.blobs import PostgresBlobs
from bot.store.sqlite import sqlite_path
from bot.tasks import TaskSet
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
    # Operating it (bot.ops): readiness checks, the drain after SIGTERM, the metrics port when it is served.
    health: Health = field(default_factory=Health)
    drain: Drain | None = None
    ops_server: OpsServer | None = None


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
    """`listen`: serve the webhook endpoint (when WEBHOOK_PUBLIC_URL is set) and the metrics and health port (when
    METRICS_PORT is set). Only long-running processes listen; one-shot commands poll, so they never fight the
    bot for its ports. On a shared store every long-running process follows jobs that expect a webhook call,
    received by whichever process the provider reached. A long-running process calls `app.drain.run()` on SIGTERM
    before leaving this block."""
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
        app: App | None = None
        ops = TaskSet("ops")
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
            app = App(settings, session, store, providers, blobs, runner, listener)
            app.drain = drain = Drain(runner, settings.shutdown_grace_s)
            # Metrics and health: every long-running process (the bot, a worker), each on its own METRICS_PORT.
            await _watch(app, ops, listen=listen or config.adopt)
            if start:
                await runner.start()
            if bridge is not None:
                await bridge.start()
            try:
                yield app
            finally:
                await runner.stop(submit_wait_s=drain.submit_wait_s())
        finally:
            if bridge is not None:
                await bridge.close()
            if listener is not None:
                await listener.stop()
            if app is not None and app.ops_server is not None:
                await app.ops_server.stop()
            await ops.close()
            await store.close()


async def _watch(app: App, ops: TaskSet, *, listen: bool) -> None:
    """What an operator sees of the process: its metrics, and whether it is ready (the store answers, it is not
    draining; a bot process adds its gateway's shards, bot.discord_bot)."""
    drain = app.drain
    assert drain is not None

    async def store_answers() -> str | None:
        await app.store.ping()
        return None

    async def not_draining() -> str | None:
        return "draining after SIGTERM" if drain.draining else None

    app.health.add_check("store", store_answers)
    app.health.add_check("draining", not_draining)
    app.runner.add_listener(metrics.count_job_event)
    metrics.VIEWS.in_flight = app.runner.in_flight  # one app per process: the scrape reads its runner
    if not listen:
        return
    ops.spawn(watch_loop_lag(), name="loop-lag")
    if app.settings.metrics_port is not None:
        server = OpsServer(app.health)
        await server.start(app.settings.metrics_host, app.settings.metrics_port)
        app.ops_server = server

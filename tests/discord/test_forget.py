"""/forget against SimCord: after a member confirms, no row, file or blob identifies them, an image another member's
job still uses is kept for that job, and usage and spend still count (anonymised)."""

# ruff: noqa: F811 - the fixtures are imported from test_bot and named again as parameters
from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.app import App
from bot.store.models import FORGOTTEN_USER, Subject
from bot.store.sqlite import sqlite_path
from tests.conftest import png_bytes
from tests.discord.conftest import World
from tests.discord.test_bot import (  # noqa: F401 - fixtures
    app,
    atelier,
    buttons,
    fal,
    glam,
    late_wait,
    simcord_bot,
    wait_for_result,
)

ROOM = png_bytes(250, 190, (10, 130, 160))  # Alice's and Bob's edits share it
MINE = png_bytes(220, 170, (160, 10, 90))  # only Alice's
ME = png_bytes(230, 180, (120, 40, 200))  # Alice's saved photo
SECRET = "my grandmother's secret garden"


def every_value(db_path: str) -> list[str]:
    """Every text and number in every table, as text."""
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [str(value) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
                for value in row if value is not None]


def private_message(world: World, message_id: int) -> Any:
    """A private answer as its member's client shows it (with its buttons)."""
    return next(m for m in world.seen_by(world.alice) if m.id == message_id)


def raw_bytes(db_path: str) -> bytes:
    """The database as it lies on disk: the file and its write-ahead log (freed space included)."""
    return b"".join(p.read_bytes() for p in (Path(db_path), Path(f"{db_path}-wal")) if p.exists())


async def test_forget_me_leaves_nothing_that_identifies_the_member(atelier: World, app: App) -> None:
    world = atelier
    alice, bob = world.alice, world.bob
    await alice.slash(world.channel, "settings", photo=("me.png", ME), count=1)
    await alice.slash(world.channel, "imagine", prompt=SECRET)
    await wait_for_result(world, 1)
    await alice.slash(world.channel, "edit", image=("room.png", ROOM), image2=("mine.png", MINE), prompt=SECRET)
    await wait_for_result(world, 2)
    await bob.slash(world.channel, "edit", image=("room.png", ROOM), prompt="a cosy room")
    bobs = await wait_for_result(world, 3)
    outputs = [o.sha256 for j in (1, 2) for o in (await app.store.get_job(j)).outputs]  # type: ignore[union-attr]
    scope = f"guild:{world.guild.id}"
    usage_before = {u[0]: u[1:] for u in await app.store.scope_usage(scope)}
    spent_before = await spend_by_user(app, scope)
    db_path = sqlite_path(app.settings.database_url)

    asked = await alice.slash(world.channel, "forget")
    assert asked.ephemeral and asked.response is not None and "cannot be undone" in asked.response.content
    assert asked.response is not None
    keep = await alice.click(private_message(world, asked.response.id), label="Keep everything")
    assert keep.response is not None
    assert await app.store.list_jobs(Subject.member(world.guild.id, alice.id), limit=5) != []

    asked = await alice.slash(world.channel, "forget")
    assert asked.response is not None
    done = await alice.click(private_message(world, asked.response.id), label="Forget me")
    assert done.response is not None and "2 job(s) no longer name you" in done.response.content

    values = every_value(db_path)
    assert not any(str(alice.id) in v for v in values), "a row still names the member"
    assert not any(SECRET in v for v in values), "a row still holds the member's prompt"
    assert str(alice.id).encode() not in raw_bytes(db_path) and SECRET.encode() not in raw_bytes(db_path)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    gone = [sha(MINE), sha(ME), *outputs]
    bob_job = await app.store.get_job(3)
    assert bob_job is not None
    # The fake makes the same image for every job: Bob's result is byte for byte one of Alice's, so it stays.
    bob_uses = {sha(ROOM), *(o.sha256 for o in bob_job.outputs)}
    assert not any(app.blobs.path_for(h).exists() for h in set(gone) - bob_uses), "an image only she used is kept"
    assert {sha(MINE), sha(ME)} <= set(gone) - bob_uses
    assert all(app.blobs.path_for(h).exists() for h in bob_uses), "Bob's job still uses its images"

    # Bob's job is untouched and can run again from its input; the server's usage is what it was.
    again = await bob.click(bobs, label="Retry")
    assert again.response is not None and again.response.content.startswith("Started job #4")
    await wait_for_result(world, 4)
    usage_after = {u[0]: u[1:] for u in await app.store.scope_usage(scope)}
    assert usage_after[FORGOTTEN_USER] == usage_before[str(alice.id)], "Alice's usage still counts, nameless"
    assert usage_after[str(bob.id)] == (usage_before[str(bob.id)][0] + 1, usage_before[str(bob.id)][1] + 1)
    spent_after = await spend_by_user(app, scope)
    assert spent_after[FORGOTTEN_USER] == spent_before[str(alice.id)] > 0
    settings = await alice.slash(world.channel, "settings")
    assert settings.response is not None and "My photo (for try-on): none" in settings.response.content


async def spend_by_user(app: App, scope: str) -> dict[str, int]:
    now = app.runner.clock()
    totals: dict[str, int] = {}
    for row in await app.store.spend_report(scope, since=now - timedelta(days=1), until=now + timedelta(days=1)):
        totals[row.user_id] = totals.get(row.user_id, 0) + row.micro
    return totals


async def test_forget_waits_for_a_running_job_and_changes_nothing(atelier: World, app: App, fal: Any) -> None:
    world = atelier
    fal.hold_paths = ["/status"]
    await world.alice.slash(world.channel, "imagine", prompt=SECRET)
    asked = await world.alice.slash(world.channel, "forget")
    assert asked.response is not None
    done = await world.alice.click(private_message(world, asked.response.id), label="Forget me")
    assert done.response is not None and "nothing was deleted" in done.response.content
    job = await app.store.get_job(1)
    assert job is not None and job.subject.user_id == str(world.alice.id) and job.request["prompt"] == SECRET
    fal.hold_paths = []

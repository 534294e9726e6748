"""`atelier forget USER --yes`: delete what identifies a member — their prompts, images, preferences and saved
photo — keeping their usage and spend, anonymised, so quotas, caps and `atelier usage` stay true."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from bot.blobs import Blobs
from bot.members import forget
from bot.store.base import JobStore

P = TypeVar("P", bound=argparse.ArgumentParser)
EXIT_OK, EXIT_REFUSED = 0, 2


def add_forget_parser(sub: argparse._SubParsersAction[P]) -> None:
    parser = sub.add_parser("forget", help="delete a member's prompts, images, preferences and saved photo")
    parser.add_argument("user", help="their Discord user id (or a command-line user's name)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")


def confirmed(user: str, *, yes: bool, ask: Callable[[str], str] = input) -> bool | None:
    """True to go ahead; False when the operator said no; None when nobody can be asked (no terminal, no --yes)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return None
    answer = ask(f"Forget everything about {user}: their prompts, images, preferences and photo? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def forget_main(user: str, *, yes: bool, store: JobStore, blobs: Blobs,
                      clock: Callable[[], datetime]) -> int:
    go = confirmed(user, yes=yes)
    if go is None:
        print("atelier: forgetting cannot be undone: confirm with --yes (there is no terminal to ask).",
              file=sys.stderr)
        return EXIT_REFUSED
    if not go:
        print("atelier: nothing was changed.", file=sys.stderr)
        return EXIT_REFUSED
    done = await forget(store, blobs, user, clock=clock)
    if done is None:
        print(f"atelier: {user} has a job still running or owed a delivery; try again once it has ended "
              "(or cancel it). Nothing was changed.", file=sys.stderr)
        return EXIT_REFUSED
    print(f"forgot {user}: {done.jobs} job(s) anonymised (their usage and spend still count), {done.posts} "
          f"post(s) and {'their' if done.prefs else 'no'} preferences deleted, {len(done.blobs)} image(s) deleted")
    return EXIT_OK

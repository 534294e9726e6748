"""PostgreSQL for tests: a fresh database per test, on the server ATELIER_TEST_POSTGRES names (default: the local
server on 127.0.0.1:5432, database `test`, which the project's machines and CI run).

Each test gets a database of its own (CREATE DATABASE takes about 0.1 s), so parallel test workers never share
rows, advisory locks or LISTEN channels. Without a reachable server the PostgreSQL tests are skipped and the
summary says so — except in CI (CI set), where that is a failure: CI has the server.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN_URL = os.environ.get("ATELIER_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


@functools.cache
def _check() -> str | None:
    """None when the server answers; else why not (asked once per test process)."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    return None


def require_postgres() -> None:
    problem = _check()
    if problem is None:
        return
    message = f"PostgreSQL at {ADMIN_URL} is unreachable ({problem})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI runs the PostgreSQL tests and must not skip them", pytrace=False)
    pytest.skip(f"{message}; start one or set ATELIER_TEST_POSTGRES to run the PostgreSQL tests")


def url_for(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo("", **info)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database for one test; its URL. Dropped afterwards, even with connections left open."""
    require_postgres()
    name = f"atelier_t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    user = f"{info['user']}@" if info.get("user") else ""
    try:
        yield f"postgresql://{user}{host}:{port}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


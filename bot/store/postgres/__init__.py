"""The PostgreSQL job store: the same JobStore as the SQLite one, shared by many processes on many hosts.

- connection.py: the pool, how a URL is described without its password, the errors that mean "unreachable";
- migrate.py: numbered migrations applied under an advisory lock;
- presence.py: this process's liveness lock and its LISTEN connection;
- jobs.py: jobs, quotas, leases and provider slots; records.py: deliveries, posts, settings, money, housekeeping;
- store.py: the store that puts them together; blobs.py: job images in the database.
"""

from bot.store.postgres.store import PostgresJobStore

__all__ = ["PostgresJobStore"]

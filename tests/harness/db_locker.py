"""Another program holding an SQLite file's write lock, as a backup, a VACUUM or a stuck process would:

    python -m tests.harness.db_locker PATH SECONDS

Takes `BEGIN EXCLUSIVE` on PATH, prints "LOCKED", holds it for SECONDS, commits and prints "RELEASED".
"""

from __future__ import annotations

import sqlite3
import sys
import time


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")
    print("LOCKED", flush=True)
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()
    print("RELEASED", flush=True)


if __name__ == "__main__":
    main()

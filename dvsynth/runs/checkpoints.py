"""WAL checkpoints from a thread of their own while a stage writes rows.

SQLite copies the write-ahead log back into the database every ~1,000 pages, inside
whichever commit crosses the mark, and fsyncs the database file there: at hundreds of
rows a second that stalled the event loop for milliseconds several times a second
(benchmarks/README.md, throughput). Here the stage's connection stops checkpointing
and a second connection does it once a second in a PASSIVE checkpoint, which never
blocks the writer, with the GIL released for the whole call. Commits keep their
durability (WAL, synchronous=NORMAL); only where the copy-back happens changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INTERVAL_S = 1.0
SQLITE_DEFAULT_AUTOCHECKPOINT = 1000  # pages


@contextmanager
def checkpoints_in_background(db: sqlite3.Connection, path: Path) -> Iterator[None]:
    """For the block's duration `db` leaves checkpoints to a thread; on leaving, one last
    checkpoint runs and `db` checkpoints on its own again."""
    stop = threading.Event()

    def run() -> None:
        other = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        try:
            while not stop.wait(INTERVAL_S):
                other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # not fatal: the log grows until `db` checkpoints again, at the end
        finally:
            other.close()

    db.execute("PRAGMA wal_autocheckpoint=0")
    thread = threading.Thread(target=run, name="dvsynth-checkpoints", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        db.execute(f"PRAGMA wal_autocheckpoint={SQLITE_DEFAULT_AUTOCHECKPOINT}")

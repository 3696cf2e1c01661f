"""One night at a time per output folder.

Two nights writing the same output folder would each rewrite the tables from what they read, and one
would lose the other's rows. A night (and a rescore) holds an exclusive lock on ``OUT_DIR/.callqa.lock``
for as long as it reads and writes; a second one is refused at once with a message naming the holder
(its pid, host, command and start time). The lock is an ``flock`` on the file, which the system drops
when its holder dies, so a lock left by a killed night is stale by construction: the next night takes
it, says so, and recovers what the killed night left (:func:`pipeline.storage.transaction.recover`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..errors import OutputBusyError, StoreError

logger = logging.getLogger("callqa.lock")

LOCK_NAME = ".callqa.lock"


class OutputLock:
    """``with OutputLock(out_dir, "night"):`` holds the output folder for one night or rescore.

    Raises:
        OutputBusyError: another live process holds it.
        StoreError: the output folder cannot be created or the lock file cannot be written.
    """

    def __init__(self, out_dir: str | Path, what: str):
        self.path = Path(out_dir) / LOCK_NAME
        self.what = what
        self.fd: int | None = None
        self.previous: dict | None = None  # what a holder that died left in the file

    def __enter__(self) -> "OutputLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot lock the output folder {self.path.parent}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputBusyError(
                f"{self.path.parent} is being written by another callqa {holder.get('what', 'run')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started_at', '?')}: "
                f"{holder.get('command', '')}); wait for it to finish, or use another --out") from None
        self.previous = _holder(fd) or None
        if self.previous:
            logger.warning("%s: the last callqa %s (pid %s, started %s) ended without releasing it (killed?)",
                           self.path.parent, self.previous.get("what", "run"), self.previous.get("pid"),
                           self.previous.get("started_at"))
        info = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # released cleanly: an empty file is no one's lock
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}

"""A night's tables become visible together, or not at all.

Every file a night (or a rescore) writes is first written whole under ``OUT_DIR/_staging/<id>/``, in
the same layout as the tables, where no reader looks (pandas, pyarrow and DuckDB read
``OUT_DIR/<table>/``). When all of them are written, a journal ``OUT_DIR/_commit.json`` listing the moves
(and the partitions to delete) is written atomically, then the files are moved into place and the
journal removed. A process killed at any point leaves either the previous state (no journal: the
staged files are discarded by the next run, :func:`recover`) or a journal the next run completes
(every move is idempotent). Either way no later run sees half a night: ``calls`` rows without their
utterances, scores without their rule results.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

logger = logging.getLogger("callqa.transaction")

STAGING = "_staging"
NIGHT_PREFIX = "night-"  # a night's staging area under STAGING: its batches' rows until they are published
JOURNAL = "_commit.json"


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Transaction:
    """The files of one publication: staged, then moved into place together by :meth:`commit`.

    ``current(target)`` is the file a reader inside the transaction should read for ``target`` (the
    staged version if there is one, else the published file, else None), so that a later step of the
    same night (agent scores) sees what the earlier steps wrote.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.id = uuid.uuid4().hex[:12]
        self.root = self.out_dir / STAGING / self.id
        self.staged: dict[Path, Path] = {}
        self.deleted: set[Path] = set()

    def stage(self, target: Path) -> Path:
        """Where to write the new version of ``target`` (a path under ``out_dir``)."""
        staged = self.root / target.relative_to(self.out_dir)
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.staged[target] = staged
        self.deleted.discard(target)
        return staged

    def delete(self, target: Path) -> None:
        """Remove ``target`` when the transaction commits."""
        self.staged.pop(target, None)
        self.deleted.add(target)

    def current(self, target: Path) -> Path | None:
        if target in self.staged:
            return self.staged[target]
        if target in self.deleted or not target.exists():
            return None
        return target

    def targets(self, pattern: str) -> list[Path]:
        """The files matching ``pattern`` (relative to ``out_dir``) as they will be after the commit."""
        found = {p for p in self.out_dir.glob(pattern)} | {t for t in self.staged if t.match(pattern)}
        return sorted(t for t in found if t not in self.deleted)

    def commit(self) -> None:
        """Publish every staged file and delete what was deleted, all or nothing (see the module)."""
        if not self.staged and not self.deleted:
            self.abort()
            return
        for staged in self.staged.values():  # the staged files are on disk before the journal names them
            with open(staged, "rb") as fh:
                os.fsync(fh.fileno())
        journal = {"id": self.id,
                   "moves": [[str(s.relative_to(self.out_dir)), str(t.relative_to(self.out_dir))]
                             for t, s in sorted(self.staged.items())],
                   "deletes": [str(t.relative_to(self.out_dir)) for t in sorted(self.deleted)]}
        fd, tmp = tempfile.mkstemp(prefix=".commit-", suffix=".json", dir=self.out_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(journal, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.out_dir / JOURNAL)  # the commit point
        fsync_dir(self.out_dir)
        _apply(self.out_dir, journal)

    def abort(self) -> None:
        """Discard everything staged: the published tables stay as they were."""
        shutil.rmtree(self.root, ignore_errors=True)
        _remove_empty(self.out_dir / STAGING)


def _apply(out_dir: Path, journal: dict) -> None:
    """Carry out a journal's moves and deletes (again, after a crash: each step is idempotent), then
    remove the journal and the staging folder."""
    touched = set()
    for staged, target in journal["moves"]:
        source, destination = out_dir / staged, out_dir / target
        if source.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, destination)
        touched.add(destination.parent)
    for target in journal["deletes"]:
        path = out_dir / target
        if path.exists():
            path.unlink()
        _remove_empty(path.parent)
    for folder in touched:
        fsync_dir(folder)
    (out_dir / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(out_dir / STAGING / journal["id"], ignore_errors=True)
    _remove_empty(out_dir / STAGING)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def recover(out_dir: str | Path) -> str | None:
    """Finish or undo what a killed night left in ``out_dir``; call it holding the output lock.

    Returns:
        What was done (for the log), or None when there was nothing to do.
    """
    out_dir = Path(out_dir)
    for partial in out_dir.glob(".commit-*.json"):  # a journal that was being written when the night stopped
        partial.unlink(missing_ok=True)
    journal_path = out_dir / JOURNAL
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            journal = None  # written by os.replace, so whole or absent; unreadable means not ours to trust
        if journal is not None:
            _apply(out_dir, journal)
            done = f"completed the tables of a night that was stopped while publishing them ({len(journal['moves'])} files)"
            logger.warning("%s: %s", out_dir, done)
            return done
    staging = out_dir / STAGING
    # a transaction's own files without a journal: it never began to publish, so nothing of it counts.
    # A night's staged rows (night-*) stay: each batch's are whole, and the next night publishes them
    # (pipeline.storage.staging.salvage), so what a night transcribed outlives its failure to write
    unfinished = [p for p in staging.iterdir() if not p.name.startswith(NIGHT_PREFIX)] if staging.exists() else []
    for path in unfinished:
        shutil.rmtree(path, ignore_errors=True)
    _remove_empty(staging)
    if unfinished:
        done = "discarded the unfinished tables of a night that was stopped before publishing them"
        logger.warning("%s: %s", out_dir, done)
        return done
    return None


def recover_if_idle(out_dir: str | Path) -> str | None:
    """For readers: finish what a killed night left, unless a night is running (then read as it is:
    it will publish or recover itself)."""
    from ..errors import OutputBusyError
    from .lock import OutputLock

    out_dir = Path(out_dir)
    if not (out_dir / JOURNAL).exists() and not (out_dir / STAGING).exists():
        return None
    try:
        with OutputLock(out_dir, "recovery"):
            return recover(out_dir)
    except OutputBusyError:
        return None

"""Rows by path: what a night's tasks hand each other is files in the output's staging area, not rows.

A night at scale (300,000 calls) does not fit in the memory of the process that runs it, and every
row that crosses from a worker to the flow is pickled twice. So:

- the plan writes each batch's recordings to ``OUT_DIR/_staging/night-<id>/plan/<batch>.pkl`` and the
  flow passes batch *names* (:func:`save_batch`, :func:`load_batch`);
- a batch task writes its finished rows (transcript tables, rule results, findings, scores) to
  ``OUT_DIR/_staging/night-<id>/rows/<table>/call_date=D/<batch>.parquet`` and returns counts
  (:func:`stage_rows`);
- the night's last step merges them into the tables inside the night's transaction, one partition
  at a time, a row group at a time (:func:`publish_staged`), so it never holds more than one batch's
  rows and one stored row group.

A batch run twice (a lost Dask worker) overwrites its own files. The staging area is under
``_staging``, which no reader looks at. What a night staged and never published (it failed while
writing, or was stopped) is published by the next night before it plans (:func:`salvage`), so its
transcription is reused, not done again.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from ..schemas import PARTITION_COLUMN, TABLES, replaced_by
from .parquet import (drop_replaced_calls, iter_file, night_tables, part_path, read_arrow, read_file,
                      split_by_date, transaction)
from .transaction import NIGHT_PREFIX, STAGING, Transaction

logger = logging.getLogger("callqa.store")
DONE = ".done"  # under a night's rows/: one empty file per batch whose every table is staged
ROW_GROUP = 65_536  # rows per row group of a published file: merging later reads one group at a time


def night_staging(out_dir: str | Path, run_id: str) -> Path:
    """Where the tasks of night ``run_id`` stage what they hand on."""
    return Path(out_dir) / STAGING / f"{NIGHT_PREFIX}{run_id}"


def salvage(out_dir: str | Path) -> int:
    """Publish what earlier nights staged and never published (a night that failed while writing: a
    full disk; or one that was stopped), each in a transaction of its own, then remove it: their
    calls were transcribed and checked, and the night about to run reuses them instead of
    transcribing them again. Call it holding the output lock.

    Returns:
        The calls published.

    Raises:
        StoreError, SchemaMismatchError: the rows cannot be written (they stay staged for the next try).
    """
    root = Path(out_dir) / STAGING
    calls = 0
    for staging in sorted(root.glob(f"{NIGHT_PREFIX}*")) if root.is_dir() else []:
        done = {p.name for p in (staging / "rows" / DONE).glob("*")}
        for part in (staging / "rows").glob(f"*/{PARTITION_COLUMN}=*/*.parquet"):
            if part.stem not in done:  # a batch stopped while it staged its tables: some are missing
                part.unlink()
        staged_calls = sum(len(parts) for parts in _staged(staging, "calls").values())
        if staged_calls:
            with transaction(out_dir) as txn:
                written = publish_staged(out_dir, staging, txn)
            calls += written.get("calls", 0)
            logger.warning("%s: published the %d call(s) an earlier night staged but never wrote (%s)", out_dir,
                           written.get("calls", 0), staging.name)
        clear(staging)
    return calls


def _replace_into(path: Path, write) -> None:
    """Write a file under a temporary name, then move it into place (a task run twice overwrites it)."""
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc}") from exc


def save_batch(staging: Path, name: str, batch: object) -> None:
    """Keep a planned batch (its recordings and what they need) for the task that runs it."""
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            pickle.dump(batch, handle, protocol=pickle.HIGHEST_PROTOCOL)

    _replace_into(staging / "plan" / f"{name}.pkl", write)


def load_batch(staging: Path, name: str) -> object:
    """A batch the plan kept (written by this night, in this output folder: not outside input).

    Raises:
        StoreError: it is gone (the staging area was cleared under a running night).
    """
    try:
        with open(staging / "plan" / f"{name}.pkl", "rb") as handle:
            return pickle.load(handle)
    except OSError as exc:
        raise StoreError(f"cannot read the planned batch {name}: {exc}") from exc


def stage_rows(staging: Path, name: str, tables: dict[str, list]) -> dict[str, int]:
    """Write a batch's rows (per table, dicts or records with a ``call_date``) to the staging area.

    Returns:
        Rows staged per table.

    Raises:
        SchemaMismatchError: rows do not match the schema.
        StoreError: the staging area cannot be written.
    """
    counts = {}
    for table in night_tables():
        rows = tables.get(table) or []
        counts[table] = len(rows)
        for date, data in split_by_date(table, rows).items() if rows else ():
            target = staging / "rows" / table / f"{PARTITION_COLUMN}={date}" / f"{name}.parquet"
            _replace_into(target, lambda path, data=data: pq.write_table(data, path, compression="zstd"))
    _replace_into(staging / "rows" / DONE / name, lambda path: path.write_bytes(b""))  # every table of it is in
    return counts


def _staged(staging: Path, table: str) -> dict[str, list[Path]]:
    """A table's staged files by call date."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted((staging / "rows" / table).glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        found[path.parent.name.split("=", 1)[1]].append(path)
    return found


def _merge(out_dir: Path, table: str, date: str, files: list[Path], replace: set[str], txn: Transaction) -> bool:
    """One partition: its stored rows but those of ``replace``, then the staged ``files``, streamed.
    Returns whether the partition was (re)written."""
    target = part_path(out_dir, table, date)
    current = txn.current(target)
    column = replaced_by(table)
    values = pa.array(sorted(replace), pa.string())
    if current is not None and not files:
        stored = read_file(current, table, [column])[column]
        if not pc.any(pc.is_in(stored, value_set=values)).as_py():
            return False  # nothing of tonight's in it: left as it is
    schema = TABLES[table]

    def write(path: Path) -> None:
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            if current is not None:
                for group in iter_file(current, table):
                    writer.write_table(group.filter(pc.invert(pc.is_in(group[column], value_set=values))),
                                       row_group_size=ROW_GROUP)
            for file in files:
                writer.write_table(read_file(file, table), row_group_size=ROW_GROUP)

    staged = txn.stage(target)
    _replace_into(staged, write)  # read from the staged file itself when this night already rewrote it
    return True


def publish_staged(out_dir: str | Path, staging: Path, txn: Transaction) -> dict[str, int]:
    """Merge a night's staged rows into the tables, inside ``txn``: rows of tonight's calls replace their
    earlier rows (``errors`` by file); a call stored under another id for the same recording, or under
    another call date, is removed; every table exists for every call date of the night.

    Returns:
        Rows written per table.

    Raises:
        SchemaMismatchError: staged or stored rows do not match the schema.
        StoreError: the output cannot be written.
    """
    out_dir = Path(out_dir)
    staged = {table: _staged(staging, table) for table in night_tables()}
    new_dates: dict[str, str] = {}
    paths: set[str] = set()
    files: set[str] = set()
    for date, parts in staged["calls"].items():
        for part in parts:
            rows = read_file(part, "calls", ["call_id", "file", "path"])
            new_dates.update(dict.fromkeys(rows["call_id"].to_pylist(), date))
            paths.update(p for p in rows["path"].to_pylist() if p)
            files.update(f for f in rows["file"].to_pylist() if f)
    for parts in staged["errors"].values():
        for part in parts:
            files.update(f for f in read_file(part, "errors", ["file"])["file"].to_pylist() if f)
    drop_replaced_calls(out_dir, paths, new_dates, txn)
    call_ids, dates = set(new_dates), set(new_dates.values())
    written = {}
    for table in night_tables():
        replace = files if table == "errors" else call_ids
        targets = set(staged[table]) | dates
        if table == "errors":  # a file's old error may sit under another date: look everywhere
            targets |= set(read_arrow(out_dir, "errors", ["file"], txn=txn)[PARTITION_COLUMN].to_pylist())
        for date in sorted(targets):
            _merge(out_dir, table, date, staged[table].get(date, []), replace, txn)
        written[table] = sum(pq.ParquetFile(part).metadata.num_rows for parts in staged[table].values()
                             for part in parts)
    return written


def write_run(out_dir: str | Path, tables: dict[str, list], txn: Transaction | None = None) -> dict[str, int]:
    """Write a set of calls' rows (per table) as a night publishes them: staged, then merged by
    :func:`publish_staged` (rows of these calls replace their earlier rows), in ``txn`` or a transaction
    of its own.

    Returns:
        Rows written per table.
    """
    if txn is None:
        with transaction(out_dir) as own:
            return write_run(out_dir, tables, own)
    staging = txn.root / "rows-of-run"
    stage_rows(staging, "run", tables)
    try:
        return publish_staged(out_dir, staging, txn)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def clear(staging: Path) -> None:
    """Remove a night's staging area once its rows are published."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()
    except OSError:
        pass

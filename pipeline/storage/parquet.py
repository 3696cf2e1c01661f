"""The only module that reads or writes Parquet.

Layout: ``OUT_DIR/<table>/call_date=YYYY-MM-DD/part-0.parquet``, one file per table and call date.
A write merges into that file: rows of the calls (or files) being written replace their earlier rows
(the column a table is replaced by is declared in its schema: ``schemas.replaced_by``), so running the
same night twice never duplicates anything. Every write belongs to a
:class:`~pipeline.storage.transaction.Transaction`: the new files are staged and published together,
so a reader (or the next night) never sees half of a night, whatever stops it.

Rows to write are dicts (the transcript tables, as :mod:`pipeline.storage.rows` makes them) or typed
records (:class:`~pipeline.records.Hit`, :class:`~pipeline.records.RuleResult`): their columns are the
schema's, read by name; a dict with a key the schema lacks is refused.
"""

from __future__ import annotations

import logging
import threading
import os
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SchemaMismatchError, StoreError
from ..schemas import PARTITION_COLUMN, SCHEMA_VERSION, TABLES, appended, replaced_by, rewritten_whole, table_key
from .transaction import Transaction, fsync_dir

logger = logging.getLogger("callqa.store")

PART_NAME = "part-0.parquet"


def partition_of(row: Any) -> str:
    """The call date a row is stored under (its ``call_date``)."""
    return row[PARTITION_COLUMN] if isinstance(row, dict) else row.call_date


def to_arrow(table: str, rows: list) -> pa.Table:
    """Build an Arrow table for ``table`` from rows, validated against its schema.

    Raises:
        SchemaMismatchError: a column is missing, extra, or of the wrong type.
    """
    schema = TABLES[table]
    names = schema.names
    dicts = [row for row in rows if isinstance(row, dict)]
    extra = {k for row in dicts for k in row} - set(names) - {PARTITION_COLUMN}
    if extra:
        raise SchemaMismatchError(f"{table}: columns not in schema v{SCHEMA_VERSION}: {sorted(extra)}")
    try:
        values = [{k: row.get(k) for k in names} if isinstance(row, dict) else {k: getattr(row, k) for k in names}
                  for row in rows]
        return pa.Table.from_pylist(values, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaMismatchError(f"{table}: rows do not match schema v{SCHEMA_VERSION}: {exc}") from exc


def _major(version: bytes | None) -> str:
    return (version or b"?").decode().split(".")[0]


def part_path(out_dir: str | Path, table: str, date: str) -> Path:
    return Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME


def _date_of(path: Path) -> str:
    return path.parent.name.split("=", 1)[1]


def _stored_schema(path: Path) -> pa.Schema:
    """A stored file's schema, refused when it has another major schema version.

    Raises:
        SchemaMismatchError: another major schema version.
        StoreError: the file cannot be read.
    """
    try:
        stored_schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    version = (stored_schema.metadata or {}).get(b"callqa.schema_version")
    if _major(version) != _major(SCHEMA_VERSION.encode()):
        raise SchemaMismatchError(f"{path}: schema version {version!r}, this callqa reads {SCHEMA_VERSION}")
    return stored_schema


def _conform(stored: pa.Table, path: Path, table: str, wanted: list[pa.Field]) -> pa.Table:
    """Stored rows in the current schema: columns an older minor version lacks become nulls."""
    arrays = [stored[f.name] if f.name in stored.column_names else pa.nulls(stored.num_rows, f.type) for f in wanted]
    try:
        return pa.Table.from_arrays(arrays, schema=pa.schema(wanted, metadata=TABLES[table].metadata))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"{path}: does not match schema {SCHEMA_VERSION}: {exc}") from exc


def read_file(path: Path, table: str, columns: list[str] | None = None, call_ids: set[str] | None = None) -> pa.Table:
    """One stored file in the current schema (only ``columns``, if given; only the rows of ``call_ids``,
    if given, read a row group at a time): columns an older minor version lacks become nulls.

    Raises:
        SchemaMismatchError: the file has another major schema version, or its columns cannot be cast.
        StoreError: the file cannot be read (damaged, not Parquet, not readable).
    """
    wanted = [f for f in TABLES[table] if columns is None or f.name in columns]
    stored_schema = _stored_schema(path)
    present = [f.name for f in wanted if f.name in stored_schema.names]
    try:
        if call_ids is None:
            stored = pq.read_table(path, columns=present, partitioning=None)
        else:
            stored = pq.read_table(path, columns=present, partitioning=None,
                                   filters=pc.field("call_id").isin(sorted(call_ids)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    return _conform(stored, path, table, wanted)


def iter_file(path: Path, table: str) -> Iterator[pa.Table]:
    """One stored file in the current schema, a row group at a time (for merging partitions that do not
    fit in memory at once).

    Raises:
        SchemaMismatchError, StoreError: as :func:`read_file`.
    """
    _stored_schema(path)
    wanted = list(TABLES[table])
    try:
        handle = pq.ParquetFile(path)
        for group in range(handle.num_row_groups):
            yield _conform(handle.read_row_group(group), path, table, wanted)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc


def _without(table: pa.Table, column: str, values: set[str]) -> pa.Table:
    """The rows of ``table`` whose ``column`` is not one of ``values``."""
    return table.filter(pc.invert(pc.is_in(table[column], value_set=pa.array(sorted(values), pa.string()))))


def _write(txn: Transaction, target: Path, data: pa.Table) -> None:
    pq.write_table(data, txn.stage(target), compression="zstd")


@contextmanager
def transaction(out_dir: str | Path) -> Iterator[Transaction]:
    """Everything written inside becomes visible together when the block ends, or not at all.

    Raises:
        StoreError: the output folder cannot be written (nothing of this transaction is published).
    """
    txn = Transaction(out_dir)
    try:
        yield txn
        txn.commit()
    except OSError as exc:
        txn.abort()
        raise StoreError(f"cannot write the tables under {out_dir}: {exc}") from exc
    except BaseException:
        txn.abort()
        raise


@contextmanager
def _within(out_dir: str | Path, txn: Transaction | None) -> Iterator[Transaction]:
    """The caller's transaction, or one of our own for a write that stands alone."""
    if txn is not None:
        yield txn
    else:
        with transaction(out_dir) as own:
            yield own


def split_by_date(table: str, rows: list | pa.Table) -> dict[str, pa.Table]:
    """Rows (dicts or records, or an Arrow table with a ``call_date`` column) split by call date, in the schema."""
    if isinstance(rows, pa.Table):
        out = {}
        for date in pc.unique(rows[PARTITION_COLUMN]).to_pylist():
            part = rows.filter(pc.equal(rows[PARTITION_COLUMN], date)).drop_columns([PARTITION_COLUMN])
            try:
                out[date] = part.select(TABLES[table].names).cast(TABLES[table])
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
                raise SchemaMismatchError(f"{table}: table does not match schema v{SCHEMA_VERSION}: {exc}") from exc
        return out
    by_date: dict[str, list] = defaultdict(list)
    for row in rows:
        by_date[partition_of(row)].append(row)
    return {date: to_arrow(table, date_rows) for date, date_rows in by_date.items()}


def write_table(out_dir: str | Path, table: str, rows: list | pa.Table, replace: set[str] | None = None,
                txn: Transaction | None = None) -> int:
    """Merge rows into a table's date partitions.

    Args:
        out_dir: the output folder.
        table: one of ``schemas.TABLES``.
        rows: rows with a ``call_date`` each (dicts or records, or an Arrow table with a ``call_date`` column).
        replace: values of the table's replace column whose old rows are removed (default: those in rows).
        txn: the transaction to write in (default: one of its own, committed at once).

    Returns:
        The number of rows written.

    Raises:
        SchemaMismatchError: rows (or an existing file) do not match the schema.
        StoreError: the output cannot be written.
    """
    column = replaced_by(table)
    partitions = split_by_date(table, rows)
    replace = set(replace or ()) | {v for part in partitions.values() for v in part[column].to_pylist()}
    with _within(out_dir, txn) as t:
        for date, new in sorted(partitions.items()):
            target = part_path(out_dir, table, date)
            current = t.current(target)
            if current is not None:
                new = pa.concat_tables([_without(read_file(current, table), column, replace), new])
            _write(t, target, new)
    return sum(part.num_rows for part in partitions.values())


def night_tables() -> list[str]:
    """The tables a night (or a rescore) writes rows into: all but the derived and the appended ones."""
    return [t for t in TABLES if not rewritten_whole(t) and not appended(t)]


def drop_replaced_calls(out_dir: str | Path, paths: set[str], new_dates: dict[str, str], txn: Transaction) -> None:
    """Before tonight's calls are written: remove the stored calls of the same recordings (``paths``,
    absolute) under another call id, and the rows of tonight's calls (``new_dates``: call id -> call
    date) stored under another call date, so that no call is ever stored twice."""
    _drop_superseded(out_dir, paths, set(new_dates), txn)
    _drop_moved_calls(out_dir, new_dates, txn)


def _call_tables() -> list[str]:
    return [t for t in TABLES if not rewritten_whole(t) and not appended(t) and replaced_by(t) == "call_id"]


def _drop_superseded(out_dir: str | Path, paths: set[str], tonight: set[str], txn: Transaction) -> None:
    """Remove the stored calls of tonight's recordings (``paths``, absolute) that are stored under
    another call id than tonight's (``tonight``): each recording is one call."""
    if not paths:
        return
    stored = read_arrow(out_dir, "calls", ["call_id", "path"], txn=txn)
    gone = {cid for cid, path in zip(stored["call_id"].to_pylist(), stored["path"].to_pylist())
            if path in paths and cid not in tonight}
    if gone:
        logger.info("%d stored call(s) replaced by tonight's calls of the same recordings", len(gone))
        for table in _call_tables():
            remove_rows(out_dir, table, gone, txn)


def _drop_moved_calls(out_dir: str | Path, new_dates: dict[str, str], txn: Transaction) -> None:
    """Remove the rows of calls that are stored under another call date than the one they are written
    with now (the manifest's start time changed), so that no call is ever stored twice."""
    if not new_dates:
        return
    stored = read_arrow(out_dir, "calls", ["call_id"], txn=txn)
    moved: dict[str, set[str]] = defaultdict(set)
    for call_id, date in zip(stored["call_id"].to_pylist(), stored[PARTITION_COLUMN].to_pylist()):
        if call_id in new_dates and new_dates[call_id] != date:
            moved[date].add(call_id)
    for date, call_ids in moved.items():
        logger.info("%d call(s) moved from call date %s: their old rows are removed", len(call_ids), date)
        for table in _call_tables():
            target = part_path(out_dir, table, date)
            current = txn.current(target)
            if current is not None:
                _write(txn, target, _without(read_file(current, table), "call_id", call_ids))


def remove_rows(out_dir: str | Path, table: str, replace: set[str], txn: Transaction | None = None) -> None:
    """Drop the rows whose replace column (``schemas.replaced_by``) is one of ``replace``, in every
    partition: the old rows of re-processed calls when a table gets no new rows for them."""
    if not replace:
        return
    column = replaced_by(table)
    with _within(out_dir, txn) as t:
        for target in t.targets(f"{table}/{PARTITION_COLUMN}=*/{PART_NAME}"):
            old = read_file(t.current(target), table)
            kept = _without(old, column, replace)
            if kept.num_rows < old.num_rows:
                _write(t, target, kept)


def replace_table(out_dir: str | Path, table: str, rows: list[dict], txn: Transaction | None = None) -> int:
    """Rewrite a derived table whole (``agent_scores``): its partitions are replaced, and those that
    no longer have rows removed, when the transaction commits.

    Returns:
        The number of rows written.
    """
    by_date: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_date[partition_of(row)].append(row)
    with _within(out_dir, txn) as t:
        for date, date_rows in sorted(by_date.items()):
            _write(t, part_path(out_dir, table, date), to_arrow(table, date_rows))
        for target in t.targets(f"{table}/{PARTITION_COLUMN}=*/{PART_NAME}"):
            if _date_of(target) not in by_date:
                t.delete(target)
    return len(rows)


def read_arrow(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None), txn: Transaction | None = None,
               call_ids: set[str] | None = None) -> pa.Table:
    """Read a table (optionally some columns, optionally call dates ``from..to`` inclusive, optionally
    only the rows of ``call_ids``) as Arrow, with ``call_date`` as its last column. Inside a
    transaction, what it has written so far is read.

    Raises:
        SchemaMismatchError: a file has another major schema version.
        StoreError: a file cannot be read (damaged, not Parquet, not readable).
    """
    wanted = [f for f in TABLES[table] if columns is None or f.name in columns]
    out_schema = pa.schema(wanted + [pa.field(PARTITION_COLUMN, pa.string())])
    if appended(table):  # one file per save, never inside a night's transaction: read once, kept
        rows = _appended_rows(out_dir, table)
        keep = pc.scalar(True)
        if dates[0]:
            keep = pc.and_(keep, pc.greater_equal(rows[PARTITION_COLUMN], dates[0]))
        if dates[1]:
            keep = pc.and_(keep, pc.less_equal(rows[PARTITION_COLUMN], dates[1]))
        if call_ids is not None:
            keep = pc.and_(keep, pc.is_in(rows["call_id"], pa.array(sorted(call_ids), pa.string())))
        if dates[0] or dates[1] or call_ids is not None:
            rows = rows.filter(keep)
        return rows.select([f.name for f in out_schema]).cast(out_schema)
    else:
        pattern = f"{table}/{PARTITION_COLUMN}=*/{PART_NAME}"
        targets = txn.targets(pattern) if txn is not None else sorted(Path(out_dir).glob(pattern))
    parts = []
    for target in targets:
        date = _date_of(target)
        if (dates[0] and date < dates[0]) or (dates[1] and date > dates[1]):
            continue
        stored = read_file(txn.current(target) if txn is not None else target, table, columns, call_ids)
        parts.append(stored.append_column(PARTITION_COLUMN, pa.array([date] * stored.num_rows, pa.string())))
    if not parts:
        return out_schema.empty_table()
    return pa.concat_tables(parts).cast(out_schema)


_appended: dict[str, tuple[frozenset[str], pa.Table]] = {}  # folder -> (files read, their rows)
_appended_lock = threading.Lock()


def _appended_rows(out_dir: str | Path, table: str) -> pa.Table:
    """Every row of an appended table (``reviews``: one file per save, never rewritten), with its
    ``call_date``. The files already read are kept in memory, so a review page serving 10,000 verdicts
    reads only the files saved since its last request (a file that went away is read again with all)."""
    root = Path(out_dir) / table
    files: dict[str, str] = {}  # path -> call date
    if root.is_dir():
        for folder in os.scandir(root):
            if folder.is_dir() and folder.name.startswith(f"{PARTITION_COLUMN}="):
                for entry in os.scandir(folder.path):
                    if entry.name.endswith(".parquet") and not entry.name.startswith("."):
                        files[entry.path] = folder.name.split("=", 1)[1]
    key = str(root.resolve())
    with _appended_lock:
        cached = _appended.get(key)
    names = frozenset(files)
    if cached is not None and cached[0] == names:
        return cached[1]
    base = cached[1] if cached is not None and cached[0] <= names else None
    new = sorted(names - cached[0]) if base is not None else sorted(names)
    schema = pa.schema(list(TABLES[table]) + [pa.field(PARTITION_COLUMN, pa.string())])
    parts = [base] if base is not None else []
    for path in new:
        stored = read_file(Path(path), table)
        parts.append(stored.append_column(PARTITION_COLUMN, pa.array([files[path]] * stored.num_rows, pa.string())))
    rows = pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()
    identity = table_key(table)
    if rows.num_rows and len(pc.unique(rows[identity[0]])) < rows.num_rows:  # read during a compaction
        rows = pa.Table.from_pandas(rows.to_pandas().drop_duplicates(identity), schema=schema, preserve_index=False)
    if rows.column(0).num_chunks > 64:  # one chunk per file read: kept few, so reading them stays fast
        rows = rows.combine_chunks()
    with _appended_lock:
        _appended[key] = (names, rows)
    return rows


def read_table(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None)) -> pd.DataFrame:
    """Read a table (all dates, or ``dates`` from..to inclusive) into pandas, with ``call_date`` as a column.

    Returns:
        The rows; an empty frame with the schema's columns when nothing has been written yet.

    Raises:
        SchemaMismatchError: the files were written with another major schema version.
        StoreError: a file cannot be read.
    """
    return read_arrow(out_dir, table, columns, dates).to_pandas()


def append_rows(out_dir: str | Path, table: str, rows: list[dict]) -> list[Path]:
    """Add rows to an appended table (``reviews``): one new file per call date, written under a
    temporary name, synced and renamed into place, so a reader sees all of a save or none of it and
    two savers at once (two reviewers, two processes) never overwrite each other. A stored row is never
    changed: when a date holds more than ``COMPACT_AT`` files, their rows are copied into one file and
    those files removed (:func:`_compact`).

    Returns:
        The files written.

    Raises:
        SchemaMismatchError: a row does not match the schema.
        StoreError: the output folder cannot be written.
    """
    if not appended(table):
        raise StoreError(f"{table} is not an appended table")
    written = []
    for date, data in sorted(split_by_date(table, rows).items()):
        folder = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            written.append(_save(folder, data))
        except OSError as exc:
            raise StoreError(f"cannot write {table} under {out_dir}: {exc}") from exc
        _compact(folder, table)
    return written


def _save(folder: Path, data: pa.Table, tag: str = "") -> Path:
    """Write one new file of an appended table into ``folder``: under a temporary name (not
    ``*.parquet``: no reader picks it up half-written), synced, renamed into place, the folder synced.

    Raises:
        OSError: it cannot be written (nothing is left behind).
    """
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{tag}{uuid.uuid4().hex}.parquet"
    partial = folder / f".{name}.partial"
    try:
        pq.write_table(data, partial, compression="zstd")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, folder / name)
        fsync_dir(folder)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return folder / name


COMPACT_AT = 200  # files of one date of an appended table before they are copied into one


def _compact(folder: Path, table: str) -> None:
    """Copy the rows of a date's files into one new file (written as a save is), then remove those
    files. Safe beside other savers and readers: a file saved meanwhile is not touched; a reader that
    lists the folder between the copy and the removals sees rows twice, and readers keep one row per
    key (:func:`_appended_rows`); two compactions at once copy rows twice, the same way. A failure
    leaves every row where it was."""
    files = sorted(p for p in folder.glob("*.parquet"))
    if len(files) <= COMPACT_AT:
        return
    try:
        _save(folder, pa.concat_tables([read_file(p, table) for p in files]), "compacted-")
        for path in files:
            path.unlink(missing_ok=True)
        fsync_dir(folder)
    except (OSError, StoreError, SchemaMismatchError) as exc:
        logger.warning("%s: the saves were not compacted (%s); they stay as they are", folder, exc)

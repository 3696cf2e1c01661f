"""The only module that reads or writes Parquet.

Layout: ``OUT_DIR/<table>/call_date=YYYY-MM-DD/part-0.parquet``, one file per table and call date.
A write merges into that file: rows of the calls (or files) being written replace their earlier rows
(the column a table is replaced by is declared in its schema: ``schemas.replaced_by``), so running the
same night twice never duplicates anything. The new file is written beside the old one under a hidden
name and renamed over it, so a reader never sees a half-written file.

Rows to write are dicts (the transcript tables, as :mod:`pipeline.storage.rows` makes them) or typed
records (:class:`~pipeline.records.Hit`, :class:`~pipeline.records.RuleResult`): their columns are the
schema's, read by name; a dict with a key the schema lacks is refused.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import SchemaMismatchError, StoreError
from ..schemas import PARTITION_COLUMN, SCHEMA_VERSION, TABLES, replaced_by, rewritten_whole

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


def conform(stored: pa.Table, table: str, where: str) -> pa.Table:
    """A stored table in the current schema: columns an older minor version lacks become nulls.

    Raises:
        SchemaMismatchError: the file has another major schema version, or its columns cannot be cast.
    """
    schema = TABLES[table]
    version = (stored.schema.metadata or {}).get(b"callqa.schema_version")
    if _major(version) != _major(SCHEMA_VERSION.encode()):
        raise SchemaMismatchError(f"{where}: schema version {version!r}, this callqa reads {SCHEMA_VERSION}")
    columns = [stored[f.name] if f.name in stored.column_names else pa.nulls(stored.num_rows, f.type)
               for f in schema]
    try:
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"{where}: does not match schema {SCHEMA_VERSION}: {exc}") from exc


def _without(table: pa.Table, column: str, values: set[str]) -> pa.Table:
    """The rows of ``table`` whose ``column`` is not one of ``values``."""
    return table.filter(pc.invert(pc.is_in(table[column], value_set=pa.array(sorted(values), pa.string()))))


def _atomic_write(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _partitions(table: str, rows: list | pa.Table) -> dict[str, pa.Table]:
    """Rows (dicts, or an Arrow table with a ``call_date`` column) split by call date, in the schema."""
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


def write_table(out_dir: str | Path, table: str, rows: list | pa.Table, replace: set[str] | None = None) -> int:
    """Merge rows into a table's date partitions, atomically.

    Args:
        out_dir: the output folder.
        table: one of ``schemas.TABLES``.
        rows: rows with a ``call_date`` each (dicts or records, or an Arrow table with a ``call_date`` column).
        replace: values of the table's replace column whose old rows are removed (default: those in rows).

    Returns:
        The number of rows written.

    Raises:
        SchemaMismatchError: rows (or an existing file) do not match the schema.
        StoreError: the output cannot be written.
    """
    column = replaced_by(table)
    partitions = _partitions(table, rows)
    replace = set(replace or ()) | {v for part in partitions.values() for v in part[column].to_pylist()}
    try:
        for date, new in sorted(partitions.items()):
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if target.exists():
                old = conform(pq.read_table(target), table, str(target))
                new = pa.concat_tables([_without(old, column, replace), new])
            _atomic_write(new, target)
    except OSError as exc:
        raise StoreError(f"cannot write {table} under {out_dir}: {exc}") from exc
    return sum(part.num_rows for part in partitions.values())


def write_run(out_dir: str | Path, tables: dict[str, list]) -> dict[str, int]:
    """Write every table of a run. Rows of the run's calls replace earlier rows of the same calls.

    Returns:
        Rows written per table.
    """
    call_ids = {row["call_id"] for row in tables.get("calls", [])}
    files = {row["file"] for row in tables.get("calls", [])} | {row["file"] for row in tables.get("errors", [])}
    dates = {row[PARTITION_COLUMN] for row in tables.get("calls", [])}
    _drop_moved_calls(out_dir, {row["call_id"]: row[PARTITION_COLUMN] for row in tables.get("calls", [])})
    written = {}
    for table in TABLES:
        if rewritten_whole(table):
            continue
        rows = tables.get(table, [])
        replace = files if table == "errors" else call_ids
        if rows:
            written[table] = write_table(out_dir, table, rows, replace)
        else:
            written[table] = 0
            remove_rows(out_dir, table, replace)
        # every table of a night exists, even with no rows, so readers get its columns instead of an error
        for date in dates:
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if not target.exists():
                _atomic_write(TABLES[table].empty_table(), target)
    return written


def _drop_moved_calls(out_dir: str | Path, new_dates: dict[str, str]) -> None:
    """Remove the rows of calls that are stored under another call date than the one they are written
    with now (the manifest's start time changed), so that no call is ever stored twice."""
    if not new_dates or not (Path(out_dir) / "calls").exists():
        return
    stored = read_arrow(out_dir, "calls", ["call_id"])
    moved: dict[str, set[str]] = defaultdict(set)
    for call_id, date in zip(stored["call_id"].to_pylist(), stored[PARTITION_COLUMN].to_pylist()):
        if call_id in new_dates and new_dates[call_id] != date:
            moved[date].add(call_id)
    for date, call_ids in moved.items():
        logger.info("%d call(s) moved from call date %s: their old rows are removed", len(call_ids), date)
        for table in TABLES:
            if rewritten_whole(table) or replaced_by(table) != "call_id":
                continue
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if target.exists():
                old = pq.read_table(target)
                _atomic_write(_without(old, "call_id", call_ids), target)


def remove_rows(out_dir: str | Path, table: str, replace: set[str]) -> None:
    """Drop the rows whose replace column (``schemas.replaced_by``) is one of ``replace``, in every
    partition: the old rows of re-processed calls when a table gets no new rows for them."""
    if not replace:
        return
    column = replaced_by(table)
    for target in sorted((Path(out_dir) / table).glob(f"{PARTITION_COLUMN}=*/{PART_NAME}")):
        old = pq.read_table(target)
        kept = _without(old, column, replace)
        if kept.num_rows < old.num_rows:
            _atomic_write(kept, target)


def replace_table(out_dir: str | Path, table: str, rows: list[dict]) -> int:
    """Rewrite a derived table whole (``agent_scores``): new partitions are written, then swapped in.

    Each partition file is replaced atomically; partitions that no longer have rows are removed last.

    Returns:
        The number of rows written.
    """
    by_date: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_date[partition_of(row)].append(row)
    root = Path(out_dir) / table
    try:
        for date, date_rows in sorted(by_date.items()):
            _atomic_write(to_arrow(table, date_rows), root / f"{PARTITION_COLUMN}={date}" / PART_NAME)
        for stale in root.glob(f"{PARTITION_COLUMN}=*"):
            if stale.name.split("=", 1)[1] not in by_date:
                for child in stale.iterdir():
                    child.unlink()
                stale.rmdir()
    except OSError as exc:
        raise StoreError(f"cannot write {table} under {out_dir}: {exc}") from exc
    return len(rows)


def read_arrow(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None)) -> pa.Table:
    """Read a table (optionally some columns, optionally call dates ``from..to`` inclusive) as Arrow.

    Raises:
        SchemaMismatchError: a file has another major schema version.
        StoreError: a file cannot be read (damaged, not Parquet, not readable).
    """
    schema = TABLES[table]
    path = Path(out_dir) / table
    wanted = [f for f in schema if columns is None or f.name in columns]
    out_schema = pa.schema(wanted + [pa.field(PARTITION_COLUMN, pa.string())])
    if not path.exists():
        return out_schema.empty_table()
    try:
        dataset = ds.dataset(path, format="parquet", partitioning=ds.partitioning(
            pa.schema([pa.field(PARTITION_COLUMN, pa.string())]), flavor="hive"))
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"cannot read the {table} table under {out_dir}: {exc}") from exc
    parts = []
    for fragment in dataset.get_fragments():
        date = fragment.path.rsplit(f"{PARTITION_COLUMN}=", 1)[1].split("/", 1)[0]
        if (dates[0] and date < dates[0]) or (dates[1] and date > dates[1]):
            continue
        try:
            physical = fragment.to_table(schema=fragment.physical_schema)
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(f"cannot read {fragment.path}: {exc}") from exc
        stored = conform(physical, table, fragment.path)
        stored = stored.select([f.name for f in wanted])
        parts.append(stored.append_column(PARTITION_COLUMN, pa.array([date] * stored.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else out_schema.empty_table()


def read_table(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None)) -> pd.DataFrame:
    """Read a table (all dates, or ``dates`` from..to inclusive) into pandas, with ``call_date`` as a column.

    Returns:
        The rows; an empty frame with the schema's columns when nothing has been written yet.

    Raises:
        SchemaMismatchError: the files were written with another major schema version.
    """
    return read_arrow(out_dir, table, columns, dates).to_pandas()

"""Parquet staging between pipeline stages: deterministic paths, typed round-trips, atomic writes.

Layout, one folder per data interval::

    <staging>/<interval_key>/posts-00000.parquet           (one file per shard)
    <staging>/<interval_key>/mentions-00000.parquet
    <staging>/<interval_key>/typed_mentions-00000.parquet
    <staging>/<interval_key>/relations-00000.parquet
    <staging>/<interval_key>/quarantine.parquet
    <staging>/images/<sha256>.<ext>                         (downloaded images, see extraction.images)

``interval_key`` is ``YYYY-MM-DD`` for a day from midnight UTC to midnight UTC, and
``YYYYMMDDTHHMM_YYYYMMDDTHHMM`` (UTC, to the minute) for any other interval. The same interval and
shard always give the same path, so a re-run overwrites its own output instead of adding to it.

Records are the dataclasses of ``mmkg.records``. The Parquet schema is derived from the
dataclass fields: nested dataclasses are flattened into ``outer__inner`` columns
(``head__mention__start``), tuples of dataclasses become lists of structs (``Post.images``) and
dicts are stored as JSON text (``QuarantinedRecord.details``). The record type is written into
the file's metadata, and readers refuse a file of another type.

This module must never leave a half-written file under a final name: every write goes to a
hidden temporary file in the same folder, is flushed to disk, then renamed over the target with
``os.replace``. It never reads the landing directory and never touches files outside
``<staging>``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from mmkg.files import atomic_open
from mmkg.records import Mention, Post, QuarantinedRecord, RelationMention, TypedMention

T = TypeVar("T")

#: Kinds of staged files; all but quarantine are sharded.
SHARDED_KINDS = ("posts", "mentions", "typed_mentions", "relations")
QUARANTINE = "quarantine"

_META_TYPE = b"mmkg.record_type"
_META_VERSION = b"mmkg.schema_version"
_SCHEMA_VERSION = b"1"
_SEP = "__"


# --- paths ----------------------------------------------------------------------------------------


def interval_key(start: datetime, end: datetime) -> str:
    """``YYYY-MM-DD`` for exactly one UTC day, else ``YYYYMMDDTHHMM_YYYYMMDDTHHMM`` in UTC.

    Naive datetimes are taken as UTC. Seconds are dropped in the long form (schedules finer than
    a minute are not supported).
    """
    start_utc, end_utc = _utc(start), _utc(end)
    if end_utc < start_utc:
        raise ValueError(f"interval ends ({end}) before it starts ({start})")
    midnight = start_utc == start_utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight and end_utc - start_utc == timedelta(days=1):
        return start_utc.strftime("%Y-%m-%d")
    return f"{start_utc:%Y%m%dT%H%M}_{end_utc:%Y%m%dT%H%M}"


def interval_dir(staging_dir: str | Path, key: str) -> Path:
    return Path(staging_dir) / key


def stage_path(staging_dir: str | Path, key: str, kind: str, shard: int | None = None) -> Path:
    """The file for ``kind`` (one of SHARDED_KINDS, with a shard number, or ``quarantine``)."""
    if kind == QUARANTINE:
        if shard is not None:
            raise ValueError("the quarantine file is not sharded")
        return interval_dir(staging_dir, key) / "quarantine.parquet"
    if kind not in SHARDED_KINDS:
        raise ValueError(f"unknown staging kind {kind!r}; expected one of {SHARDED_KINDS + (QUARANTINE,)}")
    if shard is None or shard < 0:
        raise ValueError(f"{kind} files need a shard number >= 0")
    return interval_dir(staging_dir, key) / f"{kind}-{shard:05d}.parquet"


def shard_file(shard: dict, kind: str) -> Path:
    """The staged file of ``kind`` for a shard dict passed between tasks (``extraction.pipeline``)."""
    return stage_path(shard["staging_dir"], shard["interval_key"], kind, shard["shard"])


def shard_paths(staging_dir: str | Path, key: str, kind: str) -> list[Path]:
    """The existing shard files of ``kind`` for an interval, in shard order."""
    if kind not in SHARDED_KINDS:
        raise ValueError(f"{kind!r} is not a sharded kind")
    return sorted(interval_dir(staging_dir, key).glob(f"{kind}-[0-9][0-9][0-9][0-9][0-9].parquet"))


def shard_posts(posts: Iterable[Post], shard_size: int) -> list[list[Post]]:
    """Posts sorted by id, cut into shards of at most ``shard_size``; no posts gives no shards."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ordered = sorted(posts, key=lambda p: p.id)
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


def write_post_shards(staging_dir: str | Path, key: str, posts: Iterable[Post], shard_size: int) -> list[Path]:
    """Write ``posts-NNNNN.parquet`` for every shard, and remove shards left by an earlier, larger run."""
    shards = shard_posts(posts, shard_size)
    written = [write_posts(stage_path(staging_dir, key, "posts", i), shard) for i, shard in enumerate(shards)]
    for stale in shard_paths(staging_dir, key, "posts")[len(shards) :]:
        stale.unlink(missing_ok=True)
    return written


# --- typed read / write ---------------------------------------------------------------------------


def write_records(path: str | Path, records: Sequence[Any], record_type: type | None = None) -> Path:
    """Write dataclass records (all of one type) to ``path`` atomically; returns the path.

    An empty list needs ``record_type`` to get a schema; without one an empty file with no
    columns is written, which every reader returns as an empty list.
    """
    records = list(records)
    if record_type is None and records:
        record_type = type(records[0])
    if record_type is None:
        table = pa.table({})
    else:
        if not dataclasses.is_dataclass(record_type):
            raise TypeError(f"{record_type!r} is not a dataclass")
        for r in records:
            if type(r) is not record_type:
                raise TypeError(f"all records must be {record_type.__name__}, got a {type(r).__name__}")
        columns = _columns(record_type)
        schema = pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in columns],
            metadata={_META_TYPE: record_type.__name__.encode(), _META_VERSION: _SCHEMA_VERSION},
        )
        rows = [_to_row(r, columns) for r in records]
        table = pa.Table.from_pylist(rows, schema=schema)
    _atomic_write_table(Path(path), table)
    return Path(path)


def read_records(path: str | Path, record_type: type[T]) -> list[T]:
    """Read a file written by ``write_records`` back into ``record_type`` instances."""
    table = pq.read_table(path)
    if table.num_rows == 0:
        return []
    stored = (table.schema.metadata or {}).get(_META_TYPE)
    if stored is not None and stored.decode() != record_type.__name__:
        raise ValueError(f"{path} holds {stored.decode()} records, not {record_type.__name__}")
    present = set(table.column_names)
    return [_from_row(record_type, row, "", present) for row in table.to_pylist()]


def write_posts(path: str | Path, posts: Sequence[Post]) -> Path:
    return write_records(path, posts, Post)


def read_posts(path: str | Path) -> list[Post]:
    return read_records(path, Post)


def write_quarantine(path: str | Path, records: Sequence[QuarantinedRecord]) -> Path:
    return write_records(path, records, QuarantinedRecord)


def read_quarantine(path: str | Path) -> list[QuarantinedRecord]:
    return read_records(path, QuarantinedRecord)


def read_mentions(path: str | Path) -> list[Mention]:
    return read_records(path, Mention)


def read_typed_mentions(path: str | Path) -> list[TypedMention]:
    return read_records(path, TypedMention)


def read_relations(path: str | Path) -> list[RelationMention]:
    return read_records(path, RelationMention)


# --- dataclass <-> Arrow --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Column:
    name: str  # flattened column name
    attrs: tuple[str, ...]  # attribute path from the record to the value
    kind: str  # "scalar" | "json" | "list"
    arrow_type: pa.DataType
    nullable: bool
    item_type: type | None = None  # for "list": the dataclass of the items


_SCALARS: dict[type, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported union type {hint!r}")
    return hint, False


# Cached: type introspection is per class, and rows are many.
@functools.cache
def _init_fields(cls: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    hints = typing.get_type_hints(cls)  # records use postponed annotations: resolve the strings
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


@functools.cache
def _columns(cls: type, prefix: str = "", attrs: tuple[str, ...] = ()) -> tuple[_Column, ...]:
    columns: list[_Column] = []
    for f, hint in _init_fields(cls):
        name, path = prefix + f.name, attrs + (f.name,)
        inner, nullable = _unwrap_optional(hint)
        if dataclasses.is_dataclass(inner):
            if nullable:
                raise TypeError(f"{cls.__name__}.{f.name}: optional nested records are not supported")
            columns.extend(_columns(inner, name + _SEP, path))
        elif inner in _SCALARS:
            columns.append(_Column(name, path, "scalar", _SCALARS[inner], nullable))
        elif inner is dict or typing.get_origin(inner) is dict:
            columns.append(_Column(name, path, "json", pa.string(), nullable))
        elif typing.get_origin(inner) is tuple and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            item = typing.get_args(inner)[0]
            struct = pa.struct([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in _columns(item)])
            columns.append(_Column(name, path, "list", pa.list_(struct), nullable, item))
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: cannot stage a field of type {hint!r}")
    return tuple(columns)


def _to_row(record: Any, columns: tuple[_Column, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for c in columns:
        value = record
        for attr in c.attrs:
            value = getattr(value, attr)
        if c.kind == "json" and value is not None:
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif c.kind == "list" and value is not None:
            item_columns = _columns(c.item_type)
            value = [_to_row(item, item_columns) for item in value]
        row[c.name] = value
    return row


def _from_row(cls: type, row: dict[str, Any], prefix: str, present: set[str]) -> Any:
    kwargs: dict[str, Any] = {}
    for f, hint in _init_fields(cls):
        name = prefix + f.name
        inner, _ = _unwrap_optional(hint)
        if dataclasses.is_dataclass(inner):
            kwargs[f.name] = _from_row(inner, row, name + _SEP, present)
            continue
        if name not in present:
            # A column added to a record after the file was written: fall back to its default.
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ValueError(f"staged file has no column {name!r} for {cls.__name__}.{f.name}")
        value = row[name]
        if value is not None and (inner is dict or typing.get_origin(inner) is dict):
            value = json.loads(value)
        elif value is not None and typing.get_origin(inner) is tuple:
            item = typing.get_args(inner)[0]
            item_present = {c.name for c in _columns(item)}
            value = tuple(_from_row(item, d, "", item_present & set(d)) for d in value)
        kwargs[f.name] = value
    return cls(**kwargs)


# --- atomic files ---------------------------------------------------------------------------------


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    with atomic_open(path) as f:
        pq.write_table(table, f)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

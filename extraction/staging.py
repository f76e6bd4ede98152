"""Parquet staging between pipeline stages: deterministic paths, typed round-trips, atomic writes.

Layout, one folder per data interval, and in it one folder per run of that interval::

    <staging>/<interval_key>/runs/<run>/posts-00000.parquet        (one file per shard)
    <staging>/<interval_key>/runs/<run>/mentions-00000.parquet
    <staging>/<interval_key>/runs/<run>/typed_mentions-00000.parquet
    <staging>/<interval_key>/runs/<run>/relations-00000.parquet
    <staging>/<interval_key>/runs/<run>/type_scores-00000.parquet   (raw type scores, for the run's agreement)
    <staging>/<interval_key>/runs/<run>/type_agreement.json         (what the run-wide agreement changed)
    <staging>/<interval_key>/runs/<run>/quarantine.parquet, read_counts.json
    <staging>/<interval_key>/runs/<run>/*.attempts                  (one line per attempt of a task)
    <staging>/<interval_key>/quarantine.parquet, read_counts.json, run_report.json   (published)
    <staging>/images/<sha256>.<ext>                         (downloaded images, see extraction.images)

``interval_key`` is ``YYYY-MM-DD`` for a day from midnight UTC to midnight UTC, and
``YYYYMMDDTHHMM_YYYYMMDDTHHMM`` (UTC, to the minute) for any other interval. ``<run>`` is the run
id made safe for a file name plus a hash of it (``run_dir``): two runs of one interval at once
(a re-run started while another runs, overlapping backfills) never read or replace each other's
shards, and a retry of a task of the same run finds its run's files. The same run, interval and
shard always give the same path, so a retried task overwrites its own output instead of adding to
it. The published files beside ``runs/`` are copies of the latest run's (byte-identical for the
same input, whichever run wrote them last). Run folders of an interval idle for more than
``STALE_RUN_S`` are removed by the next run of that interval.

Records are the dataclasses of ``mmkg.records``. The Parquet schema is derived from the
dataclass fields: nested dataclasses are flattened into ``outer__inner`` columns
(``head__mention__start``), tuples of dataclasses become lists of structs (``Post.images``) and
dicts are stored as JSON text (``QuarantinedRecord.details``). The record type and
``SCHEMA_VERSION`` are written into the file's metadata; readers refuse a file of another type
or another schema version (``StagingSchemaError``, naming both versions).

This module must never leave a half-written file under a final name: every write goes to a
hidden temporary file in the same folder, is flushed to disk, then renamed over the target with
``os.replace``. It never reads the landing directory and never touches files outside
``<staging>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import time
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from mmkg.files import atomic_open
from mmkg.records import Mention, Post, QuarantinedRecord, RelationMention, TypedMention

T = TypeVar("T")

#: Kinds of staged files; all but quarantine are sharded.
SHARDED_KINDS = ("posts", "mentions", "typed_mentions", "relations", "type_scores")
QUARANTINE = "quarantine"

_META_TYPE = b"mmkg.record_type"
_META_VERSION = b"mmkg.schema_version"
#: Version of the staged file layout (columns derived from the records); bump it when a change to
#: ``mmkg.records`` or to this module makes older staged files unreadable or wrong.
SCHEMA_VERSION = "1"
_SEP = "__"
#: Run folders of an interval not written to for this long are removed when another run stages it.
STALE_RUN_S = 24 * 3600


class StagingSchemaError(ValueError):
    """A staged file written with another schema version (or of another record type)."""


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


def run_dir(staging_dir: str | Path, key: str, run_id: str) -> Path:
    """``<staging>/<interval_key>/runs/<run>``: the run id made safe for a file name, plus 10 hex
    of its SHA-256 so that two run ids that differ only in unsafe characters never share a folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")[:80] or "run"
    return interval_dir(staging_dir, key) / "runs" / f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def file_in(directory: str | Path, kind: str, shard: int | None = None) -> Path:
    """The file for ``kind`` (one of SHARDED_KINDS, with a shard number, or ``quarantine``) in a folder."""
    if kind == QUARANTINE:
        if shard is not None:
            raise ValueError("the quarantine file is not sharded")
        return Path(directory) / "quarantine.parquet"
    if kind not in SHARDED_KINDS:
        raise ValueError(f"unknown staging kind {kind!r}; expected one of {SHARDED_KINDS + (QUARANTINE,)}")
    if shard is None or shard < 0:
        raise ValueError(f"{kind} files need a shard number >= 0")
    return Path(directory) / f"{kind}-{shard:05d}.parquet"


def stage_path(staging_dir: str | Path, key: str, kind: str, shard: int | None = None) -> Path:
    """The file for ``kind`` in the interval's folder (the published quarantine lives there)."""
    return file_in(interval_dir(staging_dir, key), kind, shard)


def shard_file(shard: dict, kind: str) -> Path:
    """The staged file of ``kind`` for a shard dict passed between tasks (``extraction.pipeline``):
    in the run's folder (``run_dir``), or the interval's for a shard dict written before runs had one."""
    directory = shard.get("run_dir") or interval_dir(shard["staging_dir"], shard["interval_key"])
    return file_in(directory, kind, shard["shard"])


def shard_paths(staging_dir: str | Path, key: str, kind: str) -> list[Path]:
    """The existing shard files of ``kind`` directly in an interval's folder, in shard order."""
    return shard_paths_in(interval_dir(staging_dir, key), kind)


def shard_paths_in(directory: str | Path, kind: str) -> list[Path]:
    """The existing shard files of ``kind`` in a folder, in shard order."""
    if kind not in SHARDED_KINDS:
        raise ValueError(f"{kind!r} is not a sharded kind")
    return sorted(Path(directory).glob(f"{kind}-[0-9][0-9][0-9][0-9][0-9].parquet"))


def shard_posts(posts: Iterable[Post], shard_size: int) -> list[list[Post]]:
    """Posts sorted by id, cut into shards of at most ``shard_size``; no posts gives no shards."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ordered = sorted(posts, key=lambda p: p.id)
    return [ordered[i : i + shard_size] for i in range(0, len(ordered), shard_size)]


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
        _atomic_write_table(Path(path), pa.table({}))
        return Path(path)
    with RecordWriter(path, record_type) as writer:
        writer.write(records)
    return Path(path)


class RecordWriter:
    """Stream records of one type into one Parquet file, a row group per ``write`` call, atomically:
    the file appears under its name, complete, when the ``with`` block ends without an error."""

    def __init__(self, path: str | Path, record_type: type):
        if not dataclasses.is_dataclass(record_type):
            raise TypeError(f"{record_type!r} is not a dataclass")
        self.path, self.record_type = Path(path), record_type
        self._columns = _columns(record_type)
        self._schema = _schema(record_type)
        self._stack: contextlib.ExitStack | None = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def __enter__(self) -> "RecordWriter":
        self._stack = contextlib.ExitStack()
        handle = self._stack.enter_context(atomic_open(self.path))
        self._writer = pq.ParquetWriter(handle, self._schema)
        return self

    def write(self, records: Iterable[Any]) -> None:
        rows = []
        for r in records:
            if type(r) is not self.record_type:
                raise TypeError(f"all records must be {self.record_type.__name__}, got a {type(r).__name__}")
            rows.append(_to_row(r, self._columns))
        if rows or self.rows == 0:  # an empty file still gets its schema (one empty row group)
            self._writer.write_table(pa.Table.from_pylist(rows, schema=self._schema))
            self.rows += len(rows)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                if self.rows == 0:
                    self.write([])
                self._writer.close()
            else:
                with contextlib.suppress(Exception):
                    self._writer.close()
        finally:
            self._stack.__exit__(exc_type, exc, tb)
        return False


def _schema(record_type: type) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in _columns(record_type)],
        metadata={_META_TYPE: record_type.__name__.encode(), _META_VERSION: SCHEMA_VERSION.encode()},
    )


def read_records(path: str | Path, record_type: type[T]) -> list[T]:
    """Read a file written by ``write_records`` back into ``record_type`` instances.

    Raises ``StagingSchemaError`` for a file of another record type or schema version (staged by
    another version of mmkg: re-run the interval's staging), naming what the file holds.
    """
    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    if not table.column_names and not metadata:  # written from an empty list without a type
        return []
    stored = metadata.get(_META_VERSION)
    version = stored.decode(errors="replace") if stored is not None else None
    if version != SCHEMA_VERSION:
        raise StagingSchemaError(
            f"{path} was staged with schema version {version or '(none)'}, but this mmkg reads schema "
            f"version {SCHEMA_VERSION}: re-run the interval's staging (stage_posts) to rewrite it"
        )
    stored_type = metadata.get(_META_TYPE)
    if stored_type is not None and stored_type.decode() != record_type.__name__:
        raise StagingSchemaError(f"{path} holds {stored_type.decode()} records, not {record_type.__name__}")
    if table.num_rows == 0:
        return []
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


# --- raw type scores (the run-wide type agreement's evidence) -------------------------------------

_META_TYPES = b"mmkg.entity_types"
_META_MIN_SCORE = b"mmkg.min_score"
_META_MIN_GAP = b"mmkg.min_gap"
_META_LABEL_SET = b"mmkg.label_set_id"


@dataclasses.dataclass(frozen=True)
class TypeScores:
    """One shard's typing evidence: per typed mention (post id, span), its surface form's key (the entity
    name), the type its shard decided (``shard_types``, ``OTHER_TYPE`` when abstaining) and its raw score
    for each of ``entity_types``; with the typer's ``min_score`` and ``min_gap`` (None: none) and the label set they
    were scored under."""

    entity_types: tuple[str, ...]
    min_score: float
    label_set_id: str
    post_ids: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()
    keys: tuple[str, ...] = ()
    shard_types: tuple[str, ...] = ()
    scores: tuple[tuple[float, ...], ...] = ()
    min_gap: float | None = None


def write_type_scores(path: str | Path, ts: TypeScores) -> Path:
    """Write a shard's ``TypeScores`` atomically (raw scores as float32 lists)."""
    n = len(ts.keys)
    if not (len(ts.post_ids) == len(ts.spans) == len(ts.shard_types) == len(ts.scores) == n):
        raise ValueError("TypeScores columns differ in length")
    schema = pa.schema(
        [pa.field("post_id", pa.string(), nullable=False), pa.field("start", pa.int64(), nullable=False),
         pa.field("end", pa.int64(), nullable=False), pa.field("key", pa.string(), nullable=False),
         pa.field("shard_type", pa.string(), nullable=False), pa.field("scores", pa.list_(pa.float32()), nullable=False)],
        metadata={_META_TYPE: b"TypeScores", _META_VERSION: SCHEMA_VERSION.encode(),
                  _META_TYPES: json.dumps(list(ts.entity_types)).encode(), _META_MIN_SCORE: repr(ts.min_score).encode(),
                  _META_MIN_GAP: repr(ts.min_gap).encode(), _META_LABEL_SET: ts.label_set_id.encode()},
    )  # fmt: skip
    table = pa.table({
        "post_id": list(ts.post_ids), "start": [s for s, _ in ts.spans], "end": [e for _, e in ts.spans],
        "key": list(ts.keys), "shard_type": list(ts.shard_types), "scores": [list(r) for r in ts.scores],
    }, schema=schema)  # fmt: skip
    _atomic_write_table(Path(path), table)
    return Path(path)


def read_type_scores(path: str | Path) -> TypeScores:
    """Read a file ``write_type_scores`` wrote; ``StagingSchemaError`` for another kind or schema version."""
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = meta.get(_META_VERSION, b"").decode(errors="replace") or None
    if meta.get(_META_TYPE) != b"TypeScores" or version != SCHEMA_VERSION:
        raise StagingSchemaError(f"{path} is not a TypeScores file of schema version {SCHEMA_VERSION} "
                                 f"(holds {meta.get(_META_TYPE)!r}, version {version})")
    cols = table.to_pydict()
    return TypeScores(
        entity_types=tuple(json.loads(meta[_META_TYPES])), min_score=float(meta[_META_MIN_SCORE]),
        label_set_id=meta[_META_LABEL_SET].decode(), post_ids=tuple(cols["post_id"]),
        spans=tuple(zip(cols["start"], cols["end"])), keys=tuple(cols["key"]), shard_types=tuple(cols["shard_type"]),
        scores=tuple(tuple(r) for r in cols["scores"]),
        min_gap=None if meta.get(_META_MIN_GAP, b"None") == b"None" else float(meta[_META_MIN_GAP]),
    )  # fmt: skip


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


def publish_copy(source: str | Path, target: str | Path) -> None:
    """Copy a staged file over ``target`` atomically (readers see the old copy or the new one)."""
    with open(source, "rb") as src, atomic_open(target) as dst:
        shutil.copyfileobj(src, dst)


def remove_temporary_files(directory: str | Path) -> list[str]:
    """Remove the hidden ``.*.tmp`` files an interrupted writer left in ``directory`` (see
    ``mmkg.files.atomic_open``). Call it holding the lock of whoever writes there."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def locked(path: str | Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block; yields whether
    it was taken (always True when ``blocking``). The kernel drops it when its process dies, so a
    killed task never leaves a stale lock behind. Locks exclude each other across processes and
    across threads (each ``locked`` opens its own file description)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_attempt(directory: str | Path, task: str) -> int:
    """Append one line to ``<directory>/<task>.attempts`` and return how many attempts it holds now
    (1 for the first): what re-running a task after a failure cost shows in the run report."""
    path = Path(directory) / f"{task}.attempts"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{time.time():.3f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return attempts(directory, task)


def attempts(directory: str | Path, task: str) -> int:
    """How many attempts of ``task`` ``record_attempt`` counted in ``directory`` (0 when none)."""
    try:
        return len((Path(directory) / f"{task}.attempts").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def remove_stale_runs(staging_dir: str | Path, key: str, keep: Path, max_idle_s: float = STALE_RUN_S) -> list[str]:
    """Remove run folders of the interval (other than ``keep``) not written to for ``max_idle_s``
    and not being staged right now (their staging lock is free)."""
    removed = []
    runs = interval_dir(staging_dir, key) / "runs"
    if not runs.is_dir():
        return removed
    now = time.time()
    for entry in sorted(runs.iterdir()):
        if entry == keep or not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            idle = now - max(p.stat().st_mtime for p in (entry, *entry.iterdir()))
        except (OSError, ValueError):
            continue
        if idle < max_idle_s:
            continue
        with locked(entry / ".stage.lock", blocking=False) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)

"""Reading and validating posts from the landing directory: the input contract of mmkg.

Input contract
--------------

Posts are JSONL (one JSON object per line) or Parquet files in a landing directory partitioned by
date::

    <landing>/dt=YYYY-MM-DD/*.jsonl      (also *.ndjson, any case: *.JSONL; gzip: *.jsonl.gz, *.ndjson.gz)
    <landing>/dt=YYYY-MM-DD/*.parquet

Files are read in name order. Nothing else in a partition is read, and everything skipped is
counted (``files_skipped``, and ``files_skipped_<why>`` with why one of ``hidden``: names starting
with ``.`` or ``_``, files being written and markers; ``directory``; ``symlink``: a symlink with
another name; ``unknown_type``: any other name, e.g. ``notes.txt``, ``posts.json``). A post file
that is a **symlink is never followed**: it is refused and quarantined as ``symlinked_file`` with
the link's target in the details and no content (``files_refused``); a post file that is not a
regular file (a FIFO, a device) is ``unreadable_file``.

JSONL: UTF-8, one object per line; a UTF-8 byte-order mark at the start of the file or of any line
is dropped, ``\\r\\n`` line ends are fine, the last line needs no ``\\n``, blank lines are skipped.
Lines are read with a bounded ``readline``: a line over ``MAX_LINE_BYTES`` (1 MiB) is never held
in memory whole; it is quarantined as ``line_too_long`` with its first ``MAX_PAYLOAD_CHARS`` and
its length, and reading goes on with the next line. A gzip file that turns out damaged, or that
inflates past ``MAX_GZIP_RATIO`` times its size (a gzip bomb), keeps the lines read before and is
quarantined as ``unreadable_file``.

Parquet: the columns of the contract are read (``id``, ``text``, ``created_at``, ``author``,
``lang``, ``source``, ``images``); other columns are ignored, not read at all. A file without a
required column (``id``, ``text`` or ``created_at``) refuses every row with ``missing_column``
(details: the missing columns and the file's columns): one quarantine entry per row, so the
counts below stay true.

Each post is an object with:

- ``id``: non-empty string of at most ``MAX_ID_CHARS`` (256) characters (integers are accepted and
  converted to strings); it is an index key in Neo4j, whose keys are limited to ~8 KB;
- ``text``: non-empty string of at most ``MAX_TEXT_CHARS`` (5000) characters, kept verbatim
  (emoji, hashtags, @handles, URLs and any language are fine);
- ``created_at``: ISO-8601 timestamp with a zone (``2026-11-01T08:15:00+02:00``, ``...Z``),
  normalised to a UTC ISO string (``2026-11-01T06:15:00+00:00``). In Parquet a timezone-aware
  timestamp column is accepted too;
- optional ``author``, ``lang``, ``source``: strings (null or empty means absent);
- optional ``images``: a list of strings, each a path relative to the landing directory, a
  ``file://`` URI inside the landing directory, or an ``http(s)://`` URL (downloaded into
  ``<staging>/images/`` from public addresses only, with a wall-clock time limit and a size
  limit). See ``extraction.images`` and ``mmkg.settings.ImageSettings``. Only the first
  ``ImageSettings.max_images_per_post`` (16) are checked; the post keeps those, and the rest are
  dropped and quarantined once for the post as ``too_many_images`` (details: limit, images,
  dropped; payload: the dropped references as a JSON list), counted in ``dropped_images``.

Other keys are ignored. A record that breaks the contract is quarantined, never dropped: a
``QuarantinedRecord`` with a reason code (below), ``details["message"]`` for humans, the source
(``dt=.../file.jsonl:N``, N the 1-based line or row number) and the original payload (the raw
line, or the Parquet row's contract columns as JSON). The run goes on. Reason codes:

``malformed_json``, ``not_an_object``, ``bad_encoding`` (invalid UTF-8, or lone surrogates),
``line_too_long``, ``missing_id``, ``id_too_long``, ``missing_text``, ``missing_created_at``,
``missing_column`` (Parquet), ``wrong_type`` (details: field, expected, got), ``bad_created_at``
(unparseable), ``naive_created_at`` (no zone), ``text_too_long``, ``duplicate_id`` (the first valid
post with an id wins, across the whole run when the caller passes ``run_seen_ids``). For files:
``unreadable_file`` (a file that cannot be opened or read to its end; records read before the
failure are kept) and ``symlinked_file``.

A bad image does not reject its post: the post keeps its text and the ``ImageRef`` gets a status
(``missing``, ``bad_path``, ``corrupt``, ``oversized``, ``outside_landing``,
``unsupported_scheme``, ``fetch_failed``, ``blocked_address``, ``too_many_pixels``). Each bad
image is also counted (``counts["images_<status>"]``) and quarantined with reason
``image_<status>``, the post id and the details of the check (e.g. the refused ``address``).
Images are checked once per distinct reference per partition, concurrently
(``ImageSettings.fetch_workers`` threads); posts, images and quarantine records come out in read
order whatever the timing. A missing partition directory is not an error: the result is empty and
``counts["partition_missing"] == 1``.

Counts (always present: ``partition_missing``, ``files``, ``files_unreadable``, ``files_refused``,
``files_skipped``, ``records``, ``posts``, ``rejected``, ``quarantined``, ``images``,
``images_ok``, ``dropped_images``; plus one ``rejected_<reason>``, ``quarantined_<reason>``,
``images_<status>`` and ``files_skipped_<why>`` per reason, status or why that occurred).
``files`` counts the post files that were not refused (read, or unreadable). Invariants:
``records == posts + rejected`` and ``quarantined == len(quarantined list) == rejected +
files_unreadable + files_refused + (images - images_ok) + quarantined_too_many_images``.

This module must never raise for bad input data, drop a record without quarantining it, follow a
symlinked input file, or read files outside the landing directory; it does not write anything
except downloaded images into the image cache.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import json
import logging
import os
import stat
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from extraction import images as img
from mmkg.images import STATUS_FETCH_FAILED, STATUS_MISSING
from mmkg.records import ImageRef, Post, QuarantinedRecord
from mmkg.settings import ImageSettings

log = logging.getLogger(__name__)

#: Longest accepted post text, in characters (code points).
MAX_TEXT_CHARS = 5000
#: Longest accepted post id, in characters: at most ~1 KB of UTF-8, far under Neo4j's index key limit.
MAX_ID_CHARS = 256
#: Longest JSONL line read, in bytes (a valid post is far shorter: 5000 characters of text).
MAX_LINE_BYTES = 1024 * 1024
#: Quarantine payloads are cut at this many characters, so one huge line cannot bloat the store.
MAX_PAYLOAD_CHARS = 100_000
_SKIP_CHUNK = 1024 * 1024
#: A gzip post file may decompress to at most this many times its own size (and to at least
#: ``MIN_GZIP_LIMIT``): JSONL compresses ~5-15x, a gzip bomb (10 MB of zeros -> 10 GB) ~1000x. Past the
#: limit the file is quarantined as ``unreadable_file`` after seconds, not decompressed for minutes.
MAX_GZIP_RATIO = 100
MIN_GZIP_LIMIT = 64 * 1024 * 1024

R_MALFORMED_JSON = "malformed_json"
R_NOT_AN_OBJECT = "not_an_object"
R_BAD_ENCODING = "bad_encoding"
R_LINE_TOO_LONG = "line_too_long"
R_MISSING_ID = "missing_id"
R_ID_TOO_LONG = "id_too_long"
R_MISSING_TEXT = "missing_text"
R_MISSING_CREATED_AT = "missing_created_at"
R_MISSING_COLUMN = "missing_column"
R_WRONG_TYPE = "wrong_type"
R_BAD_CREATED_AT = "bad_created_at"
R_NAIVE_CREATED_AT = "naive_created_at"
R_TEXT_TOO_LONG = "text_too_long"
R_DUPLICATE_ID = "duplicate_id"
R_UNREADABLE_FILE = "unreadable_file"
R_SYMLINKED_FILE = "symlinked_file"
R_TOO_MANY_IMAGES = "too_many_images"

#: Columns of the contract (read from Parquet), and the ones a file must have.
CONTRACT_FIELDS = ("id", "text", "created_at", "author", "lang", "source", "images")
REQUIRED_FIELDS = ("id", "text", "created_at")

_BASE_COUNTS = (
    "partition_missing",
    "files",
    "files_unreadable",
    "files_refused",
    "files_skipped",
    "records",
    "posts",
    "rejected",
    "quarantined",
    "images",
    "images_ok",
    "dropped_images",
)


@dataclass
class PartitionRead:
    """Everything read from one ``dt=`` partition."""

    posts: list[Post] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def partition_dir(landing_dir: str | Path, day: date) -> Path:
    """``<landing>/dt=YYYY-MM-DD``."""
    return Path(landing_dir) / f"dt={day.strftime('%Y-%m-%d')}"


def file_kind(name: str) -> str | None:
    """``"jsonl"``, ``"jsonl.gz"`` or ``"parquet"`` for a post file's name; None for anything else."""
    lower = name.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith((".jsonl.gz", ".ndjson.gz")):
        return "jsonl.gz"
    return None


def read_partition(
    landing_dir: str | Path,
    day: date,
    run_seen_ids: set[str] | None = None,
    *,
    staging_dir: str | Path | None = None,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_line_bytes: int = MAX_LINE_BYTES,
    image_settings: ImageSettings | None = None,
    max_image_bytes: int | None = None,
    max_image_pixels: int | None = None,
    fetch_timeout_s: float | None = None,
) -> PartitionRead:
    """Read and validate every post of ``<landing>/dt=<day>``.

    ``run_seen_ids`` holds the ids already accepted in this run; it is updated in place, so
    passing the same set for several days makes duplicates run-wide. ``staging_dir`` is where
    remote images are cached (``<staging>/images``); without it, http(s) images are not fetched
    and get status ``fetch_failed``. ``image_settings`` defaults to ``ImageSettings.from_env()``;
    ``max_image_bytes``, ``max_image_pixels`` and ``fetch_timeout_s`` override single fields of it.
    """
    settings = image_settings if image_settings is not None else ImageSettings.from_env()
    overrides = {"max_bytes": max_image_bytes, "max_pixels": max_image_pixels, "fetch_timeout_s": fetch_timeout_s}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    reader = _PartitionReader(
        landing_dir=Path(landing_dir),
        seen=run_seen_ids if run_seen_ids is not None else set(),
        cache_dir=img.image_cache_dir(staging_dir) if staging_dir is not None else None,
        max_text_chars=max_text_chars,
        max_line_bytes=max_line_bytes,
        images=settings,
    )
    return reader.read(day)


# --- record validation --------------------------------------------------------------------------


class _Reject(Exception):
    """One record breaks the contract; carries the quarantine reason (and, for a record refused as
    a whole, such as a Parquet row of a file without a required column, the record itself)."""

    def __init__(self, reason: str, message: str, *, record: Any = None, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.record = record
        self.details = details


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check_utf8(field_name: str, value: str) -> None:
    # JSON escapes like "\ud800" decode to lone surrogates, which cannot be written as UTF-8
    # (Parquet, Neo4j); catch them here rather than as a crash in a later stage.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject(R_BAD_ENCODING, f"field {field_name!r} holds a lone surrogate (not valid Unicode)") from None


def _parse_id(obj: dict) -> str:
    value = obj.get("id")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Reject(R_MISSING_ID, "post has no id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Reject(R_WRONG_TYPE, f"id must be a string or integer, got {_type_name(value)}",
                      field="id", expected="string", got=_type_name(value))
    if isinstance(value, int) and value.bit_length() > 4 * MAX_ID_CHARS:  # str() of a huge int is slow
        raise _Reject(R_ID_TOO_LONG, f"id is an integer of {value.bit_length()} bits, the limit is "
                      f"{MAX_ID_CHARS} characters", limit=MAX_ID_CHARS)
    value = str(value)
    if len(value) > MAX_ID_CHARS:
        raise _Reject(R_ID_TOO_LONG, f"id has {len(value)} characters, the limit is {MAX_ID_CHARS}",
                      length=len(value), limit=MAX_ID_CHARS)
    _check_utf8("id", value)
    return value


def _parse_text(obj: dict, max_chars: int) -> str:
    value = obj.get("text")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Reject(R_MISSING_TEXT, "post has no text")
    if not isinstance(value, str):
        raise _Reject(R_WRONG_TYPE, f"text must be a string, got {_type_name(value)}",
                      field="text", expected="string", got=_type_name(value))
    _check_utf8("text", value)
    if len(value) > max_chars:
        raise _Reject(R_TEXT_TOO_LONG, f"text has {len(value)} characters, the limit is {max_chars}",
                      length=len(value), limit=max_chars)
    return value


def _parse_created_at(obj: dict) -> str:
    value = obj.get("created_at")
    if value is None or value == "":
        raise _Reject(R_MISSING_CREATED_AT, "post has no created_at")
    if isinstance(value, datetime):  # a Parquet timestamp column
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Reject(R_BAD_CREATED_AT, f"created_at {value!r} is not an ISO-8601 timestamp") from None
    else:
        raise _Reject(R_WRONG_TYPE, f"created_at must be an ISO-8601 string, got {_type_name(value)}",
                      field="created_at", expected="string", got=_type_name(value))
    # A timestamp without a zone is ambiguous by hours; guessing would misplace posts in time.
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Reject(R_NAIVE_CREATED_AT, f"created_at {str(value)!r} has no time zone")
    try:
        return parsed.astimezone(timezone.utc).isoformat()
    except (OverflowError, ValueError):
        raise _Reject(R_BAD_CREATED_AT, f"created_at {str(value)!r} is out of range") from None


def _parse_optional_str(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Reject(R_WRONG_TYPE, f"{name} must be a string, got {_type_name(value)}",
                      field=name, expected="string", got=_type_name(value))
    _check_utf8(name, value)
    return value


def _parse_image_uris(obj: dict) -> list[str]:
    value = obj.get("images")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        got = _type_name(value) if not isinstance(value, list) else "list with non-string items"
        raise _Reject(R_WRONG_TYPE, f"images must be a list of strings, got {got}",
                      field="images", expected="list of strings", got=got)
    for uri in value:
        _check_utf8("images", uri)
    return value


# --- the reader ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A valid post whose images are not checked yet: they are checked together, concurrently."""

    source: str
    post: dict
    uris: list[str]
    dropped: list[str]


@dataclass
class _PartitionReader:
    landing_dir: Path
    seen: set[str]
    cache_dir: Path | None
    max_text_chars: int
    max_line_bytes: int
    images: ImageSettings
    result: PartitionRead = field(default_factory=PartitionRead)
    counts: Counter = field(default_factory=Counter)
    #: In read order: quarantined records, and valid posts waiting for their image checks.
    events: list[QuarantinedRecord | _Pending] = field(default_factory=list)

    def read(self, day: date) -> PartitionRead:
        directory = partition_dir(self.landing_dir, day)
        if not directory.is_dir():
            self.counts["partition_missing"] = 1
            return self._finish()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._quarantine_file(directory, f"cannot list the partition: {exc.strerror or exc}")
            return self._finish()
        for entry in entries:
            kind = file_kind(entry.name)
            path = Path(entry.path)
            if entry.name.startswith((".", "_")):
                self._skip("hidden")
            elif entry.is_symlink():
                if kind is None:
                    self._skip("symlink")
                else:
                    self._refuse_symlink(path)
            elif entry.is_dir(follow_symlinks=False):
                self._skip("directory")
            elif kind is None:
                self._skip("unknown_type")
            else:
                self._read_file(path, kind)
        return self._finish()

    def _skip(self, why: str) -> None:
        self.counts["files_skipped"] += 1
        self.counts[f"files_skipped_{why}"] += 1

    def _read_file(self, path: Path, kind: str) -> None:
        self.counts["files"] += 1
        handle = self._open(path)
        if handle is None:
            return
        with handle:
            records = self._parquet_records(path, handle) if kind == "parquet" else \
                self._jsonl_records(path, handle, compressed=kind == "jsonl.gz")
            for source, payload, parsed in records:
                self.counts["records"] += 1
                self._accept(source, payload, parsed)

    def _open(self, path: Path) -> BinaryIO | None:
        """The file, opened without following a symlink; None (and quarantined) when it cannot be."""
        try:
            # O_NOFOLLOW: a file swapped for a symlink after the directory was listed is refused too;
            # O_NONBLOCK: a FIFO does not block the open (it is refused below).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.counts["files"] -= 1
                self._refuse_symlink(path)
            else:
                self._quarantine_file(path, f"cannot open file: {exc.strerror or exc}")
            return None
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            handle.close()
            self._quarantine_file(path, "not a regular file (a FIFO, a device or a socket)")
            return None
        return handle

    def _source(self, path: Path, number: int) -> str:
        return f"{path.parent.name}/{path.name}:{number}"

    def _jsonl_records(self, path: Path, handle: BinaryIO, *, compressed: bool) -> Iterator[tuple[str, str, Any]]:
        """(source, payload, parsed object or a _Reject) for each non-blank line."""
        stream: Any = handle
        if compressed:
            limit_bytes = max(MIN_GZIP_LIMIT, MAX_GZIP_RATIO * os.fstat(handle.fileno()).st_size)
            stream = _InflateLimit(gzip.GzipFile(fileobj=handle, mode="rb"), limit_bytes)
        number = 0
        limit = self.max_line_bytes
        try:
            with stream:
                while True:
                    # Bounded: a line longer than the limit is never held whole.
                    raw = stream.readline(limit + 1)
                    if not raw:
                        break
                    number += 1
                    source = self._source(path, number)
                    if len(raw) > limit and not raw.endswith(b"\n"):
                        total = len(raw) + _skip_line(stream)
                        head = raw[:MAX_PAYLOAD_CHARS].decode("utf-8", errors="backslashreplace")
                        message = f"line has {total} bytes, the limit is {limit}"
                        yield source, head, _Reject(R_LINE_TOO_LONG, message, line_bytes=total, limit=limit)
                        continue
                    # Bytes, decoded line by line: one line of invalid UTF-8 must not cost the whole
                    # file. A BOM (spreadsheet exports, some SDKs; concatenated files) starts any line.
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                    if not raw.strip():
                        continue
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        payload = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                        message = f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                        yield source, payload, _Reject(R_BAD_ENCODING, message)
                        continue
                    line = line.rstrip("\r\n")
                    try:
                        parsed = json.loads(line)
                    except (ValueError, RecursionError) as exc:
                        parsed = _Reject(R_MALFORMED_JSON, f"line is not valid JSON ({exc})")
                    yield source, line, parsed
        except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream, an I/O error
            self._quarantine_file(path, f"cannot read file ({type(exc).__name__}: {exc})", lines_read=number)

    def _parquet_records(self, path: Path, handle: BinaryIO) -> Iterator[tuple[str, str, Any]]:
        number = 0
        try:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            columns = [c for c in CONTRACT_FIELDS if c in names]
            missing = [c for c in REQUIRED_FIELDS if c not in names]
            # Batches, not the whole table: a large file stays bounded in memory, and rows read
            # before a corrupt row group are kept. Only the contract's columns are read.
            for batch in parquet.iter_batches(batch_size=1024, columns=columns):
                rows = batch.to_pylist() if columns else [{} for _ in range(batch.num_rows)]
                for row in rows:
                    number += 1
                    payload = json.dumps(row, ensure_ascii=False, default=str)
                    if missing:
                        message = f"the file has no column {', '.join(map(repr, missing))} (it has {names})"
                        parsed: Any = _Reject(R_MISSING_COLUMN, message, record=row, missing=missing,
                                              columns=[str(n) for n in names])
                    else:
                        parsed = row
                    yield self._source(path, number), payload, parsed
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
            self._quarantine_file(path, f"cannot read Parquet file ({type(exc).__name__}: {exc})", rows_read=number)

    def _quarantine_file(self, path: Path, message: str, **details: Any) -> None:
        self.counts["files_unreadable"] += 1
        self._quarantine(QuarantinedRecord(
            source=f"{path.parent.name}/{path.name}",
            reason=R_UNREADABLE_FILE,
            payload="",
            details={"message": message, **details},
        ))

    def _refuse_symlink(self, path: Path) -> None:
        """A symlinked post file: refused unread (it could point at /proc/self/environ)."""
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        self.counts["files_refused"] += 1
        self._quarantine(QuarantinedRecord(
            source=f"{path.parent.name}/{path.name}",
            reason=R_SYMLINKED_FILE,
            payload="",  # never the content: the link is not followed
            details={"message": f"input files are not read through symlinks (-> {target[:1000]})",
                     "target": target[:1000]},
        ))

    def _accept(self, source: str, payload: str, parsed: Any) -> None:
        try:
            post_id, post, uris = self._validate(parsed)
        except _Reject as rej:
            post_id = _loose_id(rej.record if rej.record is not None else parsed)
            self.counts["rejected"] += 1
            self.counts[f"rejected_{rej.reason}"] += 1
            self._quarantine(QuarantinedRecord(
                source=source,
                reason=rej.reason,
                payload=_cut(payload),
                post_id=post_id,
                details={"message": rej.message, **rej.details, **_cut_note(payload)},
            ))
            return
        self.seen.add(post_id)
        limit = self.images.max_images_per_post
        self.events.append(_Pending(source, post, uris[:limit], uris[limit:]))
        self.counts["posts"] += 1

    def _validate(self, parsed: Any) -> tuple[str, dict, list[str]]:
        if isinstance(parsed, _Reject):
            raise parsed
        if not isinstance(parsed, dict):
            raise _Reject(R_NOT_AN_OBJECT, f"record is a JSON {_type_name(parsed)}, not an object")
        post_id = _parse_id(parsed)
        post = {
            "id": post_id,
            "text": _parse_text(parsed, self.max_text_chars),
            "created_at": _parse_created_at(parsed),
            "author": _parse_optional_str(parsed, "author"),
            "lang": _parse_optional_str(parsed, "lang"),
            "source": _parse_optional_str(parsed, "source"),
        }
        uris = _parse_image_uris(parsed)
        # Last, so that an invalid record never claims an id a later valid one could use.
        if post_id in self.seen:
            raise _Reject(R_DUPLICATE_ID, f"id {post_id!r} was already read in this run")
        return post_id, post, uris

    def _check_images(self) -> dict[str, img.ImageCheck]:
        """Every distinct reference of the partition's posts, checked (downloaded) once, with at
        most ``fetch_workers`` at a time; the result does not depend on which finishes first."""
        uris = list(dict.fromkeys(u for e in self.events if isinstance(e, _Pending) for u in e.uris))
        if not uris:
            return {}
        workers = max(1, min(self.images.fetch_workers, len(uris)))
        if workers == 1:
            return {u: self._check_one(u) for u in uris}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mmkg-image") as pool:
            return dict(zip(uris, pool.map(self._check_one, uris)))

    def _check_one(self, uri: str) -> img.ImageCheck:
        try:
            return img.validate_image(uri, self.landing_dir, cache_dir=self.cache_dir, settings=self.images)
        except Exception as exc:  # a bug must cost one image, never the interval
            log.exception("unexpected error checking image %r", uri[:200])
            status = STATUS_FETCH_FAILED if uri.lower().startswith(("http:", "https:")) else STATUS_MISSING
            return img.ImageCheck(ImageRef(uri=uri, status=status), f"unexpected error: {exc!r}")

    def _quarantine(self, record: QuarantinedRecord) -> None:
        """A record quarantined while reading: kept in read order among the posts."""
        self.events.append(record)
        self._count_quarantined(record)

    def _count_quarantined(self, record: QuarantinedRecord) -> None:
        self.counts["quarantined"] += 1
        self.counts[f"quarantined_{record.reason}"] += 1

    def _emit(self, record: QuarantinedRecord) -> None:
        self.result.quarantined.append(record)
        self._count_quarantined(record)

    def _finish(self) -> PartitionRead:
        checks = self._check_images()
        for event in self.events:
            if isinstance(event, QuarantinedRecord):
                self.result.quarantined.append(event)
                continue
            refs = tuple(self._image_ref(checks[uri], event) for uri in event.uris)
            if event.dropped:
                self.counts["dropped_images"] += len(event.dropped)
                dropped = json.dumps(event.dropped, ensure_ascii=False)
                total = len(event.uris) + len(event.dropped)
                self._emit(QuarantinedRecord(
                    source=event.source,
                    reason=R_TOO_MANY_IMAGES,
                    payload=_cut(dropped),
                    post_id=event.post["id"],
                    details={"message": f"post has {total} images, the limit is {len(event.uris)}: "
                                        f"the last {len(event.dropped)} are not read",
                             "limit": self.images.max_images_per_post, "images": total,
                             "dropped": len(event.dropped), **_cut_note(dropped)},
                ))
            self.result.posts.append(Post(**event.post, images=refs))
        self.events = []
        counts = {name: 0 for name in _BASE_COUNTS}
        counts.update(self.counts)
        self.result.counts = counts
        return self.result

    def _image_ref(self, check: img.ImageCheck, event: _Pending) -> ImageRef:
        status = check.ref.status
        self.counts["images"] += 1
        self.counts[f"images_{status}"] += 1
        if status != img.STATUS_OK:
            uri = check.ref.uri
            self._emit(QuarantinedRecord(
                source=event.source,
                reason=f"image_{status}",
                payload=_cut(uri),
                post_id=event.post["id"],
                details={"message": check.message, **check.details, **_cut_note(uri)},
            ))
        return check.ref


class _InflateLimit:
    """A gzip stream read line by line that stops (``OSError``) once it has decompressed more than
    ``limit`` bytes: memory was already bounded by the line limit, this bounds the time."""

    def __init__(self, gz: gzip.GzipFile, limit: int) -> None:
        self._gz, self._limit = gz, limit

    def readline(self, size: int = -1) -> bytes:
        line = self._gz.readline(size)
        if self._gz.tell() > self._limit:
            raise OSError(f"decompresses to more than {self._limit} bytes ({MAX_GZIP_RATIO}x the file's size): "
                          "not read further (a gzip bomb?)")
        return line

    def __enter__(self) -> "_InflateLimit":
        return self

    def __exit__(self, *exc: object) -> None:
        self._gz.close()


def _skip_line(stream: BinaryIO) -> int:
    """Read (and forget) the rest of the current line in bounded chunks; the bytes skipped."""
    skipped = 0
    while True:
        chunk = stream.readline(_SKIP_CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _loose_id(parsed: Any) -> str | None:
    """The id of a rejected record when it has a usable one, to help find it again."""
    try:
        return _parse_id(parsed) if isinstance(parsed, dict) else None
    except _Reject:
        return None


def _cut(payload: str) -> str:
    return payload if len(payload) <= MAX_PAYLOAD_CHARS else payload[:MAX_PAYLOAD_CHARS]


def _cut_note(payload: str) -> dict:
    return {"payload_chars": len(payload)} if len(payload) > MAX_PAYLOAD_CHARS else {}

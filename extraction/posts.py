"""Reading and validating posts from the landing directory: the input contract of mmkg.

Input contract
--------------

Posts are JSONL (``*.jsonl``, one JSON object per line) or Parquet (``*.parquet``) files in a
landing directory partitioned by date::

    <landing>/dt=YYYY-MM-DD/*.jsonl
    <landing>/dt=YYYY-MM-DD/*.parquet

Files are read in name order; names starting with ``.`` or ``_`` (files being written, markers)
and subdirectories are skipped. Each post is an object with:

- ``id``: non-empty string (integers are accepted and converted to strings);
- ``text``: non-empty string of at most ``MAX_TEXT_CHARS`` (5000) characters, kept verbatim
  (emoji, hashtags, @handles, URLs and any language are fine);
- ``created_at``: ISO-8601 timestamp with a zone (``2026-11-01T08:15:00+02:00``, ``...Z``),
  normalised to a UTC ISO string (``2026-11-01T06:15:00+00:00``). In Parquet a timezone-aware
  timestamp column is accepted too;
- optional ``author``, ``lang``, ``source``: strings (null or empty means absent);
- optional ``images``: a list of strings, each a path relative to the landing directory, a
  ``file://`` URI inside the landing directory, or an ``http(s)://`` URL (downloaded with a 5 s
  timeout and a 10 MB size limit into ``<staging>/images/``). See ``extraction.images``.

Other keys are ignored. A record that breaks the contract is quarantined, never dropped: a
``QuarantinedRecord`` with a reason code (below), ``details["message"]`` for humans, the source
(``dt=.../file.jsonl:N``, N the 1-based line or row number) and the original payload (the raw
line, or the Parquet row as JSON). The run goes on. Reason codes:

``malformed_json``, ``not_an_object``, ``bad_encoding`` (invalid UTF-8, or lone surrogates),
``missing_id``, ``missing_text``, ``missing_created_at``, ``wrong_type`` (details: field,
expected, got), ``bad_created_at`` (unparseable), ``naive_created_at`` (no zone),
``text_too_long``, ``duplicate_id`` (the first valid post with an id wins, across the whole
run when the caller passes ``run_seen_ids``), ``unreadable_file`` (a Parquet file that cannot be
read; rows read before the failure are kept).

A bad image does not reject its post: the post keeps its text and the ``ImageRef`` gets a status
(``missing``, ``corrupt``, ``oversized``, ``outside_landing``, ``unsupported_scheme``,
``fetch_failed``, ``too_many_pixels``). Each bad image is also counted
(``counts["images_<status>"]``) and quarantined with reason ``image_<status>`` and the post id.
A missing partition directory is not an error: the result is empty and
``counts["partition_missing"] == 1``.

Counts (always present: ``partition_missing``, ``files``, ``files_unreadable``, ``records``,
``posts``, ``rejected``, ``quarantined``, ``images``, ``images_ok``; plus one
``rejected_<reason>``, ``quarantined_<reason>`` and ``images_<status>`` per reason or status that
occurred). Invariants: ``records == posts + rejected`` and ``quarantined == len(quarantined list)
== rejected + files_unreadable + bad images``.

This module must never raise for bad input data, drop a record without quarantining it, or read
files outside the landing directory; it does not write anything except downloaded images into
the image cache.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from extraction import images as img
from mmkg.records import ImageRef, Post, QuarantinedRecord

#: Longest accepted post text, in characters (code points).
MAX_TEXT_CHARS = 5000
#: Quarantine payloads are cut at this many characters, so one huge line cannot bloat the store.
MAX_PAYLOAD_CHARS = 100_000

R_MALFORMED_JSON = "malformed_json"
R_NOT_AN_OBJECT = "not_an_object"
R_BAD_ENCODING = "bad_encoding"
R_MISSING_ID = "missing_id"
R_MISSING_TEXT = "missing_text"
R_MISSING_CREATED_AT = "missing_created_at"
R_WRONG_TYPE = "wrong_type"
R_BAD_CREATED_AT = "bad_created_at"
R_NAIVE_CREATED_AT = "naive_created_at"
R_TEXT_TOO_LONG = "text_too_long"
R_DUPLICATE_ID = "duplicate_id"
R_UNREADABLE_FILE = "unreadable_file"

_BASE_COUNTS = (
    "partition_missing",
    "files",
    "files_unreadable",
    "records",
    "posts",
    "rejected",
    "quarantined",
    "images",
    "images_ok",
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


def read_partition(
    landing_dir: str | Path,
    day: date,
    run_seen_ids: set[str] | None = None,
    *,
    staging_dir: str | Path | None = None,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_image_bytes: int = img.MAX_IMAGE_BYTES,
    max_image_pixels: int | None = None,
    fetch_timeout_s: float = img.FETCH_TIMEOUT_S,
) -> PartitionRead:
    """Read and validate every post of ``<landing>/dt=<day>``.

    ``run_seen_ids`` holds the ids already accepted in this run; it is updated in place, so
    passing the same set for several days makes duplicates run-wide. ``staging_dir`` is where
    remote images are cached (``<staging>/images``); without it, http(s) images are not fetched
    and get status ``fetch_failed``.
    """
    reader = _PartitionReader(
        landing_dir=Path(landing_dir),
        seen=run_seen_ids if run_seen_ids is not None else set(),
        cache_dir=img.image_cache_dir(staging_dir) if staging_dir is not None else None,
        max_text_chars=max_text_chars,
        max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels,
        fetch_timeout_s=fetch_timeout_s,
    )
    return reader.read(day)


# --- record validation --------------------------------------------------------------------------


class _Reject(Exception):
    """One record breaks the contract; carries the quarantine reason."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
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
    value = str(value)
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
class _PartitionReader:
    landing_dir: Path
    seen: set[str]
    cache_dir: Path | None
    max_text_chars: int
    max_image_bytes: int
    max_image_pixels: int | None
    fetch_timeout_s: float
    result: PartitionRead = field(default_factory=PartitionRead)
    counts: Counter = field(default_factory=Counter)
    # The same reference in several posts is checked (and downloaded) once per partition.
    image_checks: dict[str, img.ImageCheck] = field(default_factory=dict)

    def read(self, day: date) -> PartitionRead:
        directory = partition_dir(self.landing_dir, day)
        if not directory.is_dir():
            self.counts["partition_missing"] = 1
            return self._finish()
        for path in sorted(directory.iterdir(), key=lambda p: p.name):
            if path.name.startswith((".", "_")) or not path.is_file():
                continue
            if path.suffix == ".jsonl":
                records = self._jsonl_records(path)
            elif path.suffix == ".parquet":
                records = self._parquet_records(path)
            else:
                continue
            self.counts["files"] += 1
            for source, payload, parsed in records:
                self.counts["records"] += 1
                self._accept(source, payload, parsed)
        return self._finish()

    def _source(self, path: Path, number: int) -> str:
        return f"{path.parent.name}/{path.name}:{number}"

    def _jsonl_records(self, path: Path) -> Iterator[tuple[str, str, Any]]:
        """(source, payload, parsed object or a _Reject) for each non-blank line."""
        try:
            handle = open(path, "rb")
        except OSError as exc:
            self._quarantine_file(path, f"cannot open file: {exc.strerror or exc}")
            return
        with handle:
            # Bytes, decoded line by line: one line of invalid UTF-8 must not cost the whole file.
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM written by some editors
                if not raw.strip():
                    continue
                source = self._source(path, number)
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

    def _parquet_records(self, path: Path) -> Iterator[tuple[str, str, Any]]:
        number = 0
        try:
            parquet = pq.ParquetFile(path)
            # Batches, not the whole table: a large file stays bounded in memory, and rows read
            # before a corrupt row group are kept.
            for batch in parquet.iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    number += 1
                    payload = json.dumps(row, ensure_ascii=False, default=str)
                    yield self._source(path, number), payload, row
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

    def _accept(self, source: str, payload: str, parsed: Any) -> None:
        try:
            post_id, post, uris = self._validate(parsed)
        except _Reject as rej:
            post_id = _loose_id(parsed)
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
        refs = tuple(self._check_image(uri, source, post_id) for uri in uris)
        self.result.posts.append(Post(**post, images=refs))
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

    def _check_image(self, uri: str, source: str, post_id: str) -> ImageRef:
        check = self.image_checks.get(uri)
        if check is None:
            check = img.validate_image(
                uri,
                self.landing_dir,
                cache_dir=self.cache_dir,
                max_bytes=self.max_image_bytes,
                max_pixels=self.max_image_pixels,
                timeout_s=self.fetch_timeout_s,
            )
            self.image_checks[uri] = check
        status = check.ref.status
        self.counts["images"] += 1
        self.counts[f"images_{status}"] += 1
        if status != img.STATUS_OK:
            self._quarantine(QuarantinedRecord(
                source=source,
                reason=f"image_{status}",
                payload=_cut(uri),
                post_id=post_id,
                details={"message": check.message, **_cut_note(uri)},
            ))
        return check.ref

    def _quarantine(self, record: QuarantinedRecord) -> None:
        self.result.quarantined.append(record)
        self.counts["quarantined"] += 1
        self.counts[f"quarantined_{record.reason}"] += 1

    def _finish(self) -> PartitionRead:
        counts = {name: 0 for name in _BASE_COUNTS}
        counts.update(self.counts)
        self.result.counts = counts
        return self.result


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

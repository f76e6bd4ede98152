"""Atomic file writes: a reader (a re-run, a backfill, another task) sees the old file or the new
one, never half of one. The temporary file sits in the target's folder (so ``os.replace`` is a
rename on one filesystem) and starts with a dot (so globs and readers skip it)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_open(target: str | Path) -> Iterator[BinaryIO]:
    """Write to the yielded binary file; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_open(target) as f:
        f.write(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))

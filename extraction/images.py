"""Image validation: turn the image reference written in a post into a checked ``ImageRef``.

A reference is one of:

- a path relative to the landing directory (``images/a.png``),
- a ``file://`` URI (absolute; it must still point inside the landing directory),
- an ``http://`` or ``https://`` URL, downloaded with urllib (timeout, size limit) into a
  content-addressed cache ``<staging>/images/<sha256>.<ext>``.

Every reference ends with a status: ``ok``, or one of ``mmkg.images.BAD_STATUSES``. For an ``ok`` image the
ref carries the SHA-256 of its bytes (its identity in the graph), width, height and ``path``: the
local file holding the validated bytes (the original file for local images, the cache file for
downloaded ones). ``mmkg.images.load_image_rgb`` opens such a path for the model stage.

This module must never: read a file outside the landing root (``..``, absolute paths and symlinks
are resolved first), fetch anything but http(s), hold more than ``max_bytes`` of one image in
memory, hand an image to the model that Pillow has not fully decoded, or raise for a bad image
(a bad image is a status, so the post keeps its text).
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mmkg.images import (
    EXTENSIONS,
    STATUS_FETCH_FAILED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_OUTSIDE_LANDING,
    STATUS_OVERSIZED,
    STATUS_UNSUPPORTED_SCHEME,
    decode_image,
)
from mmkg.files import atomic_write_bytes
from mmkg.records import ImageRef

#: Largest image accepted, in bytes (local file size or downloaded body).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Socket timeout and overall deadline for one download, in seconds.
FETCH_TIMEOUT_S = 5.0
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """The outcome of validating one reference: the ref, and a human message when it is bad."""

    ref: ImageRef
    message: str = ""


def image_cache_dir(staging_dir: str | Path) -> Path:
    """Where downloaded images are kept: ``<staging>/images``."""
    return Path(staging_dir) / "images"


def validate_image(
    uri: str,
    landing_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> ImageCheck:
    """Resolve, read, size-check and fully decode one image reference.

    ``max_pixels`` defaults to Pillow's ``Image.MAX_IMAGE_PIXELS`` (read at call time); Pillow's
    own hard limit (twice that) applies as well. Remote images need ``cache_dir``; without one
    they are not fetched (status ``fetch_failed``).
    """
    if not isinstance(uri, str) or not uri.strip():
        return _bad(str(uri), STATUS_MISSING, "empty image reference")
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        return _check_remote(uri, cache_dir, max_bytes, max_pixels, timeout_s)
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            return _bad(uri, STATUS_UNSUPPORTED_SCHEME, f"file URI on another host ({parts.netloc})")
        local = urllib.request.url2pathname(parts.path)
        return _check_local(uri, local, landing_dir, max_bytes, max_pixels)
    if scheme:
        message = f"scheme {scheme!r} is not supported (use a path, file:// or http(s)://)"
        return _bad(uri, STATUS_UNSUPPORTED_SCHEME, message)
    # No scheme: a path, taken literally (no percent-decoding, '?' and '#' are part of the name).
    return _check_local(uri, uri, landing_dir, max_bytes, max_pixels)


# --- local files --------------------------------------------------------------------------------


def _check_local(
    uri: str, raw_path: str, landing_dir: str | Path, max_bytes: int, max_pixels: int | None
) -> ImageCheck:
    root = Path(landing_dir).resolve()
    candidate = Path(raw_path)
    if not candidate.is_absolute():
        candidate = root / candidate
    # Resolve symlinks and '..' before the containment check: a lexical check alone would let
    # 'images/link -> /etc' through.
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
        return _bad(uri, STATUS_MISSING, f"cannot resolve path: {exc}")
    if not resolved.is_relative_to(root):
        return _bad(uri, STATUS_OUTSIDE_LANDING, f"path resolves outside the landing directory ({resolved})")
    if not resolved.is_file():  # also refuses FIFOs and devices, which could block or never end
        return _bad(uri, STATUS_MISSING, f"no such file: {resolved}")
    try:
        size = resolved.stat().st_size
        if size > max_bytes:
            return _bad(uri, STATUS_OVERSIZED, f"{size} bytes is over the limit of {max_bytes}")
        with open(resolved, "rb") as f:
            data = f.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        return _bad(uri, STATUS_MISSING, f"cannot read file: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return _bad(uri, STATUS_OVERSIZED, f"over the limit of {max_bytes} bytes")
    status, message, width, height, _ = decode_image(data, max_pixels)
    if status != STATUS_OK:
        return _bad(uri, status, message)
    sha = hashlib.sha256(data).hexdigest()
    return ImageCheck(ImageRef(uri=uri, status=STATUS_OK, sha256=sha, path=str(resolved), width=width, height=height))


# --- remote images ------------------------------------------------------------------------------


class _FetchError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _check_remote(
    uri: str, cache_dir: str | Path | None, max_bytes: int, max_pixels: int | None, timeout_s: float
) -> ImageCheck:
    if cache_dir is None:
        return _bad(uri, STATUS_FETCH_FAILED, "remote image not fetched: no image cache directory configured")
    try:
        data = _fetch(uri, max_bytes, timeout_s)
    except _FetchError as exc:
        return _bad(uri, exc.status, str(exc))
    status, message, width, height, fmt = decode_image(data, max_pixels)
    if status != STATUS_OK:
        return _bad(uri, status, message)
    sha = hashlib.sha256(data).hexdigest()
    target = Path(cache_dir) / f"{sha}.{EXTENSIONS[fmt]}"
    try:
        if not target.is_file():  # content-addressed: an existing file already holds these bytes
            atomic_write_bytes(target, data)
    except OSError as exc:
        return _bad(uri, STATUS_FETCH_FAILED, f"cannot write image cache {target}: {exc.strerror or exc}")
    return ImageCheck(ImageRef(uri=uri, status=STATUS_OK, sha256=sha, path=str(target), width=width, height=height))


def _fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """Download at most ``max_bytes``; the timeout bounds each socket wait and the whole transfer."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "mmkg-ingest"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _FetchError(STATUS_OVERSIZED, f"Content-Length {declared} is over the limit of {max_bytes} bytes")
            buffer = bytearray()
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > max_bytes:
                    raise _FetchError(STATUS_OVERSIZED, f"body is over the limit of {max_bytes} bytes")
                # The socket timeout alone lets a server that drips one byte at a time go on forever.
                if time.monotonic() > deadline:
                    raise _FetchError(STATUS_FETCH_FAILED, f"download took longer than {timeout_s} s")
            return bytes(buffer)
    except _FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise _FetchError(STATUS_FETCH_FAILED, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _FetchError(STATUS_FETCH_FAILED, f"cannot fetch: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeouts, resets, bad URLs
        raise _FetchError(STATUS_FETCH_FAILED, f"cannot fetch: {exc!r}") from None


def _bad(uri: str, status: str, message: str) -> ImageCheck:
    return ImageCheck(ImageRef(uri=uri, status=status), message)

"""Image validation: turn the image reference written in a post into a checked ``ImageRef``.

A reference is one of:

- a path relative to the landing directory (``images/a.png``),
- a ``file://`` URI (absolute; it must still point inside the landing directory),
- an ``http://`` or ``https://`` URL, downloaded into a content-addressed cache
  ``<staging>/images/<sha256>.<ext>``, under the rules below.

Every reference ends with a status: ``ok``, or one of ``mmkg.images.BAD_STATUSES``. For an ``ok`` image the
ref carries the SHA-256 of its bytes (its identity in the graph), width, height and ``path``: the
local file holding the validated bytes (the original file for local images, the cache file for
downloaded ones). ``mmkg.images.load_image_rgb`` opens such a path for the model stage. The limits
come from ``mmkg.settings.ImageSettings`` (``MMKG_IMAGE_*``).

Downloads (no server-side request forgery through a post):

1. only ``http``/``https``; the host is resolved once (``socket.getaddrinfo``, within the time
   limit), which also turns every spelling of an address (``2130706433``, ``0x7f.1``, ``127.1``,
   ``[::ffff:127.0.0.1]``) into the address it means;
2. every resolved address is checked with ``ipaddress``: loopback, link-local, private, carrier-grade
   NAT (100.64/10), multicast, reserved, unspecified and other not globally routable addresses are
   refused, IPv4 addresses inside IPv6 ones (``::ffff:a.b.c.d``, 6to4, Teredo, NAT64) are checked
   as IPv4 too; one refused address refuses the URL (status ``blocked_address``, the address in the
   details). ``ImageSettings.allowed_networks`` / ``allowed_hosts`` open internal image stores;
3. the connection is opened to the address that was checked (no second DNS lookup, so a host cannot
   resolve to a public address for the check and a private one for the request); the ``Host``
   header, TLS SNI and certificate verification use the host name of the URL. Proxy variables
   (``http_proxy`` ...) are not used: a proxy would make the address check meaningless;
4. redirects (301, 302, 303, 307, 308) are followed up to ``ImageSettings.max_redirects`` times,
   each target checked like the first URL (scheme, resolution, addresses);
5. ``max_bytes`` is enforced from ``Content-Length`` and while streaming; ``fetch_timeout_s`` is a
   wall-clock limit over the whole download (DNS, connect, TLS, headers, body, redirects): a
   watchdog shuts the socket at the deadline, so a server sending a byte a second is cut there.

This module must never: read a file outside the landing root (``..``, absolute paths and symlinks
are resolved first), fetch anything but http(s) from an address the settings allow, hold more than
``max_bytes`` of one image in memory, hand an image to the model that Pillow has not fully decoded,
or raise for a bad image (a bad image is a status, so the post keeps its text).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from mmkg.files import atomic_write_bytes
from mmkg.images import (
    EXTENSIONS,
    STATUS_BAD_PATH,
    STATUS_BLOCKED_ADDRESS,
    STATUS_FETCH_FAILED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_OUTSIDE_LANDING,
    STATUS_OVERSIZED,
    STATUS_UNSUPPORTED_SCHEME,
    decode_image,
)
from mmkg.records import ImageRef
from mmkg.settings import DEFAULT_IMAGE_FETCH_TIMEOUT_S, DEFAULT_IMAGE_MAX_BYTES, ImageSettings

#: Largest image accepted by default, in bytes (``ImageSettings.max_bytes``).
MAX_IMAGE_BYTES = DEFAULT_IMAGE_MAX_BYTES
#: Default wall-clock limit for one download, in seconds (``ImageSettings.fetch_timeout_s``).
FETCH_TIMEOUT_S = DEFAULT_IMAGE_FETCH_TIMEOUT_S
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
#: errno values meaning "this string cannot name a file", as opposed to "no such file"
_BAD_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """The outcome of validating one reference: the ref, a human message when it is bad, and
    machine-readable details (``address``, ``host``, ``url`` of a refused download)."""

    ref: ImageRef
    message: str = ""
    details: dict = field(default_factory=dict)


def image_cache_dir(staging_dir: str | Path) -> Path:
    """Where downloaded images are kept: ``<staging>/images``."""
    return Path(staging_dir) / "images"


def validate_image(
    uri: str,
    landing_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    settings: ImageSettings | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> ImageCheck:
    """Resolve, read, size-check and fully decode one image reference.

    ``settings`` defaults to ``ImageSettings.from_env()``. Remote images need ``cache_dir``; without
    one they are not fetched (status ``fetch_failed``) and nothing is resolved. ``ssl_context``
    replaces the default verifying context for https (tests pass one trusting their own CA).
    """
    settings = settings if settings is not None else ImageSettings.from_env()
    if not isinstance(uri, str) or not uri.strip():
        return _bad(str(uri), STATUS_MISSING, "empty image reference")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        return _bad(uri, STATUS_BAD_PATH, f"cannot parse the reference: {exc}")
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _check_remote(uri, cache_dir, settings, ssl_context)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return _bad(uri, STATUS_UNSUPPORTED_SCHEME, f"file URI on another host ({parts.netloc})")
        local = urllib.request.url2pathname(parts.path)
        return _check_local(uri, local, landing_dir, settings)
    if scheme:
        message = f"scheme {scheme!r} is not supported (use a path, file:// or http(s)://)"
        return _bad(uri, STATUS_UNSUPPORTED_SCHEME, message)
    # No scheme: a path, taken literally (no percent-decoding, '?' and '#' are part of the name).
    return _check_local(uri, uri, landing_dir, settings)


# --- local files --------------------------------------------------------------------------------


def _check_local(uri: str, raw_path: str, landing_dir: str | Path, settings: ImageSettings) -> ImageCheck:
    if "\x00" in raw_path:
        return _bad(uri, STATUS_BAD_PATH, "the path contains a NUL character")
    root = Path(landing_dir).resolve()
    # Resolve symlinks and '..' before the containment check: a lexical check alone would let
    # 'images/link -> /etc' through.
    try:
        candidate = Path(raw_path)
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = candidate.resolve()
    except RuntimeError as exc:  # a symlink loop (older Pythons)
        return _bad(uri, STATUS_MISSING, f"cannot resolve path: {exc}")
    except (OSError, ValueError) as exc:
        return _bad(uri, _path_error_status(exc), f"cannot resolve path: {_describe(exc)}")
    if not resolved.is_relative_to(root):
        return _bad(uri, STATUS_OUTSIDE_LANDING, f"path resolves outside the landing directory ({resolved})")
    max_bytes = settings.max_bytes
    try:
        # O_NOFOLLOW: the last component cannot have become a symlink since it was resolved;
        # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below).
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        return _bad(uri, _path_error_status(exc), f"cannot open {resolved}: {_describe(exc)}")
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # directories, FIFOs and devices could block or never end
                return _bad(uri, STATUS_MISSING, f"not a regular file: {resolved}")
            if st.st_size > max_bytes:
                return _bad(uri, STATUS_OVERSIZED, f"{st.st_size} bytes is over the limit of {max_bytes}")
            data = f.read(max_bytes + 1)  # the file may have grown since fstat
    except OSError as exc:
        return _bad(uri, _path_error_status(exc), f"cannot read {resolved}: {_describe(exc)}")
    if len(data) > max_bytes:
        return _bad(uri, STATUS_OVERSIZED, f"over the limit of {max_bytes} bytes")
    status, message, width, height, _ = decode_image(data, settings.max_pixels)
    if status != STATUS_OK:
        return _bad(uri, status, message)
    sha = hashlib.sha256(data).hexdigest()
    return ImageCheck(ImageRef(uri=uri, status=STATUS_OK, sha256=sha, path=str(resolved), width=width, height=height))


def _path_error_status(exc: BaseException) -> str:
    if isinstance(exc, ValueError):  # "embedded null byte" and friends
        return STATUS_BAD_PATH
    if isinstance(exc, OSError) and exc.errno in _BAD_NAME_ERRNOS:
        return STATUS_BAD_PATH
    return STATUS_MISSING


def _describe(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc) or type(exc).__name__


# --- remote images: address policy --------------------------------------------------------------


def address_refusal(address: IPAddress, settings: ImageSettings) -> str | None:
    """None when ``address`` may be fetched from; otherwise what kind of address it is.

    Allowed: addresses in ``settings.allowed_networks``, and globally routable unicast addresses.
    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged as the IPv4 address it is on the
    wire, and so is a NAT64 address (``64:ff9b::a.b.c.d``); the IPv4 address inside a 6to4 or Teredo
    address must pass as well.
    """
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    elif address.version == 6 and address in _NAT64:  # DNS64 answers for IPv4 hosts on IPv6-only networks
        address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in settings.allowed_networks if net.version == address.version):
        return None
    kind = _address_kind(address)
    if kind is not None or address.version == 4:
        return kind
    embedded: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    for inner in embedded:
        inner_kind = address_refusal(inner, settings)
        if inner_kind is not None:
            return f"{inner_kind} (embedded {inner})"
    return None


def _address_kind(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.version == 4 and address in _SHARED_ADDRESS_SPACE:
        return "carrier-grade NAT"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if address.version == 6 and address.is_site_local:
        return "site-local"
    if not address.is_global:
        return "not globally routable"
    return None


# --- remote images: fetching --------------------------------------------------------------------


class FetchError(Exception):
    """A download that did not yield an image: the image's status, a message and details."""

    def __init__(self, status: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


def _check_remote(
    uri: str, cache_dir: str | Path | None, settings: ImageSettings, ssl_context: ssl.SSLContext | None
) -> ImageCheck:
    if cache_dir is None:
        return _bad(uri, STATUS_FETCH_FAILED, "remote image not fetched: no image cache directory configured")
    try:
        data = fetch(uri, settings, ssl_context=ssl_context)
    except FetchError as exc:
        return _bad(uri, exc.status, str(exc), **exc.details)
    status, message, width, height, fmt = decode_image(data, settings.max_pixels)
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


class _Deadline:
    """The wall-clock limit of one download: a timer that shuts the current socket down when it
    expires, which ends any read or handshake blocked on it, however slowly the server drips."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise self.error()
        return left

    def error(self) -> FetchError:
        return FetchError(STATUS_FETCH_FAILED, f"download took longer than {self.timeout_s:g} s (wall clock)")

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _connect(addresses: list[tuple], deadline: _Deadline) -> socket.socket:
    """A TCP connection to the first of the checked ``(family, sockaddr)`` that answers."""
    last: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            deadline.watch(sock)
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:  # the deadline passed
            sock.close()
            raise
    raise last if last is not None else OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; ``host`` only names it (``Host`` header)."""

    def __init__(self, host: str, port: int, addresses: list[tuple], deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._addresses, self._deadline = addresses, deadline

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; SNI and certificate verification use ``host``."""

    def __init__(self, host: str, port: int, addresses: list[tuple], deadline: _Deadline,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=deadline.remaining(), context=context)
        self._addresses, self._deadline, self._tls = addresses, deadline, context

    def connect(self) -> None:
        raw = _connect(self._addresses, self._deadline)
        try:
            tls = self._tls.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        except BaseException:
            raw.close()
            raise
        self._deadline.watch(tls)
        self.sock = tls
        tls.settimeout(self._deadline.remaining())
        tls.do_handshake()


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """``getaddrinfo`` within the deadline (it has no timeout of its own): ``(family, sockaddr)``."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="mmkg-resolve", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():  # the resolver thread ends on its own when the resolver gives up
        raise deadline.error()
    if "error" in outcome:
        raise FetchError(STATUS_FETCH_FAILED, f"cannot resolve {host}: {outcome['error']}", host=host)
    seen, out = set(), []
    for family, _, _, _, sockaddr in outcome["ok"]:  # type: ignore[union-attr]
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr not in seen:
            seen.add(sockaddr)
            out.append((family, sockaddr))
    if not out:
        raise FetchError(STATUS_FETCH_FAILED, f"{host} has no IPv4 or IPv6 address", host=host)
    return out


def _target(url: str) -> tuple[str, str, int, str]:
    """(scheme, ASCII host, port, request path) of an http(s) URL, or a ``FetchError``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(STATUS_FETCH_FAILED, f"invalid URL {url!r}: {exc}", url=url) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FetchError(STATUS_UNSUPPORTED_SCHEME, f"scheme {scheme!r} is not http(s) ({url})", url=url)
    host = parts.hostname
    if not host:
        raise FetchError(STATUS_FETCH_FAILED, f"URL has no host: {url!r}", url=url)
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise FetchError(STATUS_FETCH_FAILED, f"invalid host name {host!r}: {exc}", url=url) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or _DEFAULT_PORTS[scheme], path


def fetch(url: str, settings: ImageSettings, *, ssl_context: ssl.SSLContext | None = None) -> bytes:
    """Download at most ``settings.max_bytes`` from ``url`` under the module's rules (see its
    docstring); raises ``FetchError`` with the status and message for the image."""
    deadline = _Deadline(settings.fetch_timeout_s)
    context = ssl_context or ssl.create_default_context()
    try:
        for _ in range(settings.max_redirects + 1):
            try:
                status, location, body = _fetch_once(url, settings, deadline, context)
            except ssl.SSLCertVerificationError as exc:
                raise FetchError(STATUS_FETCH_FAILED, f"TLS certificate not accepted: {exc.verify_message}", url=url) from None
            except (OSError, http.client.HTTPException, ValueError) as exc:  # resets, refusals, bad responses
                # Every socket wait is bounded by the time left: a timeout is the deadline.
                if deadline.expired or isinstance(exc, TimeoutError):
                    raise deadline.error() from None
                raise FetchError(STATUS_FETCH_FAILED, f"cannot fetch: {exc!r}", url=url) from None
            if body is not None:
                return body
            url = urljoin(url, location)  # a redirect: checked like the first URL on the next hop
        raise FetchError(STATUS_FETCH_FAILED, f"more than {settings.max_redirects} redirects", url=url)
    finally:
        deadline.cancel()


def _fetch_once(
    url: str, settings: ImageSettings, deadline: _Deadline, context: ssl.SSLContext
) -> tuple[int, str, bytes | None]:
    """One request: (status, redirect location, None) for a redirect, (200, "", body) for an image."""
    scheme, host, port, path = _target(url)
    addresses = _resolve(host, port, deadline)
    if host.rstrip(".").lower() not in settings.allowed_hosts:
        for _, sockaddr in addresses:
            address = ipaddress.ip_address(sockaddr[0])
            kind = address_refusal(address, settings)
            if kind is not None:
                what = f"{address} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
                raise FetchError(
                    STATUS_BLOCKED_ADDRESS,
                    f"{what} a {kind} address: not fetched (allow it with "
                    "MMKG_IMAGE_ALLOWED_NETWORKS or MMKG_IMAGE_ALLOWED_HOSTS)",
                    address=str(address), host=host, url=url,
                )
    if scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(host, port, addresses, deadline, context)
    else:
        conn = _PinnedHTTPConnection(host, port, addresses, deadline)
    response: http.client.HTTPResponse | None = None
    try:
        conn.request("GET", path, headers={"User-Agent": "mmkg-ingest", "Accept": "image/*"})
        sock = conn.sock  # kept: the connection forgets it when the response says "Connection: close"
        sock.settimeout(deadline.remaining())
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise FetchError(STATUS_FETCH_FAILED, f"HTTP {response.status} without a Location", url=url)
            if settings.max_redirects == 0:
                raise FetchError(STATUS_FETCH_FAILED, f"HTTP {response.status} redirect to {location} "
                                  "not followed (MMKG_IMAGE_MAX_REDIRECTS=0)", url=url)
            return response.status, location, None
        if response.status != 200:
            raise FetchError(STATUS_FETCH_FAILED, f"HTTP {response.status} {response.reason}", url=url)
        declared = response.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > settings.max_bytes:
            raise FetchError(STATUS_OVERSIZED, f"Content-Length {declared} is over the limit of "
                              f"{settings.max_bytes} bytes", url=url)
        buffer = bytearray()
        while True:
            sock.settimeout(deadline.remaining())
            chunk = response.read1(_CHUNK)  # one receive at most: the deadline is checked between
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > settings.max_bytes:
                raise FetchError(STATUS_OVERSIZED, f"body is over the limit of {settings.max_bytes} bytes", url=url)
        if deadline.expired:  # the watchdog's shutdown reads as an end of file
            raise deadline.error()
        return 200, "", bytes(buffer)
    finally:
        if response is not None:
            response.close()  # the socket's file: closing the connection alone leaves it open
        conn.close()


def _bad(uri: str, status: str, message: str, **details: object) -> ImageCheck:
    return ImageCheck(ImageRef(uri=uri, status=status), message, dict(details))

"""Remote images: only public addresses by default (no request forgery through a post), the checked
address is the one connected to, redirects re-checked, wall-clock and size limits while streaming.

Every server here listens on 127.0.0.1 (or ::1) and records each request it receives, so "refused"
means "the server saw nothing", not just "the status says so".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import io
import ipaddress
import socket
import ssl
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from PIL import Image

from extraction import images as img
from extraction.posts import read_partition
from mmkg.settings import ImageSettings

DAY = date(2026, 11, 1)
LOOPBACK = ImageSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")))
LOCALHOST = ImageSettings(allowed_hosts=frozenset({"localhost"}))


def png_bytes(size: tuple[int, int] = (5, 3), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, fmt)
    return buf.getvalue()


class Recorder:
    """A threaded HTTP server that records every request (path, Host header, TLS server name)."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET, tls: ssl.SSLContext | None = None):
        self.requests: list[tuple[str, str]] = []
        self.server_names: list[str | None] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.files = {"/a.png": png_bytes(), "/junk.png": b"not an image", "/big.png": png_bytes((200, 200), "BMP")}
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                with recorder.lock:
                    recorder.requests.append((self.path, self.headers.get("Host", "")))
                    recorder.in_flight += 1
                    recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
                try:
                    recorder.route(self)
                except OSError:  # the client gave up (a wall-clock cut): nothing to answer
                    pass
                finally:
                    with recorder.lock:
                        recorder.in_flight -= 1

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def route(self, h: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/redirect":
            h.send_response(int(query.get("code", "302")))
            h.send_header("Location", query["to"])
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif url.path == "/drip":  # a valid start, then one byte every 50 ms for up to 20 s
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            body = png_bytes()
            for i in range(400):
                h.wfile.write(body[i % len(body) : i % len(body) + 1])
                h.wfile.flush()
                time.sleep(0.05)
        elif url.path == "/drip-headers":  # the status line itself, one byte every 50 ms
            for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 400:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(0.05)
        elif url.path == "/stream":  # no Content-Length: the size limit must hold while reading
            h.send_response(200)
            h.send_header("Connection", "close")
            h.end_headers()
            for _ in range(64):
                h.wfile.write(b"\0" * 16384)
            h.close_connection = True
        elif url.path == "/slow":
            time.sleep(float(query.get("s", "0.3")))
            body = png_bytes((int(query.get("w", "5")), 3))
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        elif url.path in self.files:
            body = self.files[url.path]
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        else:
            h.send_error(404)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    s = Recorder()
    yield s
    s.close()


@pytest.fixture
def server6():
    """A recorder on ::1 when this machine has IPv6 loopback, else None."""
    try:
        s = Recorder("::1", socket.AF_INET6)
    except OSError:
        yield None
        return
    yield s
    s.close()


def check(uri: str, tmp_path: Path, settings: ImageSettings = ImageSettings(), **kwargs) -> img.ImageCheck:
    return img.validate_image(uri, tmp_path, cache_dir=tmp_path / "cache", settings=settings, **kwargs)


# --- refused by default, in every spelling ------------------------------------------------------

SPELLINGS = [
    "http://127.0.0.1:{port}/a.png",
    "http://localhost:{port}/a.png",
    "http://LOCALHOST:{port}/a.png",
    "http://2130706433:{port}/a.png",  # decimal
    "http://0x7f000001:{port}/a.png",  # hex
    "http://0x7f.1:{port}/a.png",  # hex, short form
    "http://017700000001:{port}/a.png",  # octal
    "http://0177.0.0.1:{port}/a.png",
    "http://127.1:{port}/a.png",
    "http://[::ffff:127.0.0.1]:{port}/a.png",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:{port}/a.png",
    "https://127.0.0.1:{port}/a.png",
    "http://user:pw@127.0.0.1:{port}/a.png",
    "http://[::1]:{port6}/a.png",
    "http://0.0.0.0:{port}/a.png",  # unspecified: connects to this machine on Linux
    "http://0:{port}/a.png",
]


@pytest.mark.parametrize("template", SPELLINGS)
def test_loopback_in_any_spelling_gets_no_request(template: str, server: Recorder, server6, tmp_path: Path) -> None:
    port6 = server6.port if server6 is not None else server.port
    uri = template.format(port=server.port, port6=port6)
    result = check(uri, tmp_path)
    assert result.ref.status == "blocked_address", result.message
    address = ipaddress.ip_address(result.details["address"])
    assert address.is_loopback or address.is_unspecified or (address.version == 6 and address.ipv4_mapped)
    assert "not fetched" in result.message
    time.sleep(0.05)
    assert server.requests == [] and (server6 is None or server6.requests == [])
    assert not (tmp_path / "cache").exists()


def test_refusal_is_quarantined_with_its_own_reason_and_the_address(server: Recorder, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / f"dt={DAY.isoformat()}").mkdir(parents=True)
    uri = f"http://2130706433:{server.port}/a.png"
    line = '{"id": "p1", "text": "look", "created_at": "2026-11-01T08:00:00Z", "images": ["%s"]}\n' % uri
    (landing / f"dt={DAY.isoformat()}" / "posts.jsonl").write_text(line)
    result = read_partition(landing, DAY, staging_dir=tmp_path / "staging", image_settings=ImageSettings())
    (p,) = result.posts
    assert p.images[0].status == "blocked_address" and p.image is None
    (q,) = result.quarantined
    assert (q.reason, q.post_id, q.payload) == ("image_blocked_address", "p1", uri)
    assert q.details["address"] == "127.0.0.1" and q.details["host"] == "2130706433"
    assert result.counts["images_blocked_address"] == 1
    assert server.requests == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "private"),  # reserved (Python files 240/4 under private as well)
        ("255.255.255.255", "private"),
        ("0.0.0.0", "unspecified"),
        ("192.0.2.1", "private"),  # documentation
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback (embedded 127.0.0.1)"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private (embedded 10.0.0.1)"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "private"),  # Teredo (2001::/32 is not global)
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2001:db8::1", "private"),
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert img.address_refusal(ipaddress.ip_address(address), ImageSettings()) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_fine(address: str) -> None:
    assert img.address_refusal(ipaddress.ip_address(address), ImageSettings()) is None


def test_allow_list_opens_networks_only(tmp_path: Path) -> None:
    settings = ImageSettings(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert img.address_refusal(ipaddress.ip_address("10.20.3.4"), settings) is None
    assert img.address_refusal(ipaddress.ip_address("::ffff:10.20.3.4"), settings) is None
    assert img.address_refusal(ipaddress.ip_address("10.21.0.1"), settings) == "private"


def test_every_resolved_address_is_checked(server: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "mixed.example":  # a public address first, a loopback one second
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    connects: list = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, addr: connects.append(addr))
    result = check(f"http://mixed.example:{server.port}/a.png", tmp_path)
    assert result.ref.status == "blocked_address" and result.details["address"] == "127.0.0.1"
    assert connects == []  # refused before any connection


def test_the_checked_address_is_the_one_connected_to(server: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the first answer is allowed, any later one would not be. One lookup per URL,
    and the request carries the URL's host name."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host == "images.rebind.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = ImageSettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    result = check(f"http://images.rebind.test:{server.port}/a.png", tmp_path, settings)
    assert result.ref.ok, result.message
    assert lookups == ["images.rebind.test"]
    assert server.requests == [("/a.png", f"images.rebind.test:{server.port}")]


# --- allow-listed internal stores ---------------------------------------------------------------


def test_loopback_allowed_serves_and_caches_the_image(server: Recorder, tmp_path: Path) -> None:
    result = check(f"http://127.0.0.1:{server.port}/a.png", tmp_path, LOOPBACK)
    sha = hashlib.sha256(server.files["/a.png"]).hexdigest()
    assert result.ref.ok and result.ref.sha256 == sha and (result.ref.width, result.ref.height) == (5, 3)
    assert Path(result.ref.path) == tmp_path / "cache" / f"{sha}.png"
    assert Path(result.ref.path).read_bytes() == server.files["/a.png"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{sha}.png"]  # no temp files left
    assert server.requests == [("/a.png", f"127.0.0.1:{server.port}")]


def test_an_allowed_host_name_is_fetched(server: Recorder, tmp_path: Path) -> None:
    result = check(f"http://LocalHost:{server.port}/a.png", tmp_path, LOCALHOST)
    assert result.ref.ok, result.message
    assert server.requests == [("/a.png", f"localhost:{server.port}")]
    # The host list is about the name: the same server by address stays refused.
    assert check(f"http://127.0.0.1:{server.port}/a.png", tmp_path, LOCALHOST).ref.status == "blocked_address"
    assert len(server.requests) == 1


def test_allowed_networks_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMKG_IMAGE_ALLOWED_NETWORKS", "127.0.0.0/8, fd00::/8")
    monkeypatch.setenv("MMKG_IMAGE_ALLOWED_HOSTS", "Images.Internal.")
    monkeypatch.setenv("MMKG_MAX_IMAGES_PER_POST", "3")
    s = ImageSettings.from_env()
    assert s.allowed_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert s.allowed_hosts == frozenset({"images.internal"}) and s.max_images_per_post == 3
    monkeypatch.setenv("MMKG_IMAGE_ALLOWED_NETWORKS", "not-a-network")
    with pytest.raises(ValueError, match="MMKG_IMAGE_ALLOWED_NETWORKS"):
        ImageSettings.from_env()


@pytest.mark.parametrize(
    ("path", "settings", "status"),
    [
        ("/missing.png", LOOPBACK, "fetch_failed"),
        ("/junk.png", LOOPBACK, "corrupt"),
        ("/big.png", ImageSettings(allowed_networks=LOOPBACK.allowed_networks, max_bytes=1000), "oversized"),
        ("/stream", ImageSettings(allowed_networks=LOOPBACK.allowed_networks, max_bytes=100_000), "oversized"),
    ],
)
def test_http_failures(server: Recorder, tmp_path: Path, path: str, settings: ImageSettings, status: str) -> None:
    result = check(f"http://127.0.0.1:{server.port}{path}", tmp_path, settings)
    assert result.ref.status == status, result.message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_connection_refused_is_fetch_failed(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert check(f"http://127.0.0.1:{port}/a.png", tmp_path, LOOPBACK).ref.status == "fetch_failed"


def test_without_a_cache_nothing_is_resolved_or_fetched(server: Recorder, tmp_path: Path) -> None:
    result = img.validate_image(f"http://127.0.0.1:{server.port}/a.png", tmp_path, settings=LOOPBACK)
    assert result.ref.status == "fetch_failed" and server.requests == []


# --- redirects: each target checked again --------------------------------------------------------


def redirect(server: Recorder, to: str, code: int = 302) -> str:
    return f"http://localhost:{server.port}/redirect?code={code}&to={quote(to, safe='')}"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://127.0.0.1:{port}/a.png", "blocked_address"),
        ("http://2130706433:{port}/a.png", "blocked_address"),
        ("http://[::ffff:127.0.0.1]:{port}/a.png", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/", "blocked_address"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("gopher://127.0.0.1:{port}/", "unsupported_scheme"),
    ],
)
def test_a_redirect_to_a_refused_target_is_not_followed(server: Recorder, tmp_path: Path, target: str, status: str) -> None:
    target = target.format(port=server.port)
    for code in (301, 302, 303, 307, 308):
        result = check(redirect(server, target, code), tmp_path, LOCALHOST)
        assert result.ref.status == status, (code, result.message)
    assert [path.split("?")[0] for path, _ in server.requests] == ["/redirect"] * 5  # never the target


def test_a_redirect_to_an_allowed_target_is_followed(server: Recorder, tmp_path: Path) -> None:
    result = check(redirect(server, f"http://localhost:{server.port}/a.png"), tmp_path, LOCALHOST)
    assert result.ref.ok, result.message
    assert [p.split("?")[0] for p, _ in server.requests] == ["/redirect", "/a.png"]
    # A relative Location is resolved against the URL that sent it.
    assert check(redirect(server, "/a.png"), tmp_path, LOCALHOST).ref.ok


def test_redirects_are_bounded(server: Recorder, tmp_path: Path) -> None:
    hop = f"http://localhost:{server.port}/a.png"
    for _ in range(4):
        hop = redirect(server, hop)
    result = check(hop, tmp_path, LOCALHOST)  # 4 redirects, the default allows 3
    assert result.ref.status == "fetch_failed" and "redirects" in result.message
    server.requests.clear()
    none = ImageSettings(allowed_hosts=LOCALHOST.allowed_hosts, max_redirects=0)
    result = check(redirect(server, f"http://localhost:{server.port}/a.png"), tmp_path, none)
    assert result.ref.status == "fetch_failed" and "not followed" in result.message
    assert len(server.requests) == 1


# --- the wall-clock limit ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_server_dripping_bytes_is_cut_at_the_wall_clock_limit(server: Recorder, tmp_path: Path, path: str) -> None:
    settings = ImageSettings(allowed_networks=LOOPBACK.allowed_networks, fetch_timeout_s=1.0)
    start = time.monotonic()
    result = check(f"http://127.0.0.1:{server.port}{path}", tmp_path, settings)
    elapsed = time.monotonic() - start
    assert result.ref.status == "fetch_failed"
    assert "wall clock" in result.message
    assert 0.9 < elapsed < 2.5, elapsed  # each byte arrives well within any per-read timeout


def test_images_are_fetched_concurrently_with_a_bound_and_in_order(server: Recorder, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / f"dt={DAY.isoformat()}").mkdir(parents=True)
    base = f"http://127.0.0.1:{server.port}/slow?s=0.4"
    lines = []
    for n in range(4):
        uris = [f"{base}&w={n * 2 + k + 1}" for k in range(2)] + [f"http://127.0.0.1:{server.port}/missing.png"]
        lines.append('{"id": "p%d", "text": "t", "created_at": "2026-11-01T08:00:00Z", "images": %s}'
                     % (n, str(uris).replace("'", '"')))
    (landing / f"dt={DAY.isoformat()}" / "posts.jsonl").write_text("\n".join(lines) + "\n")
    settings = ImageSettings(allowed_networks=LOOPBACK.allowed_networks, fetch_workers=3)
    start = time.monotonic()
    result = read_partition(landing, DAY, staging_dir=tmp_path / "staging", image_settings=settings)
    elapsed = time.monotonic() - start
    assert 1 < server.max_in_flight <= 3
    assert elapsed < 8 * 0.4  # 8 slow images one after another would take 3.2 s
    assert len(server.requests) == 9  # each distinct URL once (the missing one is shared)
    widths = [[im.width for im in p.images] for p in result.posts]
    assert widths == [[1, 2, None], [3, 4, None], [5, 6, None], [7, 8, None]]
    assert [(q.reason, q.post_id) for q in result.quarantined] == [("image_fetch_failed", f"p{n}") for n in range(4)]


# --- https: the certificate is verified for the URL's host name ---------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_server(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    s = Recorder(tls=context)
    yield s
    s.close()


def test_https_uses_sni_and_verifies_the_certificate_for_the_url_host(tls_server: Recorder, tls_files, tmp_path: Path) -> None:
    trusting = ssl.create_default_context(cafile=str(tls_files[0]))
    result = check(f"https://localhost:{tls_server.port}/a.png", tmp_path, LOCALHOST, ssl_context=trusting)
    assert result.ref.ok, result.message
    assert tls_server.server_names == ["localhost"]
    assert tls_server.requests == [("/a.png", f"localhost:{tls_server.port}")]
    # The system's CAs do not know this certificate: verification is on.
    untrusted = check(f"https://localhost:{tls_server.port}/a.png", tmp_path, LOCALHOST)
    assert untrusted.ref.status == "fetch_failed" and "certificate" in untrusted.message
    # The certificate names localhost, not 127.0.0.1: the name checked is the URL's.
    by_address = check(f"https://127.0.0.1:{tls_server.port}/a.png", tmp_path, LOOPBACK, ssl_context=trusting)
    assert by_address.ref.status == "fetch_failed" and "certificate" in by_address.message
    assert len(tls_server.requests) == 1

"""The local Neo4j 5.26 server (neo4j_server.manager): start, authenticate, stop, restart, recover.

Uses its own free ports and a temporary home, so it does not touch the session
server from conftest.py, a developer's own instance, or a concurrent test run.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import signal
import stat
import time
import urllib.request
from pathlib import Path

import pytest

from mmkg.settings import Neo4jSettings
from tests.conftest import local_neo4j_settings

pytestmark = pytest.mark.neo4j

PASSWORD = "server-test-password"


@pytest.fixture
def settings(tmp_path):
    pytest.importorskip("neo4j")
    from neo4j_server import manager as server

    try:
        server.find_java_home()
    except server.Neo4jServerError as exc:
        pytest.skip(str(exc))
    s = local_neo4j_settings(tmp_path / "neo4j-home", PASSWORD)
    yield s
    server.stop(s, timeout=30)


@pytest.fixture
def generated(settings):
    """Like ``settings``, with no password of its own: the server generates one."""
    return dataclasses.replace(settings, password="")


def _driver(s: Neo4jSettings, password: str | None = None):
    from neo4j import GraphDatabase

    return GraphDatabase.driver(s.uri, auth=(s.user, password or s.password))


def test_start_auth_stop_restart_keeps_data(settings):
    from neo4j.exceptions import AuthError

    from neo4j_server import manager as server

    pid = server.start(settings, timeout=120)
    assert (settings.home / "neo4j.pid").read_text().strip() == str(pid)
    assert server.start(settings) == pid  # idempotent
    st = server.status(settings)
    assert st["running"] and st["bolt"] and st["pid"] == pid, st

    with _driver(settings) as driver:
        records, _, _ = driver.execute_query(
            "CREATE (n:ServerTest {k: $k}) RETURN n.k AS k", k="kept"
        )
        assert records[0]["k"] == "kept"
        version = driver.execute_query(
            "CALL dbms.components() YIELD versions RETURN versions[0] AS v"
        )
        assert version.records[0]["v"].startswith("5.26.")

    with _driver(settings, password="wrong-password") as bad, pytest.raises(AuthError):
        bad.verify_connectivity()

    # HTTP discovery document, loopback only
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.http_port}/", timeout=10) as resp:
        assert resp.status == 200 and b"bolt_direct" in resp.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.http_port}/browser/", timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()  # Neo4j Browser

    assert server.stop(settings) is True
    assert not (settings.home / "neo4j.pid").exists()
    assert server.status(settings)["running"] is False
    assert server.stop(settings) is False  # stopping a stopped server is fine

    pid2 = server.start(settings)
    with _driver(settings) as driver:
        records, _, _ = driver.execute_query("MATCH (n:ServerTest) RETURN n.k AS k")
        assert [r["k"] for r in records] == ["kept"]

    # A hard kill: the next start recovers the store and the data is still there.
    with _driver(settings) as driver:
        driver.execute_query("CREATE (:ServerTest {k: 'after-restart'})")
    os.killpg(pid2, signal.SIGKILL)
    server.start(settings)
    with _driver(settings) as driver:
        records, _, _ = driver.execute_query("MATCH (n:ServerTest) RETURN n.k AS k ORDER BY k")
        assert [r["k"] for r in records] == ["after-restart", "kept"]


def test_status_and_stop_when_not_running(tmp_path):
    from neo4j_server import manager as server

    s = local_neo4j_settings(tmp_path / "never-started", PASSWORD)
    st = server.status(s)
    assert st["running"] is False and st["pid"] is None and st["bolt"] is False
    assert server.stop(s) is False


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_file_is_private_random_per_home_and_read_by_settings(tmp_path, monkeypatch):
    from neo4j_server import manager as server

    homes = [tmp_path / "a" / "neo4j", tmp_path / "b" / "neo4j"]
    old_umask = os.umask(0)  # the file is 0600 whatever the umask
    try:
        passwords = [server.ensure_password(local_neo4j_settings(home, "")) for home in homes]
    finally:
        os.umask(old_umask)
    files = [home / "password" for home in homes]
    assert [_mode(f) for f in files] == [0o600, 0o600]
    assert [_mode(home) for home in homes] == [0o700, 0o700]
    assert passwords[0] != passwords[1] and all(len(p) >= 40 for p in passwords)
    assert [f.read_text().strip() for f in files] == passwords
    assert server.ensure_password(local_neo4j_settings(homes[0], "")) == passwords[0]  # kept
    assert not list(homes[0].glob(".password*"))  # no temporary file left behind

    # Every reader of the settings finds it (DAG tasks, the demo, kg_loader.airflow's fallback) ...
    for name in ("MMKG_NEO4J_PASSWORD", "MMKG_NEO4J_URI", "MMKG_NEO4J_BOLT_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMKG_NEO4J_HOME", str(homes[0]))
    assert Neo4jSettings.from_env().password == passwords[0]
    monkeypatch.setenv("MMKG_NEO4J_PASSWORD", "from-the-environment")  # ... which still wins
    assert Neo4jSettings.from_env().password == "from-the-environment"
    # ... and it is never sent to a Neo4j of the user's own
    monkeypatch.delenv("MMKG_NEO4J_PASSWORD")
    monkeypatch.setenv("MMKG_NEO4J_URI", "bolt://db.example:7687")
    assert Neo4jSettings.from_env().password == ""

    files[1].chmod(0o644)  # loosened by hand: tightened again when read
    assert server.ensure_password(local_neo4j_settings(homes[1], "")) == passwords[1]
    assert _mode(files[1]) == 0o600


def test_generated_password_kept_and_a_changed_one_survives_restart(generated, monkeypatch):
    from neo4j.exceptions import AuthError

    from neo4j_server import manager as server

    server.start(generated, timeout=120)
    file = generated.home / "password"
    assert _mode(file) == 0o600 and _mode(generated.home) == 0o700
    password = file.read_text().strip()

    for name in ("MMKG_NEO4J_PASSWORD", "MMKG_NEO4J_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMKG_NEO4J_HOME", str(generated.home))
    monkeypatch.setenv("MMKG_NEO4J_BOLT_PORT", str(generated.bolt_port))
    from_env = Neo4jSettings.from_env()
    assert from_env.password == password and from_env.uri == generated.uri
    with _driver(from_env) as driver:
        driver.verify_connectivity()
    assert server.status(generated)["bolt"] is True
    with _driver(generated, password="mmkg-local-dev") as bad, pytest.raises(AuthError):
        bad.verify_connectivity()  # the former hard-coded default is gone
    logged = [p for p in generated.home.rglob("*") if p.is_file() and p != file]
    assert logged and not [p for p in logged if password.encode() in p.read_bytes()]

    changed = "changed-by-the-user-" + password[:8]
    with _driver(from_env) as driver:
        driver.execute_query(
            "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
            old=password, new=changed, database_="system",
        )
    server.stop(generated)

    # The launcher does not reset it: a start with the old password is refused, at once.
    began = time.monotonic()
    with pytest.raises(server.Neo4jServerError, match="refuses user 'neo4j'"):
        server.start(generated, timeout=120)
    assert time.monotonic() - began < 90
    assert server.status(generated)["running"] is False  # that start stopped its server again

    server.start(dataclasses.replace(generated, password=changed))
    with _driver(generated, password=changed) as driver:
        driver.verify_connectivity()
    with _driver(generated, password=password) as bad, pytest.raises(AuthError):
        bad.verify_connectivity()
    assert file.read_text().strip() == password  # the second start kept the file


def _listening(pid: int) -> set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.add((address, int(hex_port, 16)))
    return found


def test_server_is_locked_down(settings):
    from neo4j.exceptions import ClientError

    from neo4j_server import manager as server

    pid = server.start(settings, timeout=120)

    # LOAD CSV reads no file of the JVM user's: file: URLs refused, import root a directory of its own
    (settings.home / "import" / "rows.csv").write_text("a\n1\n")
    with _driver(settings) as driver:
        for url in ("file:///etc/passwd", "file:///rows.csv"):
            with pytest.raises(ClientError, match="allow_csv_import_from_file_urls"):
                driver.execute_query(f"LOAD CSV FROM '{url}' AS row RETURN count(row) AS n")
        records, _, _ = driver.execute_query(
            "SHOW SETTINGS YIELD name, value WHERE name IN $names RETURN name, value",
            names=["server.directories.import", "dbms.security.allow_csv_import_from_file_urls",
                   "dbms.security.auth_enabled", "server.bolt.tls_level"],
        )
    assert {r["name"]: r["value"] for r in records} == {
        "server.directories.import": str(settings.home / "import"),
        "dbms.security.allow_csv_import_from_file_urls": "false",
        "dbms.security.auth_enabled": "true",
        "server.bolt.tls_level": "DISABLED",
    }

    # CORS: the HTTP API answers a page from elsewhere with its own origin, never "*"
    own = f"http://127.0.0.1:{settings.http_port}"
    for path in ("/", "/db/neo4j/tx/commit"):
        request = urllib.request.Request(own + path, headers={"Origin": "http://evil.example"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                allowed = resp.headers.get("Access-Control-Allow-Origin")
        except urllib.error.HTTPError as exc:  # the tx endpoint wants credentials
            allowed = exc.headers.get("Access-Control-Allow-Origin")
        assert allowed == own, (path, allowed)

    # Every listening socket of the server is on loopback; Bolt and HTTP among them
    listening = _listening(pid)
    assert {port for _, port in listening} >= {settings.bolt_port, settings.http_port}, listening
    assert all(address.is_loopback for address, _ in listening), listening

"""The local Neo4j 5.26 server (neo4j_server.manager): start, authenticate, stop, restart, recover.

Uses its own free ports and a temporary home, so it does not touch the session
server from conftest.py, a developer's own instance, or a concurrent test run.
"""

from __future__ import annotations

import os
import signal
import urllib.request

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

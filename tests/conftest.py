"""Shared fixtures. Graph tests run against a real Neo4j 5.26 server started for the session
(on free ports of 127.0.0.1, data in a temporary directory)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# Airflow configures logging and writes files under AIRFLOW_HOME on import: keep tests out of
# the user's home and out of the repo.
REPO_ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mmkg-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)  # never the user's Airflow state
os.environ["MMKG_ROOT"] = str(REPO_ROOT)
os.environ.setdefault("AIRFLOW_CONFIG", str(REPO_ROOT / "airflow.cfg"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEST_PASSWORD = "mmkg-test-password"


def local_neo4j_settings(home: Path, password: str):
    """Settings of a throw-away local Neo4j on free ports with its data under ``home``."""
    from app.local_airflow import free_port  # free ports: two test runs on one machine never share a server
    from mmkg.settings import Neo4jSettings

    bolt_port, http_port = free_port(), free_port()
    return Neo4jSettings(uri=f"bolt://127.0.0.1:{bolt_port}", user="neo4j", password=password, database="neo4j",
                         bolt_port=bolt_port, http_port=http_port, home=home)


class Neo4jTestServer:
    """The session's Neo4j: a real server this test run owns (start/stop/kill for failure tests)."""

    def __init__(self, home: Path):
        self.settings = local_neo4j_settings(home, TEST_PASSWORD)

    def start(self) -> None:
        from neo4j_server import manager as server

        server.start(self.settings)

    def stop(self) -> None:
        from neo4j_server import manager as server

        server.stop(self.settings)

    def driver(self, **config):
        from kg_loader.writer import connect

        return connect(self.settings, **config)


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory):
    srv = Neo4jTestServer(tmp_path_factory.mktemp("neo4j-home"))
    srv.start()
    for key, value in {
        "MMKG_NEO4J_URI": srv.settings.uri,
        "MMKG_NEO4J_PASSWORD": srv.settings.password,
        "MMKG_NEO4J_BOLT_PORT": str(srv.settings.bolt_port),
        "MMKG_NEO4J_HTTP_PORT": str(srv.settings.http_port),
        "MMKG_NEO4J_HOME": str(srv.settings.home),
    }.items():
        os.environ[key] = value
    yield srv
    srv.stop()


@pytest.fixture
def neo4j_driver(neo4j_server):
    driver = neo4j_server.driver()
    driver.execute_query("MATCH (n) DETACH DELETE n")
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata database in the session's temporary AIRFLOW_HOME."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def staging_dir(tmp_path, monkeypatch):
    path = tmp_path / "staging"
    monkeypatch.setenv("MMKG_STAGING_DIR", str(path))
    return path


def graph_snapshot(driver) -> tuple[list, list]:
    """Every node (labels, properties) and relationship (type, properties, endpoint keys) as sorted canonical
    JSON: what a test compares when two loads must leave the same graph, and shows when they do not."""
    nodes, _, _ = driver.execute_query("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN coalesce(a.id, a.sha256) AS a, type(r) AS type, properties(r) AS props, "
        "coalesce(b.id, b.sha256) AS b"
    )
    canon = lambda rows: sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in rows)  # noqa: E731
    return canon(nodes), canon(rels)

"""The load benchmark's server side (neo4j_server.manager): APOC core loaded only when asked
(``start(apoc=True)``), and Neo4j's bulk importer (``admin(["database", "import", "full", ...])``)
building a store a server then starts on."""

from __future__ import annotations

import pytest

from tests.conftest import local_neo4j_settings

pytestmark = pytest.mark.neo4j

PASSWORD = "plugins-test-password"


@pytest.fixture
def server():
    pytest.importorskip("neo4j")
    from neo4j_server import manager

    try:
        manager.find_java_home()
    except manager.Neo4jServerError as exc:
        pytest.skip(str(exc))
    started = []
    yield manager, started
    for s in started:
        manager.stop(s, timeout=30)


def _count(driver, query: str):
    return driver.execute_query(query).records[0][0]


def test_apoc_only_when_asked(server, tmp_path):
    from kg_loader.writer import connect

    manager, started = server
    plain = local_neo4j_settings(tmp_path / "plain", PASSWORD)
    with_apoc = local_neo4j_settings(tmp_path / "apoc", PASSWORD)
    started += [plain, with_apoc]
    manager.start(plain)
    manager.start(with_apoc, apoc=True)
    with connect(plain) as driver:
        assert _count(driver, "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'apoc.' RETURN count(*)") == 0
    with connect(with_apoc) as driver:
        assert _count(driver, "RETURN apoc.version()").startswith("5.26.")
        for _ in range(2):  # what neo4j-graphrag's Neo4jWriter calls: merges on (start, type, end)
            driver.execute_query(
                "MERGE (a:X {id: 1}) MERGE (b:X {id: 2}) WITH a, b "
                "CALL apoc.merge.relationship(a, 'R', {}, {w: 1}, b, {w: 2}) YIELD rel RETURN rel")
        assert _count(driver, "MATCH ()-[r:R]->() RETURN count(r)") == 1


def test_bulk_import_builds_a_store_a_server_starts_on(server, tmp_path):
    from kg_loader.writer import connect

    manager, started = server
    csv = tmp_path / "csv"
    csv.mkdir()
    (csv / "nodes.csv").write_text("id:ID,name,:LABEL\na,A,Entity;Person\nb,B,Entity;Location\n")
    (csv / "rels.csv").write_text(":START_ID,:END_ID,:TYPE,post_ids:string[]\na,b,LOCATED_IN,p1;p2\n")
    home = tmp_path / "imported"
    proc = manager.admin(["database", "import", "full", "neo4j", f"--nodes={csv / 'nodes.csv'}",
                          f"--relationships={csv / 'rels.csv'}"], home)
    assert "IMPORT DONE" in proc.stdout
    s = local_neo4j_settings(home, PASSWORD)
    started.append(s)
    manager.start(s)
    with connect(s) as driver:
        assert _count(driver, "MATCH (n:Entity) RETURN count(n)") == 2
        assert _count(driver, "MATCH (:Person {name: 'A'})-[r:LOCATED_IN]->(:Location) RETURN r.post_ids") == ["p1", "p2"]
    with pytest.raises(manager.Neo4jServerError, match="failed"):
        manager.admin(["database", "import", "full", "neo4j", f"--nodes={csv / 'missing.csv'}"], tmp_path / "bad")

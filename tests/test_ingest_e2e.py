"""mmkg_ingest end to end: real Airflow (dag.test in-process, and a real scheduler for backfills),
the shipped sample data, a real Neo4j. Asserts what lands in the graph and in the quarantine."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from extraction import staging

pytestmark = [pytest.mark.neo4j, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = json.loads((ROOT / "sample_data" / "expected.json").read_text())
PROVENANCE = ("score", "model_version", "label_set_id", "run_id")


@pytest.fixture
def neo4j_conn(neo4j_server, monkeypatch):
    """Reach Neo4j the way Airflow users do: the neo4j provider's `neo4j_default` connection."""
    s = neo4j_server.settings
    monkeypatch.setenv(
        "AIRFLOW_CONN_NEO4J_DEFAULT",
        json.dumps({"conn_type": "neo4j", "host": "127.0.0.1", "port": s.bolt_port, "login": s.user, "password": s.password}),
    )
    return s


@pytest.fixture(scope="module")
def airflow_ready(airflow_db):
    """The session's Airflow after `mmkg airflow init` (the DAGs refuse to run without it)."""
    from app.airflow_init import init

    init()
    return airflow_db


def _run_outputs(run_id: str) -> tuple[dict, dict]:
    """(XCom rows per task, extra of the mmkg_graph asset event) of one run, from the metadata DB."""
    from sqlalchemy import func, select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = dict(session.execute(
            select(XComModel.task_id, func.count()).where(XComModel.run_id == run_id).group_by(XComModel.task_id)
        ).all())
        event = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "mmkg_graph", AssetEvent.source_run_id == run_id)
        ).one()
        return rows, dict(event.extra)


def _ingest_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags["mmkg_ingest"]


def _graph_state(driver) -> dict:
    """Everything in the graph except run ids (a re-run legitimately stamps its own run id)."""
    nodes, _, _ = driver.execute_query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN coalesce(a.id, a.sha256) AS a, type(r) AS t, properties(r) AS p, coalesce(b.id, b.sha256) AS b"
    )

    def strip(rows):
        out = []
        for r in rows:
            d = r.data()
            d["p"] = {k: v for k, v in d["p"].items() if k not in ("run_id", "first_run_id")}
            out.append(json.dumps(d, sort_keys=True, default=str))
        return sorted(out)

    return {"nodes": strip(nodes), "relationships": strip(rels)}


def test_dag_run_over_a_sample_day_builds_the_graph(neo4j_driver, neo4j_conn, airflow_ready, staging_dir):
    day = "2026-11-01"
    expected = EXPECTED["days"][day]
    dag_run = _ingest_dag().test(run_conf={"partition": day})
    assert dag_run.state == "success"

    records, _, _ = neo4j_driver.execute_query("MATCH (p:Post) RETURN count(p) AS n")
    assert records[0]["n"] == expected["posts"]
    # Every post with a usable image is linked to it; the image with a missing file is not in the graph.
    records, _, _ = neo4j_driver.execute_query("MATCH (:Post)-[:HAS_IMAGE]->(i:Image) RETURN count(*) AS links, count(DISTINCT i) AS images")
    assert records[0]["links"] == expected["images"]["ok"]
    # Typed entities with provenance on every mention.
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (p:Post)-[m:MENTIONS]->(e:Entity) RETURN m, labels(e) AS labels, e.type AS type, e.name AS name"
    )
    assert len(records) >= expected["posts"]  # sample posts name several entities each
    for r in records:
        assert all(r["m"].get(k) is not None for k in PROVENANCE), r["m"]
        assert r["m"]["model_version"].startswith("mg-vmoe/met-tweets@")  # MG-VMoE is the default typer
        assert 0.0 <= r["m"]["score"] <= 1.0 and r["m"]["run_id"] == dag_run.run_id
        assert r["type"] in r["labels"] and "Entity" in r["labels"]
    typed = {(r["name"], r["type"]) for r in records}
    assert {("marta silva", "Person"), ("lisbon falcons", "Organization")} <= typed
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (:Entity)-[r]->(:Entity) RETURN r.model_version AS v, r.evidence_count AS n, size(r.scores) AS k, "
        "r.label_set_id AS l, r.run_id AS run"
    )
    assert records and all(r["v"].startswith("mg-vmoe/") and r["n"] == r["k"] >= 1 and r["l"] for r in records)
    assert all(r["run"] == dag_run.run_id for r in records)

    # The quarantine holds exactly the day's bad records, with their reasons and payloads.
    quarantined = staging.read_quarantine(staging.stage_path(staging_dir, day, staging.QUARANTINE))
    assert [(q.source, q.reason, q.post_id) for q in quarantined] == [
        (q["source"], q["reason"], q["post_id"]) for q in expected["quarantine"]
    ]
    assert all(q.payload and q.details.get("message") for q in quarantined)
    report = json.loads((staging_dir / day / "run_report.json").read_text())
    assert report["posts_valid"] == expected["posts"]
    assert report["posts_quarantined"] == sum(expected["rejected"].values())
    # The day's posts in Portuguese, Korean and Spanish are counted: the detector does not read those languages.
    langs = json.loads((ROOT / "sample_data" / "gold_entities.json").read_text())["posts"]
    assert report["posts_other_language"] == sum(p["lang"] != "en" for pid, p in langs.items() if pid.startswith("1101-")) == 3
    assert isinstance(report["spans_cut_to_capitals"], int)
    # The day's valid images are staged and linked in the graph, but no shipped checkpoint can read one
    # (MGVMoE.reads_images): none is encoded, so none is unusable either.
    assert expected["images"]["ok"] > 0
    assert report["images_read_by_the_model"] == 0 == report["images_unusable_by_the_model"]
    # One XCom per task (a `-> dict` task used to store a row per key), the counts on the asset event.
    rows, extra = _run_outputs(dag_run.run_id)
    assert rows == {"plan": 1, "stage_posts": 1, "detect_mentions": 1, "type_and_relate": 1, "agree_types": 1,
                    "load_graph": 1, "report": 1}
    assert extra["posts_valid"] == expected["posts"] and extra["empty"] is False
    assert extra["relations"] == report["relations"] and extra["partitions"] == [day]


def test_an_empty_interval_is_a_green_run_that_says_so(neo4j_driver, neo4j_conn, airflow_ready, staging_dir):
    """No dt= folder for the day (the scheduled run right after unpausing): report and asset event say 0 posts."""
    dag_run = _ingest_dag().test(run_conf={"partition": "2026-10-31"})
    assert dag_run.state == "success"
    report = json.loads((staging_dir / "2026-10-31" / "run_report.json").read_text())
    assert report["posts_read"] == 0 and report["partitions"] == ["2026-10-31"]
    rows, extra = _run_outputs(dag_run.run_id)
    assert rows.get("report") == 1  # the report ran although the mapped tasks had no shard
    assert extra["empty"] is True and extra["posts_read"] == 0


def test_rerunning_a_day_leaves_the_graph_unchanged(neo4j_driver, neo4j_conn, airflow_ready, staging_dir):
    dag = _ingest_dag()
    assert dag.test(run_conf={"partition": "2026-11-02"}).state == "success"
    before = _graph_state(neo4j_driver)
    assert dag.test(run_conf={"partition": "2026-11-02"}).state == "success"
    assert _graph_state(neo4j_driver) == before


def test_backfill_of_three_days_through_the_scheduler(neo4j_driver, neo4j_server, tmp_path, staging_dir):
    """`airflow backfill create` on a real scheduler: three data intervals, three partitions."""
    from app.local_airflow import local_airflow

    s = neo4j_server.settings
    conn = json.dumps({"conn_type": "neo4j", "host": "127.0.0.1", "port": s.bolt_port, "login": s.user, "password": s.password})
    env = {"AIRFLOW_CONN_NEO4J_DEFAULT": conn, "MMKG_STAGING_DIR": str(staging_dir)}
    home = tmp_path / "airflow"
    with local_airflow(home, env) as af:  # runs `mmkg airflow init`: database, secrets, the gpu pool
        af.wait_for_dag("mmkg_ingest")
        af.cli("dags", "unpause", "mmkg_ingest")
        af.backfill("mmkg_ingest", "2026-11-01", "2026-11-03")
        runs = af.wait_for_runs("mmkg_ingest", {"2026-11-01", "2026-11-02", "2026-11-03"})
        assert Counter(r["state"] for r in runs) == Counter({"success": 3}), runs
        # A backfill given the manual-only `partition` param fails at once, in `plan`, with the reason.
        started = time.monotonic()
        af.backfill("mmkg_ingest", "2026-11-04", "2026-11-04", "--dag-run-conf", json.dumps({"partition": "2026-11-01"}))
        refused = af.wait_for_runs("mmkg_ingest", {"2026-11-04"}, timeout=300)
        refused_after = time.monotonic() - started
    assert [r["state"] for r in refused] == ["failed"] and refused_after < 240, (refused, refused_after)
    logs = home / "logs" / "dag_id=mmkg_ingest"
    plan_logs = list((logs / f"run_id={refused[0]['run_id']}" / "task_id=plan").glob("attempt=*.log"))
    assert len(plan_logs) == 1, plan_logs  # no retry
    plan_log = plan_logs[0].read_text()
    assert "for manual runs only; this backfill run reads its data interval" in plan_log, plan_log[-4000:]

    # The task logs of the green runs hold no ERROR line (progress bars on stderr, the XCom probe).
    errors = []
    green = [log for r in runs for log in (logs / f"run_id={r['run_id']}").rglob("attempt=*.log")]
    tasks = {part for log in green for part in log.parts if part.startswith("task_id=")}
    assert tasks >= {"task_id=plan", "task_id=detect_mentions", "task_id=type_and_relate", "task_id=report"}, green
    for log_file in green:
        for line in log_file.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("level") in ("error", "critical"):
                errors.append(f"{log_file.relative_to(logs)}: {line[:300]}")
    assert errors == []

    records, _, _ = neo4j_driver.execute_query(
        "MATCH (p:Post) RETURN toString(date(p.created_at)) AS day, count(*) AS n ORDER BY day"
    )
    by_day = {r["day"]: r["n"] for r in records}
    assert sum(by_day.values()) == EXPECTED["totals"]["posts"]
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        report = json.loads((staging_dir / day / "run_report.json").read_text())
        assert report["partitions"] == [day]  # each run read exactly its interval's partition
        assert report["posts_valid"] == EXPECTED["days"][day]["posts"]


def test_a_type_added_to_the_ontology_shows_up_in_the_graph_without_retraining(
    neo4j_driver, neo4j_conn, airflow_ready, staging_dir, tmp_path, monkeypatch
):
    import yaml

    from mmkg.ontology import load_ontology

    data = yaml.safe_load((ROOT / "ontology" / "ontology.yaml").read_text())
    data["entity_types"].append(
        {"name": "SportsTeam", "description": "a sports team or club that plays matches, such as a football or basketball team",
         "parent": "Organization"}
    )
    data["relation_types"].append(
        {"name": "plays_for", "description": "the athlete plays for the sports team", "allowed": [["Person", "SportsTeam"]]}
    )
    ontology_file = tmp_path / "ontology.yaml"
    ontology_file.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MMKG_ONTOLOGY", str(ontology_file))

    assert _ingest_dag().test(run_conf={"partition": "2026-11-01"}).state == "success"

    records, _, _ = neo4j_driver.execute_query("MATCH (e:SportsTeam) RETURN collect(e.name) AS names")
    assert "lisbon falcons" in records[0]["names"]
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (:Person)-[r:PLAYS_FOR]->(:SportsTeam) RETURN count(r) AS n, collect(DISTINCT r.label_set_id) AS ids"
    )
    assert records[0]["n"] > 0
    assert records[0]["ids"] == [load_ontology(ontology_file).label_set_id]


def test_the_label_similarity_baseline_stays_selectable(neo4j_driver, neo4j_conn, airflow_ready, staging_dir, monkeypatch):
    """MMKG_EXTRACTOR=label-similarity: the untrained baseline types and relates the sample day."""
    monkeypatch.setenv("MMKG_EXTRACTOR", "label-similarity")
    run = _ingest_dag().test(run_conf={"partition": "2026-11-03"})
    assert run.state == "success"
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (:Post)-[m:MENTIONS]->(e:Entity) RETURN m.model_version AS v, m.label_set_id AS l, m.run_id AS r"
    )
    assert records and all(r["v"].startswith("label-sim/") and r["l"] and r["r"] == run.run_id for r in records)


def test_a_type_a_person_set_is_how_the_next_run_types_the_name(neo4j_driver, neo4j_conn, airflow_ready, staging_dir):
    """`mmkg entities set-type porto Location` before a run: the run's plan carries it, the run types every
    "Porto" of the day a Location (its MENTIONS say so: not folded afterwards by the load)."""
    from kg_loader import type_agreement

    type_agreement.set_type(neo4j_driver, "porto", "Location")
    assert _ingest_dag().test(run_conf={"partition": "2026-11-01"}).state == "success"
    rows, _, _ = neo4j_driver.execute_query(
        "MATCH (:Post)-[m:MENTIONS]->(e:Entity {name: 'porto'}) RETURN e.type AS entity, m.type AS mention")
    assert rows and {(r["entity"], r["mention"]) for r in rows} == {("Location", "Location")}

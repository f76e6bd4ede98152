"""DAG integrity (no services needed) and the interval planning the DAG relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from extraction.pipeline import plan_interval
from mmkg.ontology import OntologyError
from mmkg.settings import PipelineSettings

DAGS = Path(__file__).resolve().parent.parent / "dags"
HEAVY = ("torch", "transformers", "neo4j", "spacy", "sentence_transformers", "pandas", "pyarrow")


def _parse_in_fresh_interpreter() -> dict:
    code = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
out = {{"errors": {{k: str(v) for k, v in bag.import_errors.items()}}, "heavy": [m for m in {HEAVY!r} if m in sys.modules], "dags": {{}}}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {{
        "timetable": type(dag.timetable).__name__,
        "tasks": {{t.task_id: {{"retries": t.retries, "pool": t.pool, "queue": t.queue}} for t in dag.tasks}},
        "params": list(dag.params.keys()),
        "outlets": [str(o.uri) for t in dag.tasks for o in t.outlets],
    }}
print("JSON" + json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("JSON"))
    return json.loads(line[4:])


@pytest.fixture(scope="module")
def parsed():
    return _parse_in_fresh_interpreter()


def test_dags_parse_without_errors_or_heavy_imports(parsed):
    assert parsed["errors"] == {}
    assert parsed["heavy"] == [], f"DAG files must not import {parsed['heavy']} at module level"
    assert "mmkg_ingest" in parsed["dags"]


def test_ingest_dag_shape(parsed):
    dag = parsed["dags"]["mmkg_ingest"]
    assert dag["timetable"] == "CronDataIntervalTimetable"  # backfills redo exact data intervals
    assert "partition" in dag["params"]  # manual runs without a logical date
    assert all(t["retries"] >= 1 for t in dag["tasks"].values())
    assert dag["tasks"]["type_and_relate"]["pool"] == "gpu"
    assert dag["tasks"]["type_and_relate"]["queue"] == "gpu"
    assert dag["outlets"] == ["neo4j://mmkg/graph"]


def _settings(tmp_path, ontology: Path | None = None) -> PipelineSettings:
    base = PipelineSettings.from_env()
    return PipelineSettings(base.landing_dir, tmp_path / "staging", ontology or base.ontology_path)


def test_plan_reads_exactly_the_days_of_the_interval(tmp_path):
    utc = timezone.utc
    plan = plan_interval("r", datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 11, 2, tzinfo=utc), settings=_settings(tmp_path))
    assert plan.days == ("2026-11-01",) and plan.interval_key == "2026-11-01"
    plan = plan_interval("r", datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 11, 4, tzinfo=utc), settings=_settings(tmp_path))
    assert plan.days == ("2026-11-01", "2026-11-02", "2026-11-03")


def test_manual_run_without_logical_date_needs_a_partition(tmp_path):
    plan = plan_interval("manual", partition="2026-11-02", settings=_settings(tmp_path))
    assert plan.days == ("2026-11-02",)
    with pytest.raises(ValueError, match="partition"):
        plan_interval("manual", settings=_settings(tmp_path))
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        plan_interval("manual", partition="yesterday", settings=_settings(tmp_path))


def test_invalid_ontology_is_refused_before_any_work(tmp_path):
    bad = tmp_path / "ontology.yaml"
    bad.write_text("entity_types:\n  - name: 'Bad`) DETACH DELETE n'\n    description: x\n")
    with pytest.raises(OntologyError, match="Neo4j label"):
        plan_interval("r", partition="2026-11-01", settings=_settings(tmp_path, bad))
    assert not (tmp_path / "staging").exists()

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
        "tasks": {{t.task_id: {{"retries": t.retries, "pool": t.pool, "queue": t.queue,
                              "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "multiple_outputs": getattr(t, "multiple_outputs", False),
                              "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule)}} for t in dag.tasks}},
        "dagrun_timeout_s": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "doc_md": dag.doc_md or "",
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


@pytest.mark.parametrize("dag_id", ["mmkg_ingest", "mmkg_train"])
def test_every_task_has_a_timeout_and_the_run_too(parsed, dag_id):
    """One stuck post (or model) cannot hold a run, and with max_active_runs=1 every later run, forever."""
    dag = parsed["dags"][dag_id]
    assert all(t["timeout_s"] for t in dag["tasks"].values()), dag["tasks"]
    gpu = [t for t in dag["tasks"].values() if t["pool"] == "gpu"]
    assert gpu and all(t["timeout_s"] >= 3600 for t in gpu)  # model tasks get longer
    assert dag["dagrun_timeout_s"] and dag["dagrun_timeout_s"] >= max(t["timeout_s"] for t in dag["tasks"].values())


@pytest.mark.parametrize("dag_id", ["mmkg_ingest", "mmkg_train"])
def test_tasks_returning_dicts_store_one_xcom(parsed, dag_id):
    """A `-> dict` task would otherwise store one XCom row per key (the run report: 14 rows)."""
    assert not any(t["multiple_outputs"] for t in parsed["dags"][dag_id]["tasks"].values())


def test_ingest_report_runs_for_an_empty_interval_and_docs_name_the_browser(parsed):
    dag = parsed["dags"]["mmkg_ingest"]
    assert dag["tasks"]["report"]["trigger_rule"] == "none_failed"  # mapped tasks over 0 shards are skipped
    assert "http://127.0.0.1:" in dag["doc_md"] and "/browser/" in dag["doc_md"]
    assert "{browser}" not in dag["doc_md"]


def _dag_module(name: str):
    """A DAG file imported as a module (for its helper functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_test_{name}", DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dags_check_the_variable_that_mmkg_airflow_init_writes():
    from app.airflow_init import INIT_VARIABLE

    assert _dag_module("mmkg_ingest").INIT_VARIABLE == INIT_VARIABLE
    assert _dag_module("mmkg_train").INIT_VARIABLE == INIT_VARIABLE


@pytest.fixture
def ingest_dag_module(monkeypatch):
    module = _dag_module("mmkg_ingest")
    variables = {}
    monkeypatch.setattr("airflow.sdk.Variable.get", lambda key, default=None, deserialize_json=False: variables.get(key, default))
    return module, variables


@pytest.mark.parametrize("run_type", ["backfill", "scheduled", "asset_triggered"])
def test_partition_is_refused_on_runs_that_read_their_data_interval(ingest_dag_module, run_type):
    from airflow.sdk.exceptions import AirflowFailException

    module, variables = ingest_dag_module
    variables["mmkg_airflow_init"] = {"pools": {"gpu": "ok"}}
    with pytest.raises(AirflowFailException, match=f"manual runs only; this {run_type} run"):
        module.check_setup(run_type, "2026-11-01")
    module.check_setup(run_type, None)  # without the param: fine
    module.check_setup("manual", "2026-11-01")  # a manual run may name its day


def test_a_run_against_an_uninitialised_airflow_fails_with_the_command_to_run(ingest_dag_module):
    from airflow.sdk.exceptions import AirflowFailException

    module, variables = ingest_dag_module
    with pytest.raises(AirflowFailException, match=r"is missing\): run `mmkg airflow init`.*pool 'gpu'"):
        module.check_setup("scheduled", None)
    variables["mmkg_airflow_init"] = {"pools": {"other": "ok"}}
    with pytest.raises(AirflowFailException, match=r"lists pools \['other'\]"):
        module.check_setup("scheduled", None)


def test_report_summary_and_asset_counts_say_when_an_interval_is_empty():
    module = _dag_module("mmkg_ingest")
    empty = {"interval": "2026-12-01", "partitions": ["2026-12-01"], "posts_read": 0, "posts_valid": 0,
             "posts_quarantined": 0, "images_bad": 0, "mentions": 0, "entities_typed": 0, "relations": 0, "graph": {}}
    assert "EMPTY interval" in module.summary_line(empty, partitions_missing=1)
    assert "1 of 1 partition folder(s) missing" in module.summary_line(empty, partitions_missing=1)
    extra = module.asset_extra(empty)
    assert extra["empty"] is True and extra["posts_read"] == 0 and extra["partitions"] == ["2026-12-01"]
    full = {**empty, "posts_read": 3, "posts_valid": 2, "graph": {"nodes_created": 5}, "names_abstained": 4,
            "names_typed_least_sure": 6}
    assert "3 posts read, 2 valid" in module.summary_line(full) and module.asset_extra(full)["empty"] is False
    assert "(4 names abstained" in module.summary_line(full) and module.asset_extra(full)["names_abstained"] == 4
    assert "6 typed by a narrow margin" in module.summary_line(full)
    assert module.asset_extra(full)["names_typed_least_sure"] == 6


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

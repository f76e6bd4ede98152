"""mmkg_train end to end on real research data (skips without it): train -> zero-shot eval -> publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmkg.settings import research_data_dir

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(research_data_dir() is None, reason="research data (MMKG_DATA, with mnre/) is absent")
def test_train_dag_publishes_a_verified_checkpoint(airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from app.airflow_init import init

    init()  # the DAG's first task refuses an Airflow without the gpu pool (mmkg airflow init)

    from models.checkpoint import load_checkpoint
    from models.registry import resolve

    monkeypatch.setenv("MMKG_CHECKPOINT_REGISTRY", str(tmp_path / "registry"))
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["mmkg_train"]
    run = dag.test(run_conf={"split": "mnre", "name": "mre-ci", "epochs": 1})
    assert run.state == "success"

    published = resolve("mre-ci", tmp_path / "registry")
    ckpt = load_checkpoint(published)  # hash verified
    assert ckpt.config.task == "mre"
    assert set(ckpt.card["labels"]["train"]).isdisjoint(ckpt.card["labels"]["test"])
    assert (tmp_path / "registry" / "mre-ci" / "CURRENT").read_text().strip() == f"versions/{published.name}"

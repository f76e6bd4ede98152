"""
### mmkg_train — train MG-VMoE on a labelled dataset, evaluate it zero-shot, publish it

Trains on the dataset's *seen* classes (early stopping on validation classes), evaluates on the
unseen test classes, and publishes the checkpoint under a name (`models.registry`): written in
full, verified by hash, then made current atomically — `mmkg_ingest` configured with that name
(`MMKG_ENTITY_CHECKPOINT` / `MMKG_RELATION_CHECKPOINT`) never reads a half-written checkpoint.
Emits the Asset `mmkg_checkpoints` with the metrics. Training runs in the GPU pool/queue.

A first task (`check_setup`, default pool) fails the run at once when `mmkg airflow init` has
not run against this Airflow: without the `gpu` pool the training task would wait forever.
Timeouts: training 12 h, evaluation 2 h per attempt.

Params: `split` (`mnre`, `mnre-seedN`, `mnre-pipeline`, `mnre-all-relations` (the shipped relation checkpoint's),
`wnut16-foldK`, `wnut16-pipeline`, `tweets-all-types[+fp|+events|+events+mnre|+events+mnre-per-loc]` (`+events`: the shipped entity typer's; `+mnre`: with MNRE train's relation arguments, measured and not shipped): the formats of the benchmark data), `data_dir` (folder with
`mnre/`, `wnut16/` and `twitter2017/`; default `MMKG_DATA`),
`name` (published name), `epochs`, `seed`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

CHECKPOINTS = Asset(name="mmkg_checkpoints", uri="file:///mmkg/checkpoints")
GPU_POOL = os.environ.get("MMKG_GPU_POOL", "gpu")
GPU_QUEUE = os.environ.get("MMKG_GPU_QUEUE", "gpu")
#: Written by `mmkg airflow init` (app.airflow_init.INIT_VARIABLE; tests/test_dags.py checks they agree).
INIT_VARIABLE = "mmkg_airflow_init"


def _no_progress_bars() -> None:
    """Progress bars write to stderr, which the task runner logs at ERROR level: off in tasks."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


@dag(
    dag_id="mmkg_train",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one training at a time: it holds the GPU
    dagrun_timeout=timedelta(hours=16),
    default_args={"retries": 1, "execution_timeout": timedelta(minutes=10)},
    params={
        "split": Param("mnre", type="string", description="zero-shot split of the labelled dataset"),
        "data_dir": Param(None, type=["null", "string"], description="dataset folder (default: MMKG_DATA)"),
        "name": Param("mre-custom", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        "epochs": Param(None, type=["null", "integer"], minimum=1),
        "seed": Param(0, type="integer"),
    },
    doc_md=__doc__,
    tags=["mmkg", "model"],
)
def mmkg_train():
    @task(retries=0)
    def check_setup() -> None:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        init = Variable.get(INIT_VARIABLE, default=None, deserialize_json=True) or {}
        if GPU_POOL not in init.get("pools", {}):
            raise AirflowFailException(
                f"this Airflow is not set up for mmkg (Variable {INIT_VARIABLE!r} missing or without pool "
                f"{GPU_POOL!r}): run `mmkg airflow init`; without the pool the training task would wait forever."
            )

    @task(multiple_outputs=False, pool=GPU_POOL, queue=GPU_QUEUE, execution_timeout=timedelta(hours=12))
    def train(params=None, run_id=None) -> dict:
        _no_progress_bars()
        from models.registry import train_candidate

        return train_candidate(
            params["split"], params["name"], run_id, data_dir=params["data_dir"],
            epochs=params["epochs"], seed=params["seed"],
        )

    @task(multiple_outputs=False, pool=GPU_POOL, queue=GPU_QUEUE, execution_timeout=timedelta(hours=2))
    def evaluate_zero_shot(candidate: dict, params=None) -> dict:
        _no_progress_bars()
        from models.registry import evaluate_candidate

        return evaluate_candidate(candidate["path"], params["split"], data_dir=params["data_dir"])

    @task(multiple_outputs=False, outlets=[CHECKPOINTS])
    def publish(candidate: dict, metrics: dict, params=None, outlet_events=None) -> dict:
        from models.registry import publish

        path = publish(candidate["path"], params["name"])
        summary = {"name": params["name"], "path": str(path), "test": metrics, "val": candidate["val"]}
        outlet_events[CHECKPOINTS].extra = summary
        return summary

    candidate = train()
    check_setup() >> candidate
    publish(candidate, evaluate_zero_shot(candidate))


mmkg_train()

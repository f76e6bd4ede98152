"""
### mmkg_train — train MG-VMoE on a labelled dataset, evaluate it zero-shot, publish it

Trains on the dataset's *seen* classes (early stopping on validation classes), evaluates on the
unseen test classes, and publishes the checkpoint under a name (`models.registry`): written in
full, verified by hash, then made current atomically — `mmkg_ingest` configured with that name
(`MMKG_ENTITY_CHECKPOINT` / `MMKG_RELATION_CHECKPOINT`) never reads a half-written checkpoint.
Emits the Asset `mmkg_checkpoints` with the metrics. Training runs in the GPU pool/queue.

Params: `split` (`mnre`, `mnre-seedN`, `mnre-pipeline`, `wnut16-foldK`, `wnut16-pipeline`: the formats
of the benchmark data), `data_dir` (folder with `mnre/` and `wnut16/`; default `MMKG_DATA`),
`name` (published name), `epochs`, `seed`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, Param, dag, task

CHECKPOINTS = Asset(name="mmkg_checkpoints", uri="file:///mmkg/checkpoints")
GPU_POOL = os.environ.get("MMKG_GPU_POOL", "gpu")
GPU_QUEUE = os.environ.get("MMKG_GPU_QUEUE", "gpu")


@dag(
    dag_id="mmkg_train",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1},
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
    @task(pool=GPU_POOL, queue=GPU_QUEUE)
    def train(params=None, run_id=None) -> dict:
        from models.registry import train_candidate

        return train_candidate(
            params["split"], params["name"], run_id, data_dir=params["data_dir"],
            epochs=params["epochs"], seed=params["seed"],
        )

    @task(pool=GPU_POOL, queue=GPU_QUEUE)
    def evaluate_zero_shot(candidate: dict, params=None) -> dict:
        from models.registry import evaluate_candidate

        return evaluate_candidate(candidate["path"], params["split"], data_dir=params["data_dir"])

    @task(outlets=[CHECKPOINTS])
    def publish(candidate: dict, metrics: dict, params=None, outlet_events=None) -> dict:
        from models.registry import publish

        path = publish(candidate["path"], params["name"])
        summary = {"name": params["name"], "path": str(path), "test": metrics, "val": candidate["val"]}
        outlet_events[CHECKPOINTS].extra = summary
        return summary

    candidate = train()
    publish(candidate, evaluate_zero_shot(candidate))


mmkg_train()

"""
### mmkg_ingest — social-media posts with images into the knowledge graph

Each run reads exactly the landing partitions (`dt=YYYY-MM-DD/`) of its **data interval**, so a
scheduled run, a backfill (UI, REST or `airflow backfill create`) and a re-run of the same interval
produce the same graph. Manual runs may have no logical date: give the `partition` param.

`plan` → `stage_posts` (validate, quarantine, shard as Parquet) → per shard:
`detect_mentions` → `type_and_relate` (zero-shot, GPU pool/queue) → `load_graph` (Neo4j MERGE)
→ `report`, which updates the graph Asset.

Wiring only: the work lives in `extraction` and `kg_loader`, imported inside the tasks so that
parsing this file never imports torch, transformers or the neo4j driver.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

#: The graph this DAG writes; downstream DAGs can schedule on it.
GRAPH = Asset(name="mmkg_graph", uri="neo4j://mmkg/graph")
GPU_POOL = os.environ.get("MMKG_GPU_POOL", "gpu")
GPU_QUEUE = os.environ.get("MMKG_GPU_QUEUE", "gpu")
NEO4J_CONN_ID = os.environ.get("MMKG_NEO4J_CONN_ID", "neo4j_default")


@dag(
    dag_id="mmkg_ingest",
    schedule=CronDataIntervalTimetable(os.environ.get("MMKG_INGEST_SCHEDULE", "0 0 * * *"), timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "partition": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="Manual runs without a logical date: the day (YYYY-MM-DD) to ingest.",
        )
    },
    doc_md=__doc__,
    tags=["mmkg", "ingestion"],
)
def mmkg_ingest():
    @task
    def plan(run_id=None, params=None, data_interval_start=None, data_interval_end=None) -> dict:
        from extraction.pipeline import plan_interval

        return plan_interval(
            run_id, data_interval_start, data_interval_end, partition=(params or {}).get("partition")
        ).to_dict()

    @task
    def stage_posts(plan: dict) -> list[dict]:
        from extraction.pipeline import IntervalPlan, stage_posts

        shards, counts = stage_posts(IntervalPlan.from_dict(plan))
        print(f"read counts: {counts}")
        return shards

    @task(max_active_tis_per_dagrun=4)
    def detect_mentions(shard: dict) -> dict:
        from extraction.pipeline import detect_shard

        return detect_shard(shard)

    @task(pool=GPU_POOL, queue=GPU_QUEUE)
    def type_and_relate(shard: dict, plan: dict) -> dict:
        from extraction.pipeline import IntervalPlan, type_shard

        return type_shard(shard, IntervalPlan.from_dict(plan))

    @task
    def load_graph(shard: dict, plan: dict) -> dict:
        from extraction.pipeline import IntervalPlan
        from kg_loader.airflow import graph_driver
        from kg_loader.load import load_shard

        driver, database = graph_driver(NEO4J_CONN_ID)
        try:
            return load_shard(shard, IntervalPlan.from_dict(plan), driver, database)
        finally:
            driver.close()

    @task(outlets=[GRAPH])
    def report(plan: dict, loads: list[dict]) -> dict:
        import json

        from extraction.pipeline import IntervalPlan, run_report

        plan_ = IntervalPlan.from_dict(plan)
        counts = json.loads((plan_.interval_dir / "read_counts.json").read_text())
        summary = run_report(plan_, counts, list(loads))
        print(json.dumps(summary, indent=2))
        return summary

    planned = plan()
    shards = stage_posts(planned)
    detected = detect_mentions.expand(shard=shards)
    typed = type_and_relate.partial(plan=planned).expand(shard=detected)
    loaded = load_graph.partial(plan=planned).expand(shard=typed)
    report(planned, loaded)


mmkg_ingest()

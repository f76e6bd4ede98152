"""
### mmkg_ingest — social-media posts with images into the knowledge graph

Each run reads exactly the landing partitions (`dt=YYYY-MM-DD/`) of its **data interval**, so a
scheduled run, a backfill (UI, REST or `airflow backfill create`) and a re-run of the same interval
produce the same graph.

`plan` (checks the setup, decides the partitions) → `stage_posts` (validate, quarantine, shard as
Parquet) → per shard: `detect_mentions` → `type_and_relate` (zero-shot, GPU pool/queue) → once for
the run: `agree_types` (one surface form, one type across all shards; GPU pool/queue, it re-extracts the
relations of retyped posts) → per shard: `load_graph` (Neo4j MERGE) → `report`: one XCom (the run
report), a one-line summary in its log, and the counts on the `mmkg_graph` asset event.

- **Before any work** `plan` fails at once, with the reason, when `mmkg airflow init` has not run
  against this Airflow (it creates the `gpu` pool: a task in a missing pool would wait forever),
  when Neo4j cannot be reached, or when `partition` is given to a scheduled run or a backfill.
- **`partition` param** (`YYYY-MM-DD`): only for manual runs (Trigger), e.g. a run without a logical
  date; it replaces the run's interval. Scheduled runs and backfills always read their data interval.
- **An empty interval** (no `dt=` folder, e.g. the scheduled run for yesterday right after
  unpausing) is a green run whose report says `EMPTY interval` and whose asset event has
  `"posts_read": 0, "empty": true`.
- **The graph**: Neo4j Browser of the embedded server at {browser} (user `neo4j`; `mmkg neo4j
  status` says where the password is). With your own Neo4j (`{conn_id}` connection), its Browser.

Wiring only: the work lives in `extraction` and `kg_loader`, imported inside the tasks so that
parsing this file never imports torch, transformers or the neo4j driver.
"""

from __future__ import annotations

import logging
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
#: Written by `mmkg airflow init` (app.airflow_init.INIT_VARIABLE; tests/test_dags.py checks they agree).
INIT_VARIABLE = "mmkg_airflow_init"
#: Run types that may name a `partition` (explicit triggers); scheduled and backfill runs read their interval.
PARTITION_RUN_TYPES = frozenset({"manual", "operator_triggered"})
BROWSER = f"http://127.0.0.1:{os.environ.get('MMKG_NEO4J_HTTP_PORT', '7474')}/browser/"

log = logging.getLogger("mmkg_ingest")


def _no_progress_bars() -> None:
    """Progress bars write to stderr, which the task runner logs at ERROR level (red in the UI):
    off in the model tasks (tqdm, and transformers' "Loading weights" bar through huggingface_hub)."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def check_setup(run_type: str, partition: str | None, pool: str = GPU_POOL) -> None:
    """Refuse, before any work, a run that cannot succeed: AirflowFailException (no retries)."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException

    if partition and run_type not in PARTITION_RUN_TYPES:
        raise AirflowFailException(
            f"the 'partition' param ({partition!r}) is for manual runs only; this {run_type} run reads its "
            "data interval. Clear the param (in a backfill every run would read that one day)."
        )
    init = Variable.get(INIT_VARIABLE, default=None, deserialize_json=True) or {}
    if pool not in init.get("pools", {}):
        found = f"lists pools {sorted(init['pools'])}" if init.get("pools") else "is missing"
        raise AirflowFailException(
            f"this Airflow is not set up for mmkg (Variable {INIT_VARIABLE!r} {found}): run `mmkg airflow init`. "
            f"It creates the pool {pool!r}; without it type_and_relate would stay 'scheduled' forever. "
            f'(Or create the pool yourself and set the Variable to {{"pools": {{"{pool}": "by hand"}}}}.)'
        )


def check_graph(conn_id: str = NEO4J_CONN_ID) -> tuple[str, dict[str, str]]:
    """Reach Neo4j the way load_graph will: auth errors fail at once, an unreachable server is retried.
    Returns the database's name and the entity types a person set (``mmkg entities set-type``), which the
    run's plan carries."""
    from neo4j.exceptions import AuthError, ClientError

    from airflow.sdk.exceptions import AirflowFailException
    from kg_loader.airflow import graph_driver
    from kg_loader.type_agreement import person_types

    driver, database = graph_driver(conn_id)
    try:
        driver.execute_query("RETURN 1", database_=database)
        decisions = person_types(driver, database)
    except (AuthError, ClientError) as exc:  # wrong password, unknown database: not transient
        raise AirflowFailException(f"Neo4j (connection {conn_id!r} or MMKG_NEO4J_*) refused mmkg: {exc}") from exc
    except Exception as exc:
        raise RuntimeError(f"Neo4j (connection {conn_id!r} or MMKG_NEO4J_*) is unreachable: {exc}") from exc
    finally:
        driver.close()
    return database or "default database", decisions


def summary_line(report: dict, partitions_missing: int = 0) -> str:
    """One human line for the task log (the full report is the XCom and run_report.json)."""
    where = ", ".join(f"dt={d}" for d in report["partitions"])
    if not report["posts_read"]:
        missing = f"{partitions_missing} of {len(report['partitions'])} partition folder(s) missing"
        return f"run report {report['interval']}: EMPTY interval - no posts in {where} ({missing}); nothing loaded"
    g = report["graph"]
    return (
        f"run report {report['interval']} ({where}): {report['posts_read']} posts read, {report['posts_valid']} valid, "
        f"{report['posts_quarantined']} quarantined, {report['images_bad']} bad images; {report['mentions']} mentions, "
        f"{report['entities_typed']} typed ({report.get('names_abstained', 0)} names abstained: the report's "
        f"names_abstained_most_mentioned; {report.get('names_typed_least_sure', 0)} typed by a narrow margin: "
        f"names_typed_least_sure_listed), {report['relations']} relations; graph +{g.get('nodes_created', 0)} nodes, "
        f"+{g.get('relationships_created', 0)} relationships"
    )


def asset_extra(report: dict) -> dict:
    """The counts on the mmkg_graph asset event (what a downstream DAG or the UI sees)."""
    g = report["graph"]
    return {
        "interval": report["interval"],
        "partitions": report["partitions"],
        "empty": not report["posts_read"],
        **{k: report[k] for k in ("posts_read", "posts_valid", "posts_quarantined", "images_bad", "mentions", "entities_typed", "relations")},
        "names_abstained": report.get("names_abstained", 0),
        "names_typed_least_sure": report.get("names_typed_least_sure", 0),
        "nodes_created": g.get("nodes_created", 0),
        "relationships_created": g.get("relationships_created", 0),
    }


@dag(
    dag_id="mmkg_ingest",
    schedule=CronDataIntervalTimetable(os.environ.get("MMKG_INGEST_SCHEDULE", "0 0 * * *"), timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    # One run at a time: runs share the GPU pool and, on one machine, the same cores, so a second run
    # adds memory (each model task holds ~1.5 GB) rather than speed. A stuck run no longer holds the
    # ones behind it: every task has an execution_timeout and the run a dagrun_timeout.
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=30)},
    params={
        "partition": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="Manual runs only (refused on scheduled runs and backfills): the day (YYYY-MM-DD) to "
            "ingest instead of the run's data interval.",
        )
    },
    doc_md=__doc__.replace("{browser}", BROWSER).replace("{conn_id}", NEO4J_CONN_ID),
    tags=["mmkg", "ingestion"],
)
def mmkg_ingest():
    @task(multiple_outputs=False, execution_timeout=timedelta(minutes=5))
    def plan(run_id=None, params=None, dag_run=None, data_interval_start=None, data_interval_end=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException
        from extraction.pipeline import plan_interval

        partition = (params or {}).get("partition")
        run_type = getattr(dag_run, "run_type", "manual")
        check_setup(str(getattr(run_type, "value", run_type)), partition)
        try:
            planned = plan_interval(run_id, data_interval_start, data_interval_end, partition=partition)
        except ValueError as exc:  # a bad param or label set (OntologyError is one): a retry cannot help
            raise AirflowFailException(str(exc)) from exc
        database, type_decisions = check_graph()
        planned = planned.with_type_decisions(type_decisions)
        log.info("setup ok: pool %r, Neo4j reachable (%s); reading %s; types set by a person: %d", GPU_POOL,
                 database, ", ".join(planned.days), len(planned.type_decisions))
        return planned.to_dict()

    @task(multiple_outputs=False, execution_timeout=timedelta(hours=1))
    def stage_posts(plan: dict) -> list[dict]:
        from extraction.pipeline import IntervalPlan, stage_posts

        shards, counts = stage_posts(IntervalPlan.from_dict(plan))
        log.info("staged %d shard(s); read counts: %s", len(shards), counts)
        return shards

    @task(multiple_outputs=False, max_active_tis_per_dagrun=4)
    def detect_mentions(shard: dict) -> dict:
        _no_progress_bars()
        from extraction.pipeline import detect_shard

        return detect_shard(shard)

    @task(multiple_outputs=False, pool=GPU_POOL, queue=GPU_QUEUE, execution_timeout=timedelta(hours=1))
    def type_and_relate(shard: dict, plan: dict) -> dict:
        _no_progress_bars()
        from extraction.pipeline import IntervalPlan, type_shard

        return type_shard(shard, IntervalPlan.from_dict(plan))

    @task(multiple_outputs=False, pool=GPU_POOL, queue=GPU_QUEUE, execution_timeout=timedelta(hours=1))
    def agree_types(plan: dict, typed) -> list[dict]:
        _no_progress_bars()
        from extraction.pipeline import IntervalPlan, agree_run_types

        return agree_run_types(IntervalPlan.from_dict(plan), list(typed[:]))

    @task(multiple_outputs=False)
    def load_graph(shard: dict, plan: dict) -> dict:
        from extraction.pipeline import IntervalPlan
        from kg_loader.airflow import graph_driver
        from kg_loader.load import load_shard

        driver, database = graph_driver(NEO4J_CONN_ID)
        try:
            return load_shard(shard, IntervalPlan.from_dict(plan), driver, database)
        finally:
            driver.close()

    # none_failed: an interval without partitions maps no shard (the mapped tasks are skipped),
    # and its report must still run and say so.
    @task(multiple_outputs=False, outlets=[GRAPH], trigger_rule="none_failed", execution_timeout=timedelta(minutes=5))
    def report(plan: dict, loads, outlet_events=None) -> dict:
        from extraction.pipeline import IntervalPlan, read_counts, run_report

        plan_ = IntervalPlan.from_dict(plan)
        counts = read_counts(plan_)
        # loads[:] is one request; iterating the lazy sequence probes one index past its end, which
        # the task SDK logs as "XCom not found ... load_graph" at ERROR level.
        summary = run_report(plan_, counts, list(loads[:]))
        log.info(summary_line(summary, counts.get("partition_missing", 0)))
        outlet_events[GRAPH].extra = asset_extra(summary)
        return summary

    planned = plan()
    shards = stage_posts(planned)
    detected = detect_mentions.expand(shard=shards)
    typed = type_and_relate.partial(plan=planned).expand(shard=detected)
    agreed = agree_types(planned, typed)
    loaded = load_graph.partial(plan=planned).expand(shard=agreed)
    report(planned, loaded)


mmkg_ingest()

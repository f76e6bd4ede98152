"""``mmkg airflow init``: make an Airflow metadata database ready for mmkg's DAGs, idempotently.

- migrates the database (``airflow db migrate``);
- generates the per-install secrets ``airflow.cfg`` reads (``app.airflow_secrets``);
- creates the GPU pool (``MMKG_GPU_POOL``, default ``gpu``) with one slot when it is missing; an
  existing pool keeps the slots you gave it;
- records what it did in the Airflow Variable ``mmkg_airflow_init``. The DAGs' first task reads it
  and fails at once, with this command in the message, when it is missing: Airflow 3 tasks cannot
  see pools (no pool route in the execution API, no ORM), and a task in a pool that does not exist
  stays "scheduled" forever with an empty log;
- reports the Neo4j connection (``MMKG_NEO4J_CONN_ID``, default ``neo4j_default``). An undefined
  connection is left undefined on purpose: the tasks then use the embedded Neo4j from
  ``MMKG_NEO4J_*`` (``kg_loader.airflow.graph_driver``), whose password lives in one place (the
  embedded server's 0600 file); a copy in Airflow's database would go stale when it changes. Define
  the connection for your own Neo4j (README, Configuration).

Runs in the process's own Airflow (``AIRFLOW_HOME``/``AIRFLOW_CONFIG``); ``LocalAirflow`` runs it as
``python -m app.cli airflow init`` for the Airflow it starts.
"""

from __future__ import annotations

import os
import subprocess
import sys

#: The Variable that proves `mmkg airflow init` ran against this metadata database. The DAG files
#: spell the same name (they may not import app/); tests/test_dags.py checks that they agree.
INIT_VARIABLE = "mmkg_airflow_init"


def gpu_pool() -> str:
    return os.environ.get("MMKG_GPU_POOL", "gpu")


def neo4j_conn_id() -> str:
    return os.environ.get("MMKG_NEO4J_CONN_ID", "neo4j_default")


def migrate() -> None:
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def ensure_secrets() -> list[str]:
    from app.airflow_secrets import GENERATORS, secret, secrets_dir

    for name in GENERATORS:
        secret(name)
    return [f"secrets: {', '.join(GENERATORS)} in {secrets_dir(os.environ['AIRFLOW_HOME'])} (0600)"]


def ensure_pool(name: str, slots: int = 1) -> str:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = Pool.get_pool(name, session=session)
        if pool is not None:
            return f"pool {name!r}: exists ({pool.slots} slots, kept)"
        Pool.create_or_update_pool(
            name, slots, "mmkg: GPU inference and training (created by `mmkg airflow init`)", False, session=session
        )
    return f"pool {name!r}: created with {slots} slot(s) (give it one slot per GPU: airflow pools set {name} N ...)"


def describe_connection(conn_id: str) -> str:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        from mmkg.settings import Neo4jSettings

        neo = Neo4jSettings.from_env()
        return (
            f"connection {conn_id!r}: not defined; tasks use the embedded Neo4j at {neo.uri} (MMKG_NEO4J_*). "
            "Define it for your own Neo4j."
        )
    return f"connection {conn_id!r}: defined ({conn.conn_type}://{conn.host}:{conn.port or 7687}, user {conn.login})"


def record(pool: str) -> None:
    from airflow.models.variable import Variable
    from airflow.version import version

    Variable.set(
        INIT_VARIABLE,
        # Task SDK masks every value a task reads from a Variable and warns about values under 5
        # characters ("gpu"): the pool names are keys, the values are sentences.
        {"pools": {pool: "created or found by mmkg airflow init"}, "airflow_version": version},
        description="written by `mmkg airflow init`; the mmkg DAGs check it before any work",
        serialize_json=True,
    )


def init(gpu_slots: int = 1) -> list[str]:
    """Migrate, generate secrets, create the pool, record; returns one line per step."""
    migrate()
    lines = ["database: migrated"]
    lines += ensure_secrets()
    pool = gpu_pool()
    lines.append(ensure_pool(pool, gpu_slots))
    lines.append(describe_connection(neo4j_conn_id()))
    record(pool)
    lines.append(f"variable {INIT_VARIABLE!r}: recorded")
    return lines

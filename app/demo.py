"""``mmkg demo``: the embedded default end to end.

Runs ``mmkg_ingest`` with Airflow (SQLite metadata, in one process per day via
``airflow dags test``) over every ``dt=`` partition of the landing directory (the shipped sample
data by default), then prints each run report and the answers to the README's example queries.
Assumes the local Neo4j is running (``mmkg neo4j start``; ``bin/demo`` does both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mmkg.settings import Neo4jSettings, PipelineSettings


def _airflow(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "airflow", *args], check=True)


def sample_days(landing_dir: Path) -> list[str]:
    return sorted(p.name.removeprefix("dt=") for p in landing_dir.glob("dt=*") if p.is_dir())


def run(days: list[str] | None = None) -> int:
    settings = PipelineSettings.from_env()
    days = days or sample_days(settings.landing_dir)
    if not days:
        print(f"no dt=YYYY-MM-DD partitions under {settings.landing_dir}", file=sys.stderr)
        return 1
    _airflow("db", "migrate")
    _airflow("pools", "set", os.environ.get("MMKG_GPU_POOL", "gpu"), "1", "GPU inference and training")
    for day in days:
        print(f"\n=== mmkg_ingest, partition dt={day} ===", flush=True)
        _airflow("dags", "test", "mmkg_ingest", "--conf", json.dumps({"partition": day}))

    print("\n=== Run reports ===")
    for day in days:
        report = json.loads((settings.staging_dir / day / "run_report.json").read_text())
        print(
            f"dt={day}: posts read {report['posts_read']}, valid {report['posts_valid']}, "
            f"quarantined {report['posts_quarantined']}, bad images {report['images_bad']}, "
            f"mentions {report['mentions']}, entities typed {report['entities_typed']} (abstained "
            f"{report['mentions_abstained']}, unreadable script {report['mentions_unreadable_script']}), "
            f"relations {report['relations']} (self-loops dropped "
            f"{report['graph'].get('dropped_relations_self_loop', 0)})"
        )
        if report["quarantine"]:
            print(f"    quarantine reasons: {report['quarantine']}")
    print(f"    (quarantine files: {settings.staging_dir}/<day>/quarantine.parquet)")

    from kg_loader.queries import EXAMPLE_QUERIES, run_examples
    from kg_loader.writer import connect

    neo = Neo4jSettings.from_env()
    with connect(neo) as driver:
        answers = run_examples(driver, neo.database)
        totals, _, _ = driver.execute_query(
            "MATCH (n) WITH count(n) AS nodes MATCH ()-[r]->() RETURN nodes, count(r) AS relationships"
        )
    print(f"\n=== Graph at {neo.uri}: {totals[0]['nodes']} nodes, {totals[0]['relationships']} relationships ===")
    for title, rows in answers.items():
        print(f"\n-- {title}\n{EXAMPLE_QUERIES[title].strip()}")
        for row in rows:
            print("   ", row)
    return 0

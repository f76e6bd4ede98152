"""``mmkg demo``: the embedded default end to end, readable.

Sets up Airflow (``mmkg airflow init``: SQLite metadata, secrets, the ``gpu`` pool), then runs
``mmkg_ingest`` with ``dag.test`` (in this process, no scheduler) over every ``dt=`` partition of
the landing directory (the shipped sample data by default). The terminal gets one line per task as
it finishes and each day's run report; everything Airflow and the tasks print goes to a log file
whose path is printed first. Then the answers to the README's example queries.
Assumes the local Neo4j is running (``mmkg neo4j start``; ``bin/demo`` does both).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from mmkg.settings import Neo4jSettings, PipelineSettings


def sample_days(landing_dir: Path) -> list[str]:
    return sorted(p.name.removeprefix("dt=") for p in landing_dir.glob("dt=*") if p.is_dir())


def log_path() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))) / "logs" / "mmkg-demo.log"


@contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2: Airflow, the tasks, native
    libraries, subprocesses) to ``path``; yield a stream to the terminal for progress lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    log_stream = os.fdopen(os.dup(log_fd), "w", buffering=1)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = sys.stderr = log_stream  # Python-level writers that do not use fd 1/2
        yield terminal
    finally:
        log_stream.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        log_stream.close()
        terminal.close()


@contextmanager
def task_progress(out, prefix: str = ""):
    """An Airflow (task SDK) listener writing one line to ``out`` per finished task instance,
    registered with the listener manager (which calls it in this process under ``dag.test``) for
    the duration of the block."""
    from airflow.listeners import hookimpl
    from airflow.sdk.listener import get_listener_manager

    def name(ti) -> str:
        index = getattr(ti, "map_index", -1)
        return ti.task_id if index is None or index < 0 else f"{ti.task_id}[{index}]"

    class TaskProgress:
        started: dict[str, float] = {}

        def _line(self, ti, status: str) -> None:
            elapsed = time.monotonic() - self.started.pop(name(ti), time.monotonic())
            out.write(f"{prefix}{name(ti):<22} {status:<7} {elapsed:6.1f} s\n")

        @hookimpl
        def on_task_instance_running(self, previous_state, task_instance):
            self.started[name(task_instance)] = time.monotonic()

        @hookimpl
        def on_task_instance_success(self, previous_state, task_instance):
            self._line(task_instance, "ok")

        @hookimpl
        def on_task_instance_failed(self, previous_state, task_instance, error):
            self._line(task_instance, "FAILED")
            if error:
                out.write(f"{prefix}    {str(error).splitlines()[0][:300]}\n")

        @hookimpl
        def on_task_instance_skipped(self, previous_state, task_instance):
            self._line(task_instance, "skipped")

    listener = TaskProgress()
    manager = get_listener_manager()
    manager.add_listener(listener)
    try:
        yield listener
    finally:
        manager.pm.unregister(listener)


#: Merge candidates the demo lists (the best first); ``mmkg entities candidates`` lists them all.
DEMO_CANDIDATES = 5
#: Abstained names, and least sure typed names, the demo prints per day (the run report lists
#: ``pipeline.ABSTAINED_REPORTED`` of each).
DEMO_ABSTAINED = 3


def report_line(day: str, report: dict) -> str:
    if not report["posts_read"]:
        return f"dt={day}: no posts (empty or missing partition)"
    return (
        f"dt={day}: posts read {report['posts_read']}, valid {report['posts_valid']}, "
        f"quarantined {report['posts_quarantined']}, bad images {report['images_bad']} (images the models read "
        f"{report.get('images_read_by_the_model', 0)}), "
        f"mentions {report['mentions']} (posts in a language not read {report.get('posts_other_language', 0)}, "
        f"spans cut to capitalised words {report.get('spans_cut_to_capitals', 0)}), entities typed {report['entities_typed']} (abstained "
        f"{report['mentions_abstained']}, unreadable script {report['mentions_unreadable_script']}), "
        f"relations {report['relations']} (self-loops dropped "
        f"{report['graph'].get('dropped_relations_self_loop', 0)}, rejected by a person "
        f"{report['graph'].get('triples_rejected', 0)}), "
        f"entities folded into their name's type across runs {report['graph'].get('entities_type_agreed', 0)}"
    )


def _ingest(days: list[str], settings: PipelineSettings, out) -> list[tuple[str, dict]]:
    """Run mmkg_ingest per day; progress to ``out``. Returns (day, report) per successful day."""
    from airflow.dag_processing.dagbag import DagBag

    from app import airflow_init
    from mmkg.settings import REPO_ROOT

    out.write("setting up Airflow (mmkg airflow init) ...\n")
    for line in airflow_init.init():
        print(f"[airflow init] {line}", flush=True)  # to the log
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    if "mmkg_ingest" not in bag.dags:
        raise RuntimeError(f"mmkg_ingest did not parse: {bag.import_errors}")
    dag = bag.dags["mmkg_ingest"]
    reports = []
    for day in days:
        out.write(f"mmkg_ingest dt={day}\n")
        started = time.monotonic()
        with task_progress(out, prefix="    "):
            run = dag.test(run_conf={"partition": day})
        state = str(getattr(run.state, "value", run.state))
        if state != "success":
            out.write(f"    run {state} after {time.monotonic() - started:.0f} s: see the log\n")
            continue
        report = json.loads((settings.staging_dir / day / "run_report.json").read_text())
        out.write(f"    {report_line(day, report)}  [{time.monotonic() - started:.0f} s]\n")
        reports.append((day, report))
    return reports


def run(days: list[str] | None = None) -> int:
    settings = PipelineSettings.from_env()
    days = days or sample_days(settings.landing_dir)
    if not days:
        print(f"no dt=YYYY-MM-DD partitions under {settings.landing_dir}", file=sys.stderr)
        return 1
    path = log_path()
    print(f"Airflow and task logs: {path}", flush=True)
    with output_to(path) as out:
        reports = _ingest(days, settings, out)

    from extraction.zero_shot import REVIEW_GAP

    print("\n=== Run reports ===")
    for day, report in reports:
        print(report_line(day, report))
        if report["quarantine"]:
            print(f"    quarantine reasons: {report['quarantine']}")
        if report.get("names_abstained_most_mentioned"):
            print(f"    names abstained, not in the graph ({report['names_abstained']}; the most mentioned): "
                  + "; ".join(report["names_abstained_most_mentioned"][:DEMO_ABSTAINED]))
        if report.get("names_typed_least_sure_listed"):
            print(f"    names typed by the narrowest margin, to check ({report['names_typed_least_sure']} under "
                  f"{REVIEW_GAP}; the narrowest): " + "; ".join(report["names_typed_least_sure_listed"][:DEMO_ABSTAINED]))
    print("    (a name you know the type of, abstained or wrong: `mmkg entities set-type NAME TYPE`, then run its day again)")
    print(f"    (quarantine files: {settings.staging_dir}/<day>/quarantine.parquet; full logs: {path})")
    if len(reports) != len(days):
        failed = sorted(set(days) - {d for d, _ in reports})
        print(f"\nruns failed for {', '.join(failed)}: see {path}", file=sys.stderr)
        return 1

    from app.resolution_cli import print_candidates
    from kg_loader import resolution
    from kg_loader.queries import EXAMPLE_QUERIES, run_examples
    from kg_loader.writer import connect

    neo = Neo4jSettings.from_env()
    # No notifications: on a still empty graph every example query warns about unknown labels.
    with connect(neo, notifications_min_severity="OFF") as driver:
        answers = run_examples(driver, neo.database)
        proposals = resolution.propose_candidates(driver, neo.database)
        candidates = resolution.list_candidates(driver, neo.database)
        totals, _, _ = driver.execute_query(
            "MATCH (n) WITH count(n) AS nodes OPTIONAL MATCH ()-[r]->() RETURN nodes, count(r) AS relationships",
            database_=neo.database, routing_="r",
        )
    print(f"\n=== Graph at {neo.uri}: {totals[0]['nodes']} nodes, {totals[0]['relationships']} relationships ===")
    print(f"    Browser: http://127.0.0.1:{neo.http_port}/browser/")
    for title, rows in answers.items():
        print(f"\n-- {title}\n{EXAMPLE_QUERIES[title].strip()}")
        for row in rows:
            print("   ", row)
    print(f"\n=== Entity resolution: {len(proposals.candidates)} merge candidates for a person to review "
          f"(nothing merged; `mmkg entities propose` wrote them) ===")
    print_candidates(candidates[:DEMO_CANDIDATES])
    if len(candidates) > DEMO_CANDIDATES:
        print(f"    ... {len(candidates) - DEMO_CANDIDATES} more: mmkg entities candidates")
    print("    accept one: mmkg entities accept A B   reject: mmkg entities reject A B   (README: Entity resolution)")
    return 0

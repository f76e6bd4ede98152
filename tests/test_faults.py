"""Faults on purpose, against the real server and real processes: Neo4j killed in the middle of a
shard's load, a staging process killed half-way, a load that fails after its first statements, two
runs of one interval at once. Each must converge to the graph (and the staged files) of a clean run.

The extraction stages (detect, type) are replaced by a deterministic synthetic extractor, so these
tests need no model; everything else is the pipeline's own code (``stage_posts``, ``load_shard``,
``run_report``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from extraction import staging as st
from kg_loader import checksum
from mmkg.records import Mention, RelationMention, TypedMention
from tests.test_staging import plan_and_settings, staged_tree, write_landing

REPO_ROOT = Path(__file__).resolve().parent.parent
PEOPLE = ["Marta Silva", "Ana Costa", "Kofi Mensah", "Lena Berg", "Ravi Nair", "Sofia Reyes", "Tomas Novak"]
CLUBS = ["Lisbon Falcons", "Porto Owls", "Accra Lions", "Bergen Bears"]
CITIES = ["Lisbon", "Porto", "Accra", "Bergen", "Durban"]
RUN_IDS = ("run_id", "first_run_id")  # two runs stamp their own ids: left out where two runs are compared


def _pick(pid: str, pool: list[str], salt: str) -> str:
    return pool[zlib.crc32(f"{salt}{pid}".encode()) % len(pool)]


def synthetic_post(pid: str, day: str, hour: int = 10) -> dict:
    person, club, city = _pick(pid, PEOPLE, "p"), _pick(pid, CLUBS, "c"), _pick(pid, CITIES, "l")
    return {"id": pid, "text": f"{person} of {club} in {city}, post {pid}", "created_at": f"{day}T{hour:02d}:00:00+00:00",
            "author": "fan", "lang": "en", "source": "synthetic"}


def synthetic_landing(root: Path, days: dict[str, int]) -> Path:
    return write_landing(root, {day: [synthetic_post(f"{day[5:7]}{day[8:]}-{i:05d}", day) for i in range(n)]
                                for day, n in days.items()})


def extract(shard: dict, version: str = "v1") -> None:
    """What detect + type would write for a shard: typed mentions of the post's person, club and
    city, and member_of / located_in triples between them (``version`` changes scores and, for
    "v2", drops the city: an extractor that changed)."""
    typed, relations = [], []
    for post in st.read_posts(st.shard_file(shard, "posts")):
        def mention(name: str, etype: str) -> TypedMention:
            start = post.text.index(name)
            score = 0.5 + (zlib.crc32(f"{version}{post.id}{name}".encode()) % 50) / 100
            return TypedMention(Mention(post.id, start, start + len(name), name, "synthetic"), etype, score,
                                f"synthetic/{version}", "ls-test")

        person = mention(_pick(post.id, PEOPLE, "p"), "Person")
        club = mention(_pick(post.id, CLUBS, "c"), "Organization")
        found = [person, club]
        relations.append(RelationMention(post.id, person, club, "member_of", person.score, f"synthetic/{version}", "ls-test"))
        if version != "v2":
            city = mention(_pick(post.id, CITIES, "l"), "Location")
            found.append(city)
            relations.append(RelationMention(post.id, club, city, "located_in", city.score, f"synthetic/{version}", "ls-test"))
        typed.extend(found)
    st.write_records(st.shard_file(shard, "typed_mentions"), typed, TypedMention)
    st.write_records(st.shard_file(shard, "relations"), relations, RelationMention)


def run_interval(plan, settings, driver, version: str = "v1") -> list[dict]:
    """``stage_posts``, then per shard the synthetic extraction and ``load_shard``."""
    from extraction.pipeline import stage_posts
    from kg_loader.load import load_shard

    shards, _ = stage_posts(plan, settings)
    loads = []
    for shard in shards:
        extract(shard, version)
        loads.append(load_shard(shard, plan, driver))
    return loads


def graph(driver, ignore=()) -> str:
    return checksum.graph_checksum(driver, ignore=ignore)


def _clear(driver) -> None:
    driver.execute_query("MATCH (n) DETACH DELETE n")


def kill_neo4j(server) -> None:
    """SIGKILL the server's process group (no shutdown, no checkpoint) and wait until it is gone."""
    from neo4j_server import manager

    pid = manager.status(server.settings)["pid"]
    assert pid, "the test server is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while manager.status(server.settings)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setenv("MMKG_NEO4J_BATCH_SIZE", "25")  # several statements per kind in a shard's transaction


# --- (a) Neo4j killed in the middle of a shard's load ---------------------------------------------------


@pytest.mark.neo4j
def test_neo4j_killed_mid_load_of_a_shard_then_rerun_gives_the_clean_graph(neo4j_server, tmp_path, small_batches,
                                                                           monkeypatch):
    from extraction.pipeline import read_counts, run_report, stage_posts
    from kg_loader import writer as writer_module
    from kg_loader.load import load_shard

    landing = synthetic_landing(tmp_path / "landing", {"2026-11-01": 120})
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "run-kill", ["2026-11-01"], shard_size=60)
    driver = neo4j_server.driver()
    _clear(driver)
    shards, _ = stage_posts(plan, settings)
    assert len(shards) == 2
    for shard in shards:
        extract(shard, "v1")
    for shard in shards:  # the clean run
        load_shard(shard, plan, driver)
    clean = graph(driver)

    # The same graph with shard 1 as an older extraction (v2) had left it, then the v1 re-load of
    # shard 1 is killed after its first statements: posts, images, and the retraction have run in
    # its open transaction (the old loader had committed them: a half-retracted shard).
    _clear(driver)
    load_shard(shards[0], plan, driver)
    extract(shards[1], "v2")
    load_shard(shards[1], plan, driver)
    before = graph(driver)
    extract(shards[1], "v1")
    driver.close()
    driver = neo4j_server.driver(max_transaction_retry_time=2.0)
    real_run_batch, calls = writer_module._run_batch, []

    def run_batch_then_kill(tx, query, params):
        calls.append(query.split()[0:4])
        if len(calls) == 6:
            kill_neo4j(neo4j_server)
        return real_run_batch(tx, query, params)

    monkeypatch.setattr(writer_module, "_run_batch", run_batch_then_kill)
    import neo4j.exceptions

    try:
        with pytest.raises((neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError)):
            load_shard(shards[1], plan, driver)
    finally:
        monkeypatch.setattr(writer_module, "_run_batch", real_run_batch)
        driver.close()
        neo4j_server.start()  # crash recovery: the open transaction never committed
    assert len(calls) == 6
    driver = neo4j_server.driver()
    try:
        assert graph(driver) == before  # all-or-nothing: nothing of the killed load is in the graph
        load = load_shard(shards[1], plan, driver)  # the task's retry
        assert graph(driver) == clean
        assert checksum.duplicates(driver) == {"nodes": 0, "relationships": 0}
        loads = [load_shard(shards[0], plan, driver), load]  # and the whole load step once more
        assert graph(driver) == clean
        # what it cost, in the run report: shard 0 was loaded 3 times, shard 1 4 times (one killed)
        assert load["load_attempt"] == 4 and loads[0]["load_attempt"] == 3
        report = run_report(plan, read_counts(plan), loads)
        assert report["costs"] == {"stage_attempts": 1, "load_reruns": 2 + 3, "transaction_retries": 0,
                                   "deadlock_retries": 0}
    finally:
        _clear(driver)
        driver.close()


# --- a shard's load is all-or-nothing ------------------------------------------------------------------


@pytest.mark.neo4j
def test_a_load_failing_after_its_first_statements_leaves_the_graph_as_it_was_and_a_rerun_converges(
    neo4j_driver, tmp_path, small_batches, monkeypatch
):
    """A server-side error in the triples (after posts, images, the retraction and the mentions ran)
    and a writer that raises after its first batch: both leave the previous graph whole."""
    from kg_loader import cypher
    from kg_loader import writer as writer_module
    from kg_loader.load import load_shard

    landing = synthetic_landing(tmp_path / "landing", {"2026-11-01": 80})
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "run-1", ["2026-11-01"], shard_size=80)
    run_interval(plan, settings, neo4j_driver, "v1")
    clean = graph(neo4j_driver)
    [shard] = run_interval(plan, settings, neo4j_driver, "v2")  # the extractor changed: v2 graph
    v2 = graph(neo4j_driver)
    assert v2 != clean
    extract(shard, "v1")

    real_relations = cypher.upsert_relations
    monkeypatch.setattr(cypher, "upsert_relations", lambda relation: real_relations(relation).replace(
        "RETURN count(*) AS written", "RETURN count(*) / (count(*) - count(*)) AS written"))  # / by zero on the server
    import neo4j.exceptions

    with pytest.raises(neo4j.exceptions.ClientError, match="zero"):
        load_shard(shard, plan, neo4j_driver)
    assert graph(neo4j_driver) == v2
    monkeypatch.setattr(cypher, "upsert_relations", real_relations)

    real_run_batch, calls = writer_module._run_batch, []

    def fail_after_first_batch(tx, query, params):
        calls.append(query)
        if len(calls) == 2:
            raise RuntimeError("worker lost (injected)")
        return real_run_batch(tx, query, params)

    monkeypatch.setattr(writer_module, "_run_batch", fail_after_first_batch)
    with pytest.raises(RuntimeError, match="injected"):
        load_shard(shard, plan, neo4j_driver)
    assert graph(neo4j_driver) == v2
    monkeypatch.setattr(writer_module, "_run_batch", real_run_batch)

    load = load_shard(shard, plan, neo4j_driver)
    assert graph(neo4j_driver) == clean and load["load_attempt"] == 5


@pytest.mark.neo4j
def test_a_transient_failure_reruns_the_whole_shard_transaction_and_is_counted(neo4j_driver, tmp_path, monkeypatch):
    import neo4j.exceptions

    from kg_loader import writer as writer_module
    from kg_loader.load import load_shard

    landing = synthetic_landing(tmp_path / "landing", {"2026-11-01": 30})
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "run-1", ["2026-11-01"], shard_size=30)
    run_interval(plan, settings, neo4j_driver)
    clean = graph(neo4j_driver)
    _clear(neo4j_driver)
    [shard] = run_interval(plan, settings, neo4j_driver, "v2")
    extract(shard, "v1")
    real_run_batch, calls = writer_module._run_batch, []

    def lose_the_connection_once(tx, query, params):
        calls.append(query)
        if len(calls) == 4:
            raise neo4j.exceptions.SessionExpired("connection lost (injected)")
        return real_run_batch(tx, query, params)

    monkeypatch.setattr(writer_module, "_run_batch", lose_the_connection_once)
    load = load_shard(shard, plan, neo4j_driver)
    assert load["transaction_retries"] == 1 and load["load_attempt"] == 3
    assert graph(neo4j_driver) == clean


# --- (b) a staging process killed half-way -------------------------------------------------------------

_STAGE = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_staging import plan_and_settings
from extraction.pipeline import stage_posts
from pathlib import Path
plan, settings = plan_and_settings(Path({landing!r}), Path({staging!r}), "run-1", {days!r}, shard_size=25)
stage_posts(plan, settings)
"""


def test_a_staging_process_killed_half_way_then_rerun_stages_byte_identical_files(tmp_path):
    from extraction.pipeline import stage_posts

    days = {"2026-11-01": 3000, "2026-11-02": 3000, "2026-11-03": 3000}
    landing = synthetic_landing(tmp_path / "landing", days)
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "run-1", list(days), shard_size=25)
    clean_plan, _ = plan_and_settings(landing, tmp_path / "clean", "run-1", list(days), shard_size=25)
    stage_posts(clean_plan, settings)
    expected = staged_tree(clean_plan.interval_dir)

    script = _STAGE.format(root=str(REPO_ROOT), landing=str(landing), staging=str(tmp_path / "staging"), days=list(days))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(st.shard_paths_in(plan.run_dir, "posts")) >= 3:  # some shards written, most not
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "staging finished before it was killed: make the landing bigger"
    partial = staged_tree(plan.interval_dir)
    assert partial != expected and "runs/" + plan.run_dir.name + "/read_counts.json" not in partial

    stage_posts(plan, settings)  # the task's retry
    assert staged_tree(plan.interval_dir) == expected
    assert not [p for p in plan.run_dir.iterdir() if p.name.endswith(".tmp")]
    assert st.attempts(plan.run_dir, "stage") == 2


# --- (c) two runs of one interval at once ---------------------------------------------------------------


@pytest.mark.neo4j
def test_two_runs_of_one_interval_at_once_give_the_graph_of_one_run(neo4j_driver, tmp_path, small_batches):
    from extraction.pipeline import read_counts, run_report

    landing = synthetic_landing(tmp_path / "landing", {"2026-11-01": 150, "2026-11-02": 150})
    days = ["2026-11-01", "2026-11-02"]
    one, settings = plan_and_settings(landing, tmp_path / "one", "run-one", days, shard_size=30)
    run_interval(one, settings, neo4j_driver)
    alone = graph(neo4j_driver, ignore=RUN_IDS)
    alone_files = staged_tree(one.run_dir)
    _clear(neo4j_driver)

    plans = [plan_and_settings(landing, tmp_path / "staging", run_id, days, shard_size=30)[0]
             for run_id in ("run-a", "run-b", "run-c")]
    start, errors, loads = threading.Barrier(len(plans)), [], {}

    def run(plan):
        try:
            start.wait()
            loads[plan.run_id] = run_interval(plan, settings, neo4j_driver)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert graph(neo4j_driver, ignore=RUN_IDS) == alone
    assert checksum.duplicates(neo4j_driver) == {"nodes": 0, "relationships": 0}
    for plan in plans:  # each run staged exactly what one run alone stages, in its own folder
        assert staged_tree(plan.run_dir) == alone_files
        report = run_report(plan, read_counts(plan), loads[plan.run_id])
        assert report["costs"]["stage_attempts"] == 1 and report["costs"]["load_reruns"] == 0
        assert report["graph"]["transaction_retries"] == report["costs"]["transaction_retries"] >= 0
    _clear(neo4j_driver)

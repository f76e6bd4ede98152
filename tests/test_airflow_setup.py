"""The project's Airflow: per-install secrets, `mmkg airflow init`, a run on an Airflow without it
failing at once, and the local Airflow as one session of processes listening on loopback only."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from app.airflow_secrets import GENERATORS, secret

ROOT = Path(__file__).resolve().parent.parent


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_airflow_reads_per_install_secrets_generated_private(tmp_path):
    """airflow.cfg's *_cmd options: a Fernet key (connections encrypted), a JWT secret long enough for
    HS512 and the API secret key, the same in every process of one AIRFLOW_HOME, files 0600."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    code = (
        "from airflow.configuration import conf; from airflow.models.crypto import get_fernet; import json; "
        "print('JSON' + json.dumps([conf.get('core', 'fernet_key'), conf.get('api_auth', 'jwt_secret'), "
        "conf.get('api', 'secret_key'), get_fernet().is_encrypted]))"
    )
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outs.append(json.loads(next(line[4:] for line in proc.stdout.splitlines() if line.startswith("JSON"))))
    fernet, jwt, api_key, encrypted = outs[0]
    assert outs[1] == outs[0]  # stable across processes
    assert encrypted is True  # before: empty fernet_key, connection passwords stored in clear
    from cryptography.fernet import Fernet

    Fernet(fernet.encode())
    assert len(jwt.encode()) >= 64 and len(api_key) >= 32
    folder = tmp_path / "secrets"
    assert _mode(folder) == 0o700
    assert {p.name: _mode(p) for p in folder.iterdir()} == {name: 0o600 for name in GENERATORS}
    assert (folder / "jwt_secret").read_text() == jwt


def test_concurrent_first_readers_get_one_secret(tmp_path):
    with ProcessPoolExecutor(6) as pool:
        values = list(pool.map(secret, ["jwt_secret"] * 12, [tmp_path] * 12))
    assert len(set(values)) == 1
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["jwt_secret"]  # no temporary file left


def _airflow(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, check=check, cwd=ROOT)


@pytest.mark.airflow
def test_without_init_a_run_fails_at_once_and_init_is_idempotent(tmp_path):
    home = tmp_path / "airflow"
    _airflow(home, "airflow", "db", "migrate")
    started = time.monotonic()
    run = _airflow(home, "airflow", "dags", "test", "mmkg_ingest", "--conf", json.dumps({"partition": "2026-11-01"}), check=False)
    took = time.monotonic() - started
    out = run.stdout + run.stderr
    # Before: plan, stage_posts and detect_mentions ran, and in a scheduler type_and_relate waited for
    # the missing pool forever. Now the first task fails, without retries, naming the command.
    assert "Variable 'mmkg_airflow_init' is missing): run `mmkg airflow init`" in out, out[-3000:]
    assert "state=failed" in out and "task_id=stage_posts" not in out
    assert took < 120, took

    first = _airflow(home, "app.cli", "airflow", "init").stdout
    assert "pool 'gpu': created with 1 slot(s)" in first
    assert "connection 'neo4j_default': not defined; tasks use the embedded Neo4j" in first
    _airflow(home, "airflow", "pools", "set", "gpu", "3", "two GPUs and a half")
    second = _airflow(home, "app.cli", "airflow", "init").stdout
    assert "pool 'gpu': exists (3 slots, kept)" in second
    pools = json.loads(next(line for line in _airflow(home, "airflow", "pools", "list", "-o", "json").stdout.splitlines() if line.startswith("[")))
    assert {p["pool"]: int(p["slots"]) for p in pools}["gpu"] == 3
    variable = _airflow(home, "airflow", "variables", "get", "mmkg_airflow_init").stdout
    assert '"gpu"' in variable


@pytest.mark.airflow
def test_local_airflow_is_one_session_on_loopback_and_stops_whole(tmp_path):
    import psutil

    from app.local_airflow import LocalAirflow, passwords_file, session_members

    af = LocalAirflow(tmp_path / "airflow")
    af.start()
    try:
        sid = af.proc.pid
        deadline = time.monotonic() + 120
        names: set[str] = set()
        while time.monotonic() < deadline:  # the components start at their own pace
            cmdlines = [" ".join(p.cmdline()) for p in session_members(sid)]
            names = {c for c in ("api-server", "api_server", "scheduler", "dag-processor", "triggerer", "serve-logs") if any(c in line for line in cmdlines)}
            if {"scheduler", "dag-processor", "triggerer", "serve-logs"} <= names and names & {"api-server", "api_server"}:
                break
            time.sleep(2)
        assert {"scheduler", "dag-processor", "triggerer", "serve-logs"} <= names, cmdlines
        time.sleep(5)  # let the log server bind
        pids = {p.pid for p in session_members(sid)}
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids}
        ports = {int(af.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]), int(af.env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]), af.port}
        assert listening == {("127.0.0.1", port) for port in ports}  # nothing on 0.0.0.0 or [::]
        assert _mode(af.log_path) == 0o600 and _mode(passwords_file(af.home)) == 0o600
        status = subprocess.run([sys.executable, "-m", "app.cli", "airflow", "status"], env=af.env, capture_output=True, text=True)
        assert status.returncode == 0 and f"session {sid}" in status.stdout, status.stdout + status.stderr
        assert "  scheduler: " in status.stdout and "unreadable" not in status.stdout, status.stdout
        # `mmkg airflow stop` from another process (the pid file): the whole session goes.
        stop = subprocess.run([sys.executable, "-m", "app.cli", "airflow", "stop"], env=af.env, capture_output=True, text=True)
        assert stop.returncode == 0 and "no process left" in stop.stdout, stop.stdout + stop.stderr
        assert session_members(sid) == [] and not af.pid_path.exists()
    finally:
        left = af.stop()  # a no-op when the CLI stopped it
    assert left == [] and session_members(sid) == []


class FakeComponent:
    """A component process for ``supervise`` (its ``subprocess.Popen``): named from its argv, numbered in start
    order (``started``, shared by the subclass's instances: set it in the subclass); a subclass says when ``poll``
    finds it exited."""

    started: list = []

    def __init__(self, argv, env=None):
        from app import local_airflow

        self.name = next(n for n, args in local_airflow.COMPONENTS.items() if argv[3:] == list(args)) \
            if argv[2] == "airflow" else "log-server"
        self.started.append(self)
        self.pid, self.returncode, self.polls, self.terminated = len(self.started), None, 0, False

    def poll(self):
        self.polls += 1
        return self.returncode

    def terminate(self):
        self.terminated = True
        self.returncode = -15 if self.returncode is None else self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def kill(self):
        self.terminate()


def _names(procs) -> list[str]:
    return [p.name for p in procs]


class _QuietWatchdog:
    """A watchdog that finds every scheduler healthy. The supervise tests use it (or their own) rather than the
    real one: that would import Airflow's configuration in this process while AIRFLOW_HOME is the test's, and the
    session's later Airflow tests would then read a database with no tables."""

    def why_hung(self, since):
        return None


def test_the_supervisor_restarts_a_failed_component_then_gives_up(tmp_path, monkeypatch, capsys):
    """A component that fails (the scheduler dies on a transient SQLite race) is restarted up to
    MAX_RESTARTS times; failing once more stops the whole session."""
    from app import local_airflow

    class FakeProcess(FakeComponent):
        started = []

        def poll(self):
            self.polls += 1
            if self.name == "scheduler" and self.polls > 1 and not self.terminated:
                self.returncode = 1  # fails on its second look, every time
            return self.returncode

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(local_airflow.SchedulerWatchdog, "configured", classmethod(lambda cls: _QuietWatchdog()))
    monkeypatch.setattr(local_airflow.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(local_airflow.time, "sleep", lambda s: None)
    monkeypatch.setattr(local_airflow.signal, "signal", lambda *a: None)
    assert local_airflow.supervise() == 1
    started = _names(FakeProcess.started)
    assert started.count("scheduler") == 1 + local_airflow.MAX_RESTARTS
    assert all(started.count(n) == 1 for n in local_airflow.COMPONENTS if n != "scheduler")
    out = capsys.readouterr().out
    assert f"restarting it ({local_airflow.MAX_RESTARTS} of {local_airflow.MAX_RESTARTS})" in out
    assert "{'scheduler': 1} exited; stopping the others" in out


def test_the_watchdog_reads_the_scheduler_heartbeat_from_the_metadata_database(tmp_path):
    """A scheduler whose loop died can sit in ``LocalExecutor.end()`` for good (a CI run hung 15 min
    that way): its job row stops heartbeating while the process lives. The watchdog reads Airflow's
    own ``job`` table and says why it is hung; a row from an earlier scheduler does not count."""
    from datetime import datetime, timedelta, timezone

    import sqlalchemy
    from airflow.jobs.job import Job

    from app.local_airflow import SchedulerWatchdog, scheduler_health

    url = f"sqlite:///{tmp_path / 'airflow.db'}"
    Job.__table__.create(sqlalchemy.create_engine(url))
    watchdog = SchedulerWatchdog(url, threshold_s=120)
    now = datetime.now(timezone.utc)
    started = now - timedelta(minutes=20)
    assert watchdog.why_hung(started, now) is None  # no job written yet: still starting
    assert scheduler_health(watchdog, now) == "scheduler: no job written yet (starting)"

    def add(state, start, heartbeat, job_type="SchedulerJob"):
        with watchdog.engine.begin() as conn:
            conn.execute(Job.__table__.insert().values(
                job_type=job_type, state=state, start_date=start, latest_heartbeat=heartbeat))

    add("running", started - timedelta(hours=1), started - timedelta(hours=1))  # an earlier scheduler's row
    add("running", started, now - timedelta(minutes=30), job_type="TriggererJob")
    assert watchdog.why_hung(started, now) is None
    add("running", started + timedelta(seconds=3), now - timedelta(seconds=20))
    assert watchdog.why_hung(started, now) is None  # heartbeats 20 s ago: healthy
    hung = watchdog.why_hung(started, now + timedelta(minutes=10))
    assert hung is not None and hung.startswith("no scheduler heartbeat for 620 s"), hung
    assert scheduler_health(watchdog, now) == "scheduler: running, last heartbeat 20 s ago"
    assert scheduler_health(watchdog, now + timedelta(minutes=10)) == (
        "scheduler: running, last heartbeat 620 s ago (the supervisor restarts a scheduler silent for 120 s)")
    add("failed", started + timedelta(seconds=60), now)
    assert watchdog.why_hung(started, now) == "its scheduler job is failed but the process is still up"


def test_kill_tree_kills_a_process_and_its_children():
    import psutil

    from app.local_airflow import kill_tree

    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; "
                               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                               "print('up', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "up"
    child = psutil.Process(parent.pid).children()[0]
    kill_tree(parent.pid)
    assert parent.wait(10) == -9
    child.wait(10)
    assert not child.is_running()


def test_the_supervisor_kills_and_restarts_a_hung_scheduler(tmp_path, monkeypatch, capsys):
    """A scheduler the watchdog finds hung is killed with its children and restarted like a failed one."""
    from app import local_airflow

    killed: list[int] = []

    class FakeProcess(FakeComponent):
        started = []

        def poll(self):
            self.polls += 1
            # the first scheduler never exits by itself (hung); the second one exits at its 3rd look,
            # which ends this test's session
            if self.name == "scheduler" and self is self.started[-1] and _names(self.started).count("scheduler") == 2 \
                    and self.polls > 2:
                self.returncode = 0
            return self.returncode

    class FakeWatchdog:
        looks = 0

        def why_hung(self, since):
            FakeWatchdog.looks += 1
            return "no scheduler heartbeat for 600 s (> 120 s)" if FakeWatchdog.looks == 1 else None

    def fake_kill_tree(pid):
        killed.append(pid)
        next(p for p in FakeProcess.started if p.pid == pid).returncode = -9

    clock = iter(range(0, 10_000, 20))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(local_airflow.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(local_airflow.SchedulerWatchdog, "configured", classmethod(lambda cls: FakeWatchdog()))
    monkeypatch.setattr(local_airflow, "kill_tree", fake_kill_tree)
    monkeypatch.setattr(local_airflow.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(local_airflow.time, "sleep", lambda s: None)
    monkeypatch.setattr(local_airflow.signal, "signal", lambda *a: None)
    assert local_airflow.supervise() == 1  # ended by the second scheduler's clean exit
    first_scheduler = next(p for p in FakeProcess.started if p.name == "scheduler")
    assert killed == [first_scheduler.pid]
    assert _names(FakeProcess.started).count("scheduler") == 2
    out = capsys.readouterr().out
    assert f"scheduler (pid {first_scheduler.pid}) is hung: no scheduler heartbeat for 600 s (> 120 s); killing it" in out
    assert "scheduler exited with -9; restarting it (1 of 3)" in out


@pytest.mark.airflow
def test_a_scheduler_that_stops_heartbeating_is_killed_and_restarted(tmp_path):
    """The real thing: the scheduler of a local Airflow is frozen (SIGSTOP: alive, no heartbeat, like one
    stuck in ``LocalExecutor.end()`` after its loop died); the supervisor kills it and starts a new one."""
    import signal

    import psutil

    from app.local_airflow import LocalAirflow, SchedulerWatchdog, session_members

    # health-check threshold 10 s: the watchdog acts after 40 s without a heartbeat (2 min by default)
    af = LocalAirflow(tmp_path / "airflow", env={"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10"})
    af.start()
    try:
        watchdog = SchedulerWatchdog(f"sqlite:///{af.home / 'airflow.db'}", threshold_s=40)

        def schedulers() -> list:
            return [p for p in session_members(af.proc.pid)
                    if "scheduler" in " ".join(p.cmdline()) and p.ppid() == af.proc.pid]

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (schedulers() and watchdog.newest_job(_long_ago())):
            time.sleep(2)
        first = schedulers()
        assert len(first) == 1 and watchdog.newest_job(_long_ago())[0] == "running", af.log_path.read_text()[-3000:]
        first[0].send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not [p for p in schedulers() if p.pid != first[0].pid]:
            time.sleep(2)
        log = af.log_path.read_text()
        assert f"scheduler (pid {first[0].pid}) is hung: no scheduler heartbeat for" in log, log[-3000:]
        assert "scheduler exited with -9; restarting it (1 of 3)" in log
        assert not psutil.pid_exists(first[0].pid) or first[0].status() == psutil.STATUS_ZOMBIE
        deadline = time.monotonic() + 120  # the new scheduler writes its own job row and heartbeats
        while time.monotonic() < deadline:
            state, heartbeat = watchdog.newest_job(_long_ago())
            if state == "running" and watchdog.why_hung(_long_ago()) is None and heartbeat > _since(30):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"no healthy scheduler after the restart: {watchdog.newest_job(_long_ago())}")
    finally:
        assert af.stop() == []


def _long_ago():
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) - timedelta(hours=1)


def _since(seconds: float):
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) - timedelta(seconds=seconds)

"""A real local Airflow (API server, scheduler, DAG processor, triggerer, LocalExecutor, SQLite) as
ONE session of processes: ``mmkg airflow start|stop|status``, the demo's UI and the end-to-end tests.

Why not ``airflow standalone``: stopped with SIGTERM it leaves its components running; it echoes
every task log on its console; it prints the admin password into whatever collects its output; and
its scheduler and triggerer serve task logs on every interface (ports 8793/8794: Airflow has no
host setting for them). Here a small supervisor (``python -m app.local_airflow supervise``) is the
leader of a new session and process group and runs:

- ``airflow api-server`` (``[api] host`` = 127.0.0.1), ``airflow dag-processor``;
- ``airflow scheduler --skip-serve-logs`` and ``airflow triggerer --skip-serve-logs``;
- Airflow's own log-server app on 127.0.0.1 only (``serve-logs``), on the configured ports, with
  ``[core] hostname_callable`` = :func:`loopback_hostname` so the API server fetches logs there.

Everything writes to ``$AIRFLOW_HOME/logs/mmkg-airflow.log`` (mode 0600: the API server prints the
admin password there the first time; the password itself is in
``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``, also 0600). Stopping signals the
group, waits, then kills whatever is left *in the session* - task runners make their own process
groups (Airflow's supervisor calls setpgid) but never leave the session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: This module, as ``python -m`` runs it (``__name__`` is "__main__" there).
MODULE = "app.local_airflow"
#: The supervisor's pid (= session id = process group id), under AIRFLOW_HOME.
PID_FILE = "mmkg-airflow.pid"
LOG_FILE = Path("logs") / "mmkg-airflow.log"
#: Airflow components the supervisor runs: name -> ``airflow`` arguments.
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def loopback_hostname() -> str:
    """``[core] hostname_callable`` of the local Airflow: task instances record 127.0.0.1, where the
    loopback log server listens, as their host (the machine's name may resolve elsewhere)."""
    return "127.0.0.1"


def _json_out(stdout: str):
    """The JSON document of a CLI's output (Airflow may log warnings on stdout before it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(("[", "{")):
            return json.loads(line)
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    """Open (creating) a file only its owner can read; an existing file is narrowed to 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# -- the session: who is in it, and stopping it ---------------------------------------------------
def session_members(sid: int) -> list:
    """Live (non-zombie) processes of session ``sid``, as psutil.Process objects."""
    import psutil

    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.pid) == sid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_session(sid: int, timeout: float = 30) -> list:
    """SIGTERM the group ``sid``, wait up to ``timeout`` s for its session to empty, then SIGKILL
    every member left. Returns the members still alive afterwards (empty when all went)."""
    try:
        os.killpg(sid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and session_members(sid):
        time.sleep(0.5)
    for proc in session_members(sid):
        try:
            proc.kill()
        except Exception:  # gone meanwhile
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and session_members(sid):
        time.sleep(0.2)
    return session_members(sid)


# -- the supervisor (runs inside the session) -----------------------------------------------------
def passwords_file(home: Path) -> Path:
    """Where Airflow's simple auth manager keeps the generated admin password."""
    configured_file = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    return Path(configured_file) if configured_file else Path(home) / "simple_auth_manager_passwords.json.generated"


#: Restarts of one failed component before the supervisor gives up and stops the session.
MAX_RESTARTS = 3
#: Seconds between two looks at the scheduler's heartbeat, and how stale it may grow before the
#: supervisor takes the scheduler for hung: this many times ``[scheduler] scheduler_health_check_threshold``
#: (30 s by default: 2 min; generous, since a loaded 2-core machine delays heartbeats, not stops them).
WATCHDOG_INTERVAL = 15
HEARTBEAT_GRACE = 4


class SchedulerWatchdog:
    """Finds a scheduler process that lives on after its loop died.

    When the scheduler loop raises (e.g. SQLite's ``FOREIGN KEY constraint failed`` race between
    ``backfill create`` and the scheduler creating a new run's task instances), Airflow's scheduler
    does not exit: its ``finally`` waits in ``LocalExecutor.end()`` for the executor's workers, and
    the process can sit there for good, alive but heartbeating no more, so ``supervise`` (which
    restarts components that *exit*) saw nothing and every queued run stayed queued. The watchdog
    reads the newest ``SchedulerJob`` row of the metadata database (SQLite or PostgreSQL, through
    Airflow's own ``Job`` table) started since the process did; when its heartbeat is older than
    ``HEARTBEAT_GRACE`` health-check thresholds, or the job has ended while the process lives on,
    it kills the process and its children (SIGKILL: a SIGTERM lands in the same ``finally``), and
    ``supervise`` restarts it like any failed component.
    """

    def __init__(self, sql_alchemy_conn: str, threshold_s: float):
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(sql_alchemy_conn)
        self.threshold_s = threshold_s

    @classmethod
    def configured(cls) -> "SchedulerWatchdog":
        from airflow.configuration import conf

        return cls(conf.get("database", "sql_alchemy_conn"),
                   HEARTBEAT_GRACE * conf.getint("scheduler", "scheduler_health_check_threshold"))

    def newest_job(self, since: datetime) -> tuple[str | None, datetime | None] | None:
        """(state, latest heartbeat) of the newest scheduler job started at or after ``since``, if any."""
        import sqlalchemy
        from airflow.jobs.job import Job

        job = Job.__table__
        query = (sqlalchemy.select(job.c.state, job.c.latest_heartbeat)
                 .where(job.c.job_type == "SchedulerJob", job.c.start_date >= since)
                 .order_by(job.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.state, row.latest_heartbeat)

    def silent_for(self, heartbeat: datetime | None, now: datetime | None = None) -> float | None:
        """Seconds since ``heartbeat`` when that is more than the watchdog allows, else None (also for a job
        that has not heartbeat yet)."""
        if heartbeat is None:
            return None
        age = ((now or datetime.now(timezone.utc)) - heartbeat).total_seconds()
        return age if age > self.threshold_s else None

    def why_hung(self, started: datetime, now: datetime | None = None) -> str | None:
        """Why the scheduler process started at ``started`` is hung, or None while it is healthy (or its
        job has not been written yet)."""
        job = self.newest_job(started - timedelta(seconds=5))
        if job is None:
            return None
        state, heartbeat = job
        now = now or datetime.now(timezone.utc)
        if state != "running":
            return f"its scheduler job is {state} but the process is still up"
        silent = self.silent_for(heartbeat, now)
        if silent is not None:
            return f"no scheduler heartbeat for {silent:.0f} s (> {self.threshold_s:.0f} s)"
        return None


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant it has (the LocalExecutor's workers, their task runners)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def stop_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets: a supervisor's cue to stop its components (it keeps running)."""
    event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: event.set())
    return event


def supervise(extra: dict[str, list[str]] | None = None) -> int:
    """Run the components (``COMPONENTS`` and ``extra``: name -> ``airflow`` arguments, e.g. the Celery
    workers of ``app.cluster``) until SIGTERM/SIGINT or until one of them exits for good (cleanly, or
    failing more than ``MAX_RESTARTS`` times); then stop the rest."""
    components = {**COMPONENTS, **(extra or {})}
    os.close(_open_private(passwords_file(Path(os.environ["AIRFLOW_HOME"])), os.O_WRONLY | os.O_CREAT))  # Airflow opens it "a+": keeps 0600
    env = {**os.environ, "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{MODULE}.loopback_hostname"}
    stop = stop_signals()
    children = {
        name: subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env)
        for name, args in components.items()
    }
    children["log-server"] = subprocess.Popen([sys.executable, "-m", MODULE, "serve-logs"], env=env)
    print(f"[mmkg airflow] started {', '.join(f'{n} (pid {p.pid})' for n, p in children.items())}", flush=True)
    code = 0
    restarts = dict.fromkeys(children, 0)
    try:
        watchdog = SchedulerWatchdog.configured()
    except Exception as e:  # e.g. the database driver missing: run unwatched rather than not at all
        print(f"[mmkg airflow] no scheduler watchdog (cannot read the metadata database: {e})", flush=True)
        watchdog = None
    scheduler_started = datetime.now(timezone.utc)
    next_look = time.monotonic() + WATCHDOG_INTERVAL
    while not stop.is_set():
        if watchdog is not None and time.monotonic() >= next_look:
            next_look = time.monotonic() + WATCHDOG_INTERVAL
            scheduler = children["scheduler"]
            try:
                hung = scheduler.poll() is None and watchdog.why_hung(scheduler_started)
            except Exception as e:  # the metadata database busy or down: look again next time
                print(f"[mmkg airflow] could not read the scheduler's heartbeat: {e}", flush=True)
                hung = None
            if hung:
                print(f"[mmkg airflow] scheduler (pid {scheduler.pid}) is hung: {hung}; killing it", flush=True)
                kill_tree(scheduler.pid)
                scheduler.wait()
        exited = {n: p.returncode for n, p in children.items() if p.poll() is not None}
        # A component that fails (e.g. the scheduler loop hitting a transient SQLite race, which it
        # does not survive) is restarted, as a service manager would, up to MAX_RESTARTS times each;
        # one that exits cleanly, or fails too often, stops the whole session.
        failed = {n: rc for n, rc in exited.items() if rc != 0 and restarts[n] < MAX_RESTARTS}
        if exited and failed == exited:
            for name, rc in failed.items():
                restarts[name] += 1
                print(f"[mmkg airflow] {name} exited with {rc}; restarting it ({restarts[name]} of {MAX_RESTARTS})",
                      flush=True)
                argv = [sys.executable, "-m", "airflow", *components[name]] if name in components else \
                    [sys.executable, "-m", MODULE, "serve-logs"]
                children[name] = subprocess.Popen(argv, env=env)
                if name == "scheduler":
                    scheduler_started = datetime.now(timezone.utc)
        elif exited:
            print(f"[mmkg airflow] {exited} exited; stopping the others", flush=True)
            code = 1
            break
        time.sleep(1)
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 25
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("[mmkg airflow] stopped", flush=True)
    return code


def serve_logs() -> int:
    """Airflow's task-log server app (the one ``airflow scheduler``/``triggerer`` would start on every
    interface) on 127.0.0.1, on the worker and the triggerer log ports."""
    import asyncio

    import uvicorn
    from airflow.configuration import conf
    from airflow.utils.serve_logs.log_server import get_app

    ports = sorted({conf.getint("logging", "worker_log_server_port"), conf.getint("logging", "trigger_log_server_port")})
    app = get_app()
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, log_level="warning"))
        for port in ports
    ]
    print(f"[mmkg airflow] task-log server on {', '.join(f'127.0.0.1:{p}' for p in ports)}", flush=True)

    async def _all():
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(_all())
    return 0


# -- the handle the CLI, the demo and the tests use ------------------------------------------------
class LocalAirflow:
    """Start/stop one local Airflow for ``home``. ``port=None`` takes ``[api] port`` when ``home`` is
    the configured AIRFLOW_HOME (``mmkg airflow start``), else a free port; the log-server ports are
    free ports too for a throw-away home (tests), so two runs on one machine never collide."""

    #: The module whose ``supervise`` command leads the session (``app.cluster`` adds PostgreSQL, Redis, workers).
    supervisor_module = MODULE

    def __init__(self, home: Path, env: dict[str, str] | None = None, port: int | None = None, private_ports: bool = True):
        self.home = Path(home)
        self.port = port or free_port()
        self.env = {
            **os.environ,
            **(env or {}),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        if private_ports:
            self.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            self.env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
        self.proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.home / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.home / PID_FILE

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def init(self) -> str:
        """``mmkg airflow init`` for this home (database, secrets, pool, marker)."""
        proc = subprocess.run([sys.executable, "-m", "app.cli", "airflow", "init"], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"mmkg airflow init exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def running_pid(self) -> int | None:
        """The supervisor's pid when one runs for this home (pid file and a live session leader)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            return pid if os.getsid(pid) == pid else None
        except ProcessLookupError:
            return None

    def start(self, timeout: float = 240, init: bool = True) -> None:
        if (pid := self.running_pid()) is not None:
            raise RuntimeError(f"a local Airflow already runs for {self.home} (pid {pid}): mmkg airflow stop")
        self.home.mkdir(parents=True, exist_ok=True)
        if init:
            self.init()
        log_fd = _open_private(self.log_path)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.supervisor_module, "supervise"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self.pid_path.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()  # whatever it left in its session, and the pid file
                raise RuntimeError(f"the local Airflow exited with {code}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"Airflow API server did not listen on 127.0.0.1:{self.port} in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 30) -> list:
        """Stop the whole session; returns what could not be stopped (empty normally)."""
        pid = self.proc.pid if self.proc is not None else self.running_pid()
        if pid is None:
            return []
        left = stop_session(pid, timeout)
        if self.proc is not None:
            try:
                self.proc.wait(5)  # reap our child
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self.pid_path.unlink(missing_ok=True)
        return left

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.cli("dags", "list", "-o", "json", check=False)
            if out.returncode == 0 and any(d.get("dag_id") == dag_id for d in _json_out(out.stdout)):
                return
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout}s")

    def backfill(self, dag_id: str, from_date: str, to_date: str, *extra: str, attempts: int = 5) -> None:
        """``airflow backfill create``; retried while the DAG processor is still writing the DAG."""
        for attempt in range(attempts):
            try:
                self.cli("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date, *extra)
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(5)

    def runs(self, dag_id: str) -> list[dict]:
        out = self.cli("dags", "list-runs", dag_id, "-o", "json")
        return _json_out(out.stdout)

    def wait_for_runs(self, dag_id: str, logical_dates: set[str], timeout: float = 900) -> list[dict]:
        """Wait until the runs at these logical dates (YYYY-MM-DD) have finished; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:  # no scheduler: nothing will finish
                raise RuntimeError(f"the local Airflow stopped (exit {self.proc.returncode}) while waiting for "
                                   f"runs {sorted(logical_dates)} of {dag_id}; see {self.log_path}")
            runs = [r for r in self.runs(dag_id) if (r.get("logical_date") or "")[:10] in logical_dates]
            if len(runs) >= len(logical_dates) and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(5)
        raise TimeoutError(f"runs {sorted(logical_dates)} of {dag_id} did not finish in {timeout}s: {self.runs(dag_id)}")


@contextmanager
def local_airflow(home: Path, env: dict[str, str] | None = None):
    af = LocalAirflow(home, env)
    af.start()
    try:
        yield af
    finally:
        af.stop()


# -- `mmkg airflow start|stop|status` for the configured AIRFLOW_HOME -------------------------------
def configured() -> LocalAirflow:
    """The local Airflow of this shell's AIRFLOW_HOME, on ``[api] port`` and the configured log ports."""
    from airflow.configuration import conf

    return LocalAirflow(Path(os.environ["AIRFLOW_HOME"]), port=conf.getint("api", "port"), private_ports=False)


def running_session(service, nothing: str) -> tuple[int, list] | None:
    """``status`` of a supervised session: its pid and member processes, or None (said: ``no <nothing>``)."""
    pid = service.running_pid()
    if pid is None:
        print(f"no {nothing}")
        return None
    return pid, session_members(pid)


def stop_cli(service, title: str, nothing: str) -> int:
    """``stop`` of a supervised session (``LocalAirflow`` or ``app.cluster.Cluster``): stop the whole process
    group, say which session went, and exit 1 naming any process left. ``nothing``: what runs when none does."""
    pid = service.running_pid()
    if pid is None:
        print(f"no {nothing}")
        return 0
    left = service.stop()
    if left:
        print(f"could not stop: {[(p.pid, p.name()) for p in left]}", file=sys.stderr)
        return 1
    print(f"{title} stopped (session {pid}: no process left)")
    return 0


def cli(action: str) -> int:
    af = configured()
    if action == "start":
        af.start()
        print(f"Airflow running (session {af.proc.pid}): UI {af.url}/ , user admin")
        print(f"  password: {passwords_file(af.home)} (0600)")
        print(f"  log:      {af.log_path}")
        print("  stop:     mmkg airflow stop")
        return 0
    if action == "stop":
        return stop_cli(af, "Airflow", f"local Airflow runs for {af.home}")
    session = running_session(af, f"local Airflow runs for {af.home}")
    if session is None:
        return 3
    pid, members = session
    print(f"Airflow running (session {pid}, {len(members)} processes): UI {af.url}/ , log {af.log_path}")
    try:
        print(f"  {scheduler_health(SchedulerWatchdog.configured())}")
    except Exception as e:
        print(f"  scheduler: heartbeat unreadable ({e})")
    return 0


def scheduler_health(watchdog: SchedulerWatchdog, now: datetime | None = None) -> str:
    """One line on the newest scheduler job's heartbeat (what the supervisor's watchdog reads), for ``status``."""
    job = watchdog.newest_job(datetime.min.replace(tzinfo=timezone.utc))
    if job is None:
        return "scheduler: no job written yet (starting)"
    state, heartbeat = job
    if heartbeat is None:
        return f"scheduler: {state}, no heartbeat yet"
    age = ((now or datetime.now(timezone.utc)) - heartbeat).total_seconds()
    if state == "running" and watchdog.silent_for(heartbeat, now) is None:
        return f"scheduler: running, last heartbeat {age:.0f} s ago"
    return (f"scheduler: {state}, last heartbeat {age:.0f} s ago (the supervisor restarts a scheduler silent for "
            f"{watchdog.threshold_s:.0f} s)")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "supervise":
        sys.exit(supervise())
    if command == "serve-logs":
        sys.exit(serve_logs())
    print("usage: python -m app.local_airflow {supervise|serve-logs}", file=sys.stderr)
    sys.exit(2)

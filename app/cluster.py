"""Airflow on CeleryExecutor on this machine, for real: ``mmkg cluster start|stop|status|airflow``.

PostgreSQL (the metadata database and Celery's result backend) and Redis (the broker) are the Debian
packages ``bin/setup --cluster`` installs; no system service is used. ``mmkg cluster start`` runs its
own servers with their data under ``$MMKG_CLUSTER_HOME`` (default ``$MMKG_HOME/cluster``), bound to
127.0.0.1 only, with authentication: PostgreSQL takes SCRAM passwords only (the ``airflow`` role, and an
admin role for bootstrapping), Redis ``requirepass``. The passwords are generated at the first start into
``secrets/`` (folder 0700, files 0600), never committed and never put on a command line or in the
environment: Airflow reads its database and broker URLs with ``*_CMD`` options that ``cat`` those files.

One session of processes, led by ``python -m app.cluster supervise``:

- ``postgres`` (as root, inside a user namespace that maps root to the ``postgres`` account: PostgreSQL
  refuses to run as root, and the data stays under ``MMKG_HOME`` without opening ``/root`` to others);
- ``redis-server`` with a generated 0600 config file;
- after both answer: the ``airflow`` role and database, then ``mmkg airflow init`` (migrations, secrets,
  the ``gpu`` pool, the marker Variable) against PostgreSQL;
- ``app.local_airflow``'s supervisor with the Celery executor: API server (127.0.0.1; Celery workers
  run tasks through its Task Execution API), scheduler, DAG processor, triggerer, the loopback log
  server, and two Celery workers: ``default@`` on the default queue and ``gpu@`` on queue ``gpu``
  (``MMKG_GPU_QUEUE``), with as many processes as the ``gpu`` pool has slots (1).

Stopping signals the leader only: it stops Airflow first (workers, scheduler, ...), then PostgreSQL (fast
shutdown) and Redis, then exits; whatever is still in the session afterwards is killed.

Ports (PostgreSQL, Redis, API server, the two log-server ports) are free ports picked at the first start
and kept in ``cluster.json``; ``MMKG_CLUSTER_{POSTGRES,REDIS,API}_PORT`` override them.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets as _secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.local_airflow import (LocalAirflow, free_port, passwords_file, running_session, session_members, stop_cli,
                               stop_session, stop_signals)

MODULE = "app.cluster"
PORTS = ("postgres", "redis", "api", "worker_log", "trigger_log")
PORT_ENV = {"postgres": "MMKG_CLUSTER_POSTGRES_PORT", "redis": "MMKG_CLUSTER_REDIS_PORT", "api": "MMKG_CLUSTER_API_PORT"}
#: Per-install passwords (generated) and the URLs Airflow reads through its *_CMD options (derived).
PASSWORDS = ("postgres_admin", "postgres_airflow", "redis")
PG_ADMIN, PG_ROLE, PG_DATABASE = "mmkg_admin", "airflow", "airflow"


def default_home() -> Path:
    from mmkg.settings import mmkg_home

    return Path(os.environ.get("MMKG_CLUSTER_HOME") or mmkg_home() / "cluster").expanduser()


# -- files ------------------------------------------------------------------------------------------
def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def secrets_dir(home: Path) -> Path:
    return home / "secrets"


def password(home: Path, name: str) -> str:
    """The install's password ``name``, generated on first use (URL-safe: it goes into URLs as is)."""
    path = secrets_dir(home) / name
    if not path.exists():
        _write_private(path, _secrets.token_urlsafe(32))
    return path.read_text(encoding="utf-8").strip()


def resolve_ports(home: Path) -> dict[str, int]:
    """The cluster's ports: MMKG_CLUSTER_*_PORT, else those of the last start, else free ports now."""
    path = home / "cluster.json"
    try:
        known = json.loads(path.read_text())["ports"]
    except (FileNotFoundError, KeyError, ValueError):
        known = {}
    ports = {}
    for name in PORTS:
        env = os.environ.get(PORT_ENV.get(name, ""), "")
        ports[name] = int(env) if env else int(known.get(name) or free_port())
    if ports != known:
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"ports": ports}, indent=2) + "\n")
    return ports


def cat_cmd(path: Path) -> str:
    return f"cat {shlex.quote(str(path))}"


# -- PostgreSQL -------------------------------------------------------------------------------------
def pg_bindir() -> Path:
    """The newest PostgreSQL server binaries (Debian: /usr/lib/postgresql/<major>/bin), or MMKG_PG_BINDIR."""
    if os.environ.get("MMKG_PG_BINDIR"):
        return Path(os.environ["MMKG_PG_BINDIR"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    which = shutil.which("postgres")
    if which:
        return Path(which).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: run `bin/setup --cluster` (or set MMKG_PG_BINDIR)")


def as_unprivileged(argv: list[str]) -> list[str]:
    """PostgreSQL will not run as root. As root, run it in a user namespace whose only user (the
    ``postgres`` account, else ``nobody``) is root outside: it is not root to PostgreSQL, yet owns the
    data directory under MMKG_HOME, so nothing on the machine needs to be opened to another user."""
    if os.geteuid() != 0:
        return argv
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        account = pwd.getpwnam("nobody")
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    return [unshare, "--user", f"--map-user={account.pw_uid}", f"--map-group={account.pw_gid}", *argv]


def initdb(home: Path) -> bool:
    """Create the PostgreSQL cluster under ``home/postgres`` once (SCRAM passwords only); True if created."""
    data = home / "postgres"
    if (data / "PG_VERSION").exists():
        return False
    if data.exists() and any(data.iterdir()):
        raise RuntimeError(f"{data} exists without PG_VERSION: not a PostgreSQL data directory; move it away")
    password(home, "postgres_admin")
    argv = as_unprivileged([
        str(pg_bindir() / "initdb"), "-D", str(data), "-U", PG_ADMIN, "--auth=scram-sha-256",
        f"--pwfile={secrets_dir(home) / 'postgres_admin'}", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
    ])
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"initdb exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return True


def postgres_argv(home: Path, port: int) -> list[str]:
    return as_unprivileged([
        str(pg_bindir() / "postgres"), "-D", str(home / "postgres"),
        "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
        "-c", "unix_socket_directories=",  # TCP on loopback only: no socket file in a shared folder
        "-c", "password_encryption=scram-sha-256",
    ])


def _pg_connect(port: int, user: str, pw: str, dbname: str):
    import psycopg2

    return psycopg2.connect(host="127.0.0.1", port=port, user=user, password=pw, dbname=dbname, connect_timeout=5)


def bootstrap_database(home: Path, port: int) -> str:
    """The ``airflow`` role (password from secrets/, set again at every start) and its database."""
    from psycopg2 import sql

    conn = _pg_connect(port, PG_ADMIN, password(home, "postgres_admin"), "postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_ROLE,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(PG_ROLE), sql.Literal(password(home, "postgres_airflow"))))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                    sql.Identifier(PG_DATABASE), sql.Identifier(PG_ROLE)))
                return f"role {PG_ROLE!r} {verb.lower()}d, database {PG_DATABASE!r} created"
    finally:
        conn.close()
    return f"role {PG_ROLE!r} {verb.lower()}d, database {PG_DATABASE!r} exists"


# -- Redis ------------------------------------------------------------------------------------------
def redis_config(home: Path, port: int) -> Path:
    """Redis's config (0600: it holds ``requirepass``), rewritten at every start."""
    folder = home / "redis"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "redis.conf"
    _write_private(path, "\n".join([
        "# written by `mmkg cluster start` (app/cluster.py); rewritten at every start",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"port {port}",
        f"requirepass {password(home, 'redis')}",
        f"dir \"{folder}\"",
        "daemonize no",
        "supervised no",
        'logfile ""',
        # A broker: queued messages are not kept across restarts (Airflow's scheduler re-queues or
        # fails what was lost, see [scheduler] task_queued_timeout).
        'save ""',
        "appendonly no",
        "",
    ]))
    return path


def _wait(what: str, probe, deadline: float, proc: subprocess.Popen, stopping) -> None:
    last = None
    while time.monotonic() < deadline:
        if stopping():
            raise InterruptedError(f"stopped while waiting for {what}")
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        try:
            probe()
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer in time: {last}")


# -- the environment of every Airflow process of the cluster ----------------------------------------
def write_urls(home: Path, ports: dict[str, int]) -> None:
    """The URLs with passwords that Airflow reads (0600 files, rewritten at every start: ports may move)."""
    pg = f"{PG_ROLE}:{password(home, 'postgres_airflow')}@127.0.0.1:{ports['postgres']}/{PG_DATABASE}"
    folder = secrets_dir(home)
    _write_private(folder / "sql_alchemy_conn", f"postgresql+psycopg2://{pg}")
    _write_private(folder / "result_backend", f"db+postgresql+psycopg2://{pg}")
    _write_private(folder / "broker_url", f"redis://:{password(home, 'redis')}@127.0.0.1:{ports['redis']}/0")


def airflow_env(home: Path, ports: dict[str, int]) -> dict[str, str]:
    folder = secrets_dir(home)
    return {
        "MMKG_CLUSTER_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # *_CMD: the URL (with its password) is read from the 0600 file by each process, never
        # held in the environment that task processes inherit.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": cat_cmd(folder / "sql_alchemy_conn"),
        "AIRFLOW__CELERY__BROKER_URL_CMD": cat_cmd(folder / "broker_url"),
        "AIRFLOW__CELERY__RESULT_BACKEND_CMD": cat_cmd(folder / "result_backend"),
        # Redis redelivers a task not acknowledged within this time (Celery acks late): longer than the
        # longest execution_timeout of the DAGs (12 h, mmkg_train), as Airflow's 24 h default is.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_log"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_log"]),
    }


#: Variables that would override the *_CMD options above (Airflow reads VAR before VAR_CMD).
_SHADOWING = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
              "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET", "AIRFLOW__CELERY__BROKER_URL_SECRET",
              "AIRFLOW__CELERY__RESULT_BACKEND_SECRET")


def worker_concurrency() -> tuple[int, int]:
    """Processes of the default-queue worker and of the gpu worker. The defaults give 3 + 1 = 4 task slots,
    [core] parallelism of airflow.cfg, which LocalExecutor runs with; the gpu worker matches the pool's 1 slot."""
    return (int(os.environ.get("MMKG_CLUSTER_WORKER_CONCURRENCY", "3")),
            int(os.environ.get("MMKG_CLUSTER_GPU_WORKER_CONCURRENCY", "1")))


def worker_components() -> dict[str, list[str]]:
    """The two Celery workers, as ``airflow`` arguments (``app.local_airflow.supervise`` runs them)."""
    from airflow.configuration import conf

    default_queue = conf.get("operators", "default_queue")
    gpu_queue = os.environ.get("MMKG_GPU_QUEUE", "gpu")
    default_n, gpu_n = worker_concurrency()
    # --skip-serve-logs: a worker's own log server binds every interface; the loopback one serves these logs.
    return {
        "worker-default": ["celery", "worker", "-q", default_queue, "-H", "default@%h", "-c", str(default_n),
                           "--skip-serve-logs"],
        "worker-gpu": ["celery", "worker", "-q", gpu_queue, "-H", "gpu@%h", "-c", str(gpu_n), "--skip-serve-logs"],
    }


# -- the supervisor (runs inside the session) -------------------------------------------------------
def supervise() -> int:
    home = Path(os.environ["MMKG_CLUSTER_HOME"])
    ports = json.loads((home / "cluster.json").read_text())["ports"]
    stop = stop_signals()
    say = lambda line: print(f"[mmkg cluster] {line}", flush=True)  # noqa: E731
    procs: dict[str, subprocess.Popen] = {}
    code = 0
    try:
        procs["postgres"] = subprocess.Popen(postgres_argv(home, ports["postgres"]))
        _wait("PostgreSQL", lambda: _pg_connect(ports["postgres"], PG_ADMIN, password(home, "postgres_admin"), "postgres").close(),
              time.monotonic() + 60, procs["postgres"], stop.is_set)
        say(f"PostgreSQL on 127.0.0.1:{ports['postgres']} (pid {procs['postgres'].pid}): {bootstrap_database(home, ports['postgres'])}")
        procs["redis"] = subprocess.Popen(["redis-server", str(home / "redis" / "redis.conf")])

        def _ping():
            import redis

            redis.Redis(host="127.0.0.1", port=ports["redis"], password=password(home, "redis"), socket_timeout=2).ping()

        _wait("Redis", _ping, time.monotonic() + 30, procs["redis"], stop.is_set)
        say(f"Redis on 127.0.0.1:{ports['redis']} (pid {procs['redis'].pid})")
        init = subprocess.run([sys.executable, "-m", "app.cli", "airflow", "init"], capture_output=True, text=True)
        print(init.stdout + init.stderr[-3000:], end="", flush=True)
        if init.returncode != 0:
            raise RuntimeError(f"mmkg airflow init exited with {init.returncode}")
        if not stop.is_set():
            procs["airflow"] = subprocess.Popen([sys.executable, "-m", MODULE, "airflow"])
            say(f"Airflow (CeleryExecutor) supervisor pid {procs['airflow'].pid}")
        while not stop.is_set():
            exited = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            if exited:
                say(f"{exited} exited; stopping the others")
                code = 1
                break
            time.sleep(1)
    except InterruptedError:
        pass
    except Exception as exc:
        say(f"failed: {exc}")
        code = 1
    # Airflow first (its workers and scheduler still talk to both servers), then the servers.
    if (af := procs.get("airflow")) is not None and af.poll() is None:
        af.terminate()
        try:
            af.wait(45)
        except subprocess.TimeoutExpired:
            af.kill()
    if (pg := procs.get("postgres")) is not None and pg.poll() is None:
        pg.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, checkpoints
    if (rd := procs.get("redis")) is not None and rd.poll() is None:
        rd.terminate()
    deadline = time.monotonic() + 30
    for name in ("postgres", "redis"):
        if (proc := procs.get(name)) is not None:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    say("stopped")
    return code


# -- the handle the CLI and the tests use -----------------------------------------------------------
class Cluster(LocalAirflow):
    """The Celery cluster of ``home`` (default ``$MMKG_CLUSTER_HOME``): a LocalAirflow whose session also
    runs PostgreSQL, Redis and the Celery workers; its Airflow home is ``home/airflow``. ``env`` is added
    to every process's environment (e.g. a Neo4j connection, the staging folder)."""

    supervisor_module = MODULE

    def __init__(self, home: Path | None = None, env: dict[str, str] | None = None):
        self.cluster_home = Path(home or default_home())
        self.cluster_home.mkdir(parents=True, exist_ok=True)
        self.ports = resolve_ports(self.cluster_home)
        super().__init__(self.cluster_home / "airflow", env={**(env or {}), **airflow_env(self.cluster_home, self.ports)},
                         port=self.ports["api"], private_ports=False)
        for name in _SHADOWING:
            self.env.pop(name, None)

    def prepare(self) -> list[str]:
        """Secrets, the PostgreSQL cluster (once), Redis's config and the URL files: before every start."""
        lines = []
        for name in PASSWORDS:
            password(self.cluster_home, name)
        lines.append(f"secrets: {', '.join(PASSWORDS)} in {secrets_dir(self.cluster_home)} (0600)")
        if initdb(self.cluster_home):
            lines.append(f"PostgreSQL cluster created in {self.cluster_home / 'postgres'}")
        redis_config(self.cluster_home, self.ports["redis"])
        write_urls(self.cluster_home, self.ports)
        busy = [f"{name} {port}" for name, port in self.ports.items() if not _port_free(port)]
        if busy:
            raise RuntimeError(f"ports in use on 127.0.0.1: {', '.join(busy)} (set MMKG_CLUSTER_*_PORT, or edit "
                               f"{self.cluster_home / 'cluster.json'})")
        return lines

    def start(self, timeout: float = 420, init: bool = False) -> None:
        """Prepare, then start the session; returns when the API server listens (PostgreSQL, Redis and
        `mmkg airflow init` come first, inside the session)."""
        if (pid := self.running_pid()) is not None:
            raise RuntimeError(f"the cluster of {self.cluster_home} already runs (pid {pid}): mmkg cluster stop")
        self.prepare()
        super().start(timeout=timeout, init=False)

    def stop(self, timeout: float = 120) -> list:
        """SIGTERM the leader (it stops Airflow, then the servers, in order); kill what is left after ``timeout``."""
        pid = self.proc.pid if self.proc is not None else self.running_pid()
        if pid is None:
            return []
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and session_members(pid):
            time.sleep(0.5)
        left = stop_session(pid, 10) if session_members(pid) else []
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self.pid_path.unlink(missing_ok=True)
        return left

    def worker_stats(self) -> dict[str, dict]:
        """Tasks each Celery worker has run since it started (``celery inspect stats``), by worker name."""
        code = ("import json; from airflow.providers.celery.executors.celery_executor_utils import app; "
                "s = app.control.inspect(timeout=5).stats() or {}; "
                "print('JSON' + json.dumps({k: v.get('total', {}) for k, v in s.items()}))")
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"celery inspect failed:\n{proc.stderr[-3000:]}")
        return json.loads(next(line[4:] for line in proc.stdout.splitlines() if line.startswith("JSON")))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- `mmkg cluster ...` -----------------------------------------------------------------------------
def cli(action: str, rest: list[str] | None = None) -> int:
    cluster = Cluster()
    if action == "airflow":  # the airflow CLI against the cluster (its database, its executor)
        os.execvpe(sys.executable, [sys.executable, "-m", "airflow", *(rest or [])], cluster.env)
    if action == "start":
        for line in cluster.prepare():
            print(f"[mmkg cluster] {line}")
        cluster.start()
        p = cluster.ports
        print(f"Cluster running (session {cluster.proc.pid}), all on 127.0.0.1:")
        print(f"  Airflow UI   {cluster.url}/ , user admin, password in {passwords_file(cluster.home)} (0600)")
        print(f"  PostgreSQL   port {p['postgres']} (role {PG_ROLE}), Redis port {p['redis']}; passwords in "
              f"{secrets_dir(cluster.cluster_home)}")
        print("  workers      default@ (queue default), gpu@ (queue gpu); they start within a minute")
        print(f"  log          {cluster.log_path}")
        print("  airflow CLI  mmkg cluster airflow <args>   (e.g. backfill create --dag-id mmkg_ingest ...)")
        print("  stop         mmkg cluster stop")
        return 0
    if action == "stop":
        return stop_cli(cluster, "Cluster", f"cluster runs for {cluster.cluster_home}")
    session = running_session(cluster, f"cluster runs for {cluster.cluster_home}")
    if session is None:
        return 3
    pid, members = session
    names = sorted({_role(p) for p in members} - {""})
    print(f"Cluster running (session {pid}, {len(members)} processes: {', '.join(names)})")
    print(f"  ports {json.dumps(cluster.ports)}; UI {cluster.url}/ ; log {cluster.log_path}")
    return 0


def _role(proc) -> str:
    try:
        line = " ".join(proc.cmdline())
    except Exception:
        return ""
    for key, name in (("celery worker -q gpu", "worker-gpu"), ("celery worker", "worker-default"), ("api-server", "api-server"), ("api_server", "api-server"),
                      ("dag-processor", "dag-processor"), ("scheduler", "scheduler"), ("triggerer", "triggerer"),
                      ("serve-logs", "log-server"), ("redis-server", "redis"), ("postgres", "postgres")):
        if key in line:
            return name
    return ""


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "supervise":
        sys.exit(supervise())
    if command == "airflow":
        from app import local_airflow

        sys.exit(local_airflow.supervise(extra=worker_components()))
    print("usage: python -m app.cluster {supervise|airflow}", file=sys.stderr)
    sys.exit(2)

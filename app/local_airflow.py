"""A real local Airflow (``airflow standalone``: API server, scheduler, DAG processor, triggerer)
on SQLite, for backfills and the end-to-end tests.

``airflow standalone`` leaves its children running when it gets SIGTERM, so it is started as the
leader of its own process group and the whole group is stopped. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


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


class LocalAirflow:
    def __init__(self, home: Path, env: dict[str, str] | None = None, port: int | None = None):
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
        # The API server signs task tokens that the scheduler's workers present: all components
        # must share one secret, or every task fails with "Invalid auth token".
        self.env.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(32))
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate")
        log = open(self.home / "standalone.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.proc.returncode}; see {self.home}/standalone.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"Airflow API server did not listen on 127.0.0.1:{self.port} in {timeout}s")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:  # children that outlived their parent: the group still has them
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

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

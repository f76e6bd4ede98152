"""`mmkg demo` is readable: one line per task and the run report on the terminal, Airflow's own
output in a log file whose path it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.neo4j, pytest.mark.airflow]
ROOT = Path(__file__).resolve().parent.parent


def test_demo_prints_a_line_per_task_and_sends_airflow_logs_to_a_file(neo4j_driver, staging_dir, tmp_path):
    # As bin/demo runs it (its own process, its own terminal); a day without a partition is quick.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "demo", "2026-10-31"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    log = tmp_path / "airflow" / "logs" / "mmkg-demo.log"
    assert lines[0] == f"Airflow and task logs: {log}"
    progress = [line.split()[0] for line in lines if line.startswith("    ") and line.split()[-1] == "s"]
    assert progress == ["plan", "stage_posts", "report"]  # no shard: the mapped tasks never ran
    assert any("dt=2026-10-31: no posts (empty or missing partition)" in line for line in lines)
    # Before: hundreds of Airflow log lines per day on the terminal. Now they are in the file.
    assert len(lines) < 40, proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    text = log.read_text()
    assert "[DAG TEST] starting task_id=plan" in text and "EMPTY interval" in text
    assert (log.stat().st_mode & 0o777) == 0o600

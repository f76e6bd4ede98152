"""What machine a benchmark ran on: written beside every number the benchmarks record."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def save_and_announce(result: dict, out: Path) -> None:
    """Write a benchmark's ``result`` (with ``command``, ``machine``, ``load_average_before`` and ``_after``) as
    JSON to ``out`` and print the two header lines every benchmark summary starts with."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"# {result['command']}")
    print(f"machine: {result['machine']['cpu']}, {result['machine']['logical_cpus']} logical CPUs; load average "
          f"before {result['load_average_before'][0]:.1f}, after {result['load_average_after'][0]:.1f}")

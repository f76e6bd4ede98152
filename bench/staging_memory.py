"""Peak Python memory of ``stage_posts`` over a large synthetic interval (``tracemalloc``).

    python -m bench.staging_memory --days 3 --posts-per-day 20000

Writes a landing directory of ``--days`` JSONL partitions (posts of about 300 characters, no
images) into a temporary folder, stages the interval once under ``tracemalloc`` and prints the
peak of traced allocations and the wall time. Only public pipeline calls are used
(``plan_interval``, ``stage_posts``), so the same script measures an older checkout too: run it
with that checkout first on ``PYTHONPATH``. Results: ``bench/results/staging_memory.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path


def write_landing(root: Path, days: int, per_day: int) -> list[str]:
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    names = []
    filler = "Marta Silva signed with Lisbon Falcons today, a three-year deal #LisbonFalcons @falcons "
    for d in range(days):
        day = (start + timedelta(days=d)).date().isoformat()
        names.append(day)
        folder = root / f"dt={day}"
        folder.mkdir(parents=True)
        with open(folder / "posts.jsonl", "w", encoding="utf-8") as out:
            for i in range(per_day):
                post = {"id": f"{day}-{i:07d}", "text": f"{filler * 3}post {i}", "created_at": f"{day}T10:00:00+00:00",
                        "author": f"user{i % 997}", "lang": "en", "source": "bench"}
                out.write(json.dumps(post) + "\n")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--posts-per-day", type=int, default=20000)
    parser.add_argument("--shard-size", type=int, default=200)
    args = parser.parse_args(argv)

    from extraction.pipeline import plan_interval, stage_posts
    from mmkg.settings import REPO_ROOT, PipelineSettings

    with tempfile.TemporaryDirectory(prefix="mmkg-staging-memory-") as tmp:
        root = Path(tmp)
        days = write_landing(root / "landing", args.days, args.posts_per_day)
        settings = PipelineSettings(landing_dir=root / "landing", staging_dir=root / "staging",
                                    ontology_path=REPO_ROOT / "ontology" / "ontology.yaml", shard_size=args.shard_size)
        start = datetime.fromisoformat(days[0]).replace(tzinfo=timezone.utc)
        # Warm up on a one-post landing first: the imports stage_posts does on first use (readers,
        # Pillow, pyarrow kernels) are ~30 MiB of traced allocations that have nothing to do with posts.
        write_landing(root / "warm", 1, 1)
        warm = PipelineSettings(landing_dir=root / "warm", staging_dir=root / "warm-staging",
                                ontology_path=settings.ontology_path, shard_size=args.shard_size)
        stage_posts(plan_interval("warm", start, start + timedelta(days=1), settings=warm), warm)
        plan = plan_interval("bench", start, start + timedelta(days=args.days), settings=settings)
        tracemalloc.start()
        baseline, _ = tracemalloc.get_traced_memory()
        began = time.perf_counter()
        shards, counts = stage_posts(plan, settings)
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"{args.days} days x {args.posts_per_day} posts ({counts['posts']} staged in {len(shards)} shards): "
          f"peak traced {(peak - baseline) / 2**20:.1f} MiB above the start, {took:.1f} s under tracemalloc")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Extraction-stage benchmark: MG-VMoE typing + relation extraction over synthetic posts, next to
the bare encoder forward passes over the same inputs (the bound), and peak memory.

    python -m bench.extraction_benchmark [--sizes 1000 10000] [--shard-size 200] [--threads 2]

Each size runs in a fresh process (so peak RSS is that run's own), streaming the posts in shards
as the DAG does. Per post: ~3 mentions (person, organisation, place) and one distinct image
(64x64 PNG, generated). The stage time covers everything ``type_mentions`` + ``extract_relations``
do (tokenising, both encoders, the MG-VMoE heads, candidates, thresholds); the bound is the text
encoder over each post's text once plus, where a checkpoint's scores read images (``MGVMoEExtractor.reads_images``;
the shipped ones do not), the image encoder over each post's image, batched the same way (what "encode once"
must cost at least). For reference it also times what the text encoder
would cost with entity markers, one sequence per mention and per candidate pair (the reference
model's input, ``text_input="markers"``). Warm-up: one shard, not timed. Writes
bench/results/extraction_benchmark.json and prints the ratio (bound / stage) on its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Fastest image batch for EfficientNet-Lite0 on this 2-core CPU (measured: 1 -> 11.3, 8 -> 10.6,
#: 32 -> 21.0 ms/image), so the bound is the encoders at their best.
IMAGE_BATCH = 8
RESULTS = Path(__file__).resolve().parent / "results" / "extraction_benchmark.json"
PEOPLE = ["Marta Silva", "Jon Park", "Kofi Mensah", "Ana Costa", "Lena Vogel", "Ravi Menon", "Sofia Marin", "Tomas Berg"]
ORGS = ["Lisbon Falcons", "Seoul Tigers", "Helix Dynamics", "Corvid Labs", "Glass Owls", "Riverside Rovers"]
PLACES = ["Lisbon", "Busan", "Accra", "Bergen", "Kyoto", "Oslo", "Durban", "Porto"]
TEMPLATES = [
    "Big news: {p} signed with {o} today, the fans in {c} are thrilled! #transfers",
    "{p} spoke about {o} at the press event in {c} 🎤 what a night",
    "Spotted {p} wearing the new {o} kit around {c} this morning 📸",
]


def synthetic_shards(n: int, shard_size: int, image_dir: Path, seed: int = 0):
    """Yield (posts, mentions) shards; images are written as they are needed (streaming)."""
    from PIL import Image

    from mmkg.records import ImageRef, Mention, Post

    rng = random.Random(seed)
    for start in range(0, n, shard_size):
        posts, mentions = [], []
        for i in range(start, min(n, start + shard_size)):
            p, o, c = rng.choice(PEOPLE), rng.choice(ORGS), rng.choice(PLACES)
            text = rng.choice(TEMPLATES).format(p=p, o=o, c=c)
            pid = f"bench-{i}"
            img_path = image_dir / f"{i}.png"
            Image.new("RGB", (64, 64), (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(img_path)
            digest = hashlib.sha256(img_path.read_bytes()).hexdigest()
            img = ImageRef(str(img_path), "ok", digest, str(img_path), 64, 64)
            posts.append(Post(pid, text, "2026-11-01T00:00:00+00:00", images=(img,)))
            for surface, det in ((p, "spacy"), (o, "spacy"), (c, "spacy")):
                s = text.index(surface)
                mentions.append(Mention(pid, s, s + len(surface), surface, det))
        yield posts, mentions


def child(n: int, shard_size: int, threads: int, entity_checkpoint: str = "", relation_checkpoint: str = "") -> dict:
    import torch

    torch.set_num_threads(threads)
    from extraction.mg_vmoe import MGVMoEExtractor, window
    from extraction.zero_shot import relation_candidates
    from mmkg.settings import PipelineSettings
    from models.modeling import marked_text

    ontology = PipelineSettings.from_env().label_set()
    ex = MGVMoEExtractor(**({"entity_checkpoint": entity_checkpoint} if entity_checkpoint else {}),
                         **({"relation_checkpoint": relation_checkpoint} if relation_checkpoint else {}))
    tmp = Path(tempfile.mkdtemp(prefix="mmkg-bench-extract-"))
    warm = tmp / "warm"
    warm.mkdir()
    for posts, mentions in synthetic_shards(shard_size, shard_size, warm, seed=99):
        by_id = {p.id: p for p in posts}
        ex.extract_relations(by_id, ex.type_mentions(by_id, mentions, ontology), ontology)

    stage_s = bound_s = marked_s = 0.0
    warm_stats = dict(ex.stats)
    n_mentions = n_pairs = n_relations = 0
    rss_after_shard = []
    img_dir = tmp / "images"
    img_dir.mkdir()
    from mmkg.images import load_image_rgb

    for posts, mentions in synthetic_shards(n, shard_size, img_dir):
        by_id = {p.id: p for p in posts}
        t0 = time.perf_counter()
        typed = ex.type_mentions(by_id, mentions, ontology)
        relations = ex.extract_relations(by_id, typed, ontology)
        stage_s += time.perf_counter() - t0
        n_mentions += len(mentions)
        n_relations += len(relations)

        # The bound: each post's text and image once through the bare encoders, batched the same way.
        t0 = time.perf_counter()
        with torch.inference_mode():
            texts = sorted((p.text for p in posts), key=len)
            for k in range(0, len(texts), ex.batch_size):
                ex.text_encoder.encode_plain(texts[k : k + ex.batch_size])
            if ex.reads_images:  # the images count in the bound only where a checkpoint's scores read them
                images = [load_image_rgb(p.images[0].path) for p in posts]
                for k in range(0, len(images), IMAGE_BATCH):
                    ex.image_encoder(ex.image_encoder.preprocess(images[k : k + IMAGE_BATCH]))
        bound_s += time.perf_counter() - t0

        # Reference: the text encoder over one marked sequence per mention and per pair (no encode-once).
        met_texts = [marked_text(*window(by_id[m.post_id].text, [(m.start, m.end)]), "met") for m in mentions]
        pairs = relation_candidates(by_id, typed, ontology)
        n_pairs += len(pairs)
        mre_texts = [
            marked_text(*window(by_id[h.mention.post_id].text, [(h.mention.start, h.mention.end), (t.mention.start, t.mention.end)]), "mre")
            for h, t, _ in pairs
        ]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for texts, task in ((met_texts, "met"), (mre_texts, "mre")):
                texts = sorted(texts, key=len)
                for k in range(0, len(texts), ex.batch_size):
                    ex.text_encoder(texts[k : k + ex.batch_size], task)
        marked_s += time.perf_counter() - t0
        for p in posts:
            Path(p.images[0].path).unlink()
        rss_after_shard.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    return {
        "posts": n, "mentions": n_mentions, "pairs": n_pairs, "relations": n_relations,
        "stage_s": stage_s, "bound_s": bound_s, "marked_text_encoder_s": marked_s,
        "posts_encoded": ex.stats["posts_encoded"] - warm_stats.get("posts_encoded", 0),
        "images_read_by_the_checkpoints": ex.reads_images,
        "images_encoded": ex.stats["images_encoded"] - warm_stats.get("images_encoded", 0),
        "windowed_spans": ex.stats["windowed_spans"] - warm_stats.get("windowed_spans", 0),
        "stage_posts_per_s": n / stage_s, "bound_posts_per_s": n / bound_s,
        "ratio_of_bound": bound_s / stage_s,
        "peak_rss_mib": rss_after_shard[-1], "rss_mib_after_first_shard": rss_after_shard[0],
        "torch_threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--shard-size", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS), help="results JSON (a .txt summary is written beside it)")
    ap.add_argument("--entity-checkpoint", default="", help="MG-VMoE entity checkpoint (default the shipped one)")
    ap.add_argument("--relation-checkpoint", default="", help="MG-VMoE relation checkpoint (default the shipped one)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT" + json.dumps(child(args.child, args.shard_size, args.threads, args.entity_checkpoint,
                                           args.relation_checkpoint)))
        return 0
    from bench.machine import describe

    runs, lines = [], []
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.extraction_benchmark", "--child", str(n), "--shard-size", str(args.shard_size),
             "--threads", str(args.threads), "--entity-checkpoint", args.entity_checkpoint,
             "--relation-checkpoint", args.relation_checkpoint],
            capture_output=True, text=True, check=True,
        )
        runs.append(json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[6:]))
        r = runs[-1]
        lines.append(f"{n:>6} posts: stage {r['stage_posts_per_s']:.1f} posts/s, encoders alone {r['bound_posts_per_s']:.1f} posts/s "
              f"({100 * r['ratio_of_bound']:.0f}% of bound), peak RSS {r['peak_rss_mib']:.0f} MiB "
              f"(after first shard {r['rss_mib_after_first_shard']:.0f} MiB); text encoder alone with markers, one "
              f"sequence per mention/pair: {r['marked_text_encoder_s']:.1f} s vs the whole stage {r['stage_s']:.1f} s")
        print(lines[-1], flush=True)
    result = {
        "machine": describe() | {"device": "CPU only"},
        "command": "python -m bench.extraction_benchmark " + " ".join(argv or sys.argv[1:]),
        "runs": runs,
    }
    last = runs[-1]
    lines.append(f"peak RSS growth {runs[0]['posts']} -> {last['posts']} posts: "
                 f"{last['peak_rss_mib'] - runs[0]['peak_rss_mib']:+.0f} MiB")
    lines.append(f"ratio stage/encoder-bound throughput at {last['posts']} posts: {last['ratio_of_bound']:.2f}")
    print("\n".join(lines[-2:]))
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")  # the printed summary, beside the JSON
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What fine-tuning the text encoder would cost here: one MG-VMoE run with MiniLM in the training graph.

    python -m bench.zero_shot.finetune_cost            # writes finetune_cost.md beside this file

Times a full fine-tuning step (forward, backward, AdamW) of the packaged all-MiniLM-L6-v2 on batches of 16
marked MNRE training samples, and an inference batch, on one torch thread (what each benchmark process uses);
medians after warm-up. From them: one epoch over split seed 0's 1,224 training samples, and one validation
pass (3,482 validation samples + 1,000 ``None`` pairs, read both ways for pair-level selection), which with a
fine-tuned encoder must re-encode every epoch instead of reading the feature cache.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench.machine import describe
from models.data import load_split
from models.modeling import TextTokenEncoder, marked_text, words_to_text

HERE = Path(__file__).resolve().parent
#: Training runs of ``bench.zero_shot`` per instance and training seed: shipped 4 + twin 4 + reference 2 +
#: text-only 2 + concat 2 candidates, and 4 ablations.
RUNS_PER_INSTANCE = 18


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zero_shot.finetune_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "finetune_cost.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    encoder = TextTokenEncoder.from_path("")
    split = load_split("mnre-seed0")
    texts = [marked_text(*words_to_text(s.tokens, s.spans), "mre") for s in split.train[: 16 * args.batches]]
    batches = [encoder.tokenizer(texts[16 * k: 16 * (k + 1)], padding=True, truncation=True, max_length=128,
                                 return_tensors="pt") for k in range(args.batches)]
    model = encoder.model
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    train_s = []
    for batch in batches:
        started = time.perf_counter()
        loss = model(**batch).last_hidden_state[:, 0].pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_s.append(time.perf_counter() - started)
    model.eval()
    infer_s = []
    with torch.inference_mode():
        for batch in batches:
            started = time.perf_counter()
            model(**batch)
            infer_s.append(time.perf_counter() - started)
    step, infer = statistics.median(train_s[args.warmup:]), statistics.median(infer_s[args.warmup:])
    epoch = len(split.train) / 16 * step
    validation = 2 * (len(split.val) + len(split.negatives)) / 16 * infer
    machine = describe()
    lines = ["# Fine-tuning the text encoder: what one run would cost on this machine", "",
             f"`python -m bench.zero_shot.finetune_cost` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
             f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs, load average at the end "
             f"{machine['load_average'][0]:.1f} (other jobs shared the cores), torch threads 1, "
             f"medians of {args.batches - args.warmup} batches after {args.warmup} warm-up.", "",
             "| what | seconds |", "|---|---|",
             f"| fine-tuning step, batch 16, full MiniLM (forward, backward, AdamW) | {step:.3f} |",
             f"| inference batch of 16 | {infer:.3f} |",
             f"| one epoch over MNRE split seed 0's {len(split.train)} training samples | {epoch:.0f} |",
             f"| one validation pass ({len(split.val)} + {len(split.negatives)} `None` pairs, both readings) | "
             f"{validation:.0f} |",
             f"| one 8-epoch run (epochs + validations) | {8 * (epoch + validation):.0f} |", "",
             "With frozen features the same run takes about a minute (`results.md`, run times). The nested benchmark "
             f"trains {RUNS_PER_INSTANCE} runs per instance and training seed (candidates of 5 trained systems, 4 "
             f"ablations) over 8 instances: with the encoder fine-tuned that is about "
             f"{RUNS_PER_INSTANCE * 8 * 8 * (epoch + validation) / 3600:.0f} hours per training seed on one thread. "
             "LoRA adapters cut the optimizer state, not the forward and backward passes, which dominate.", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

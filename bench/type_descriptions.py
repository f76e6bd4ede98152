"""``python -m bench.type_descriptions``: do other wordings of the shipped entity type descriptions type better?

Dev sets only (Twitter-2017 valid, WNUT-16 dev): each variant's ontology types the *gold* spans (no detector,
so only the typing differs) with the shipped MG-VMoE typer, per-shard agreement as in the pipeline; the
share of gold mentions whose type maps to the gold coarse type (Person->PER, Location->LOC,
Organization->ORG, anything else MISC; an abstention counts wrong). Prompted by the demo's mistyped
names (issue 10), chosen on these dev sets, never on a test set. Results: bench/results/type_descriptions_dev.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from mmkg.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "ontology" / "ontology.yaml"
PERSON = "a person, a real or fictional human being, such as an athlete, artist or politician"
ORG = "an organization such as a company, sports team, band, university or government body"
EVENT = "a named event such as a festival, tournament, award ceremony, concert or election"
LOCATION = "a geographic place such as a city, country, region, river or mountain"
#: variant -> {shipped description: replacement}
VARIANTS: dict[str, dict[str, str]] = {
    "shipped": {},
    "all three wordier": {
        PERSON: "a person, a real or fictional human being, such as an athlete, player, musician, artist, business "
                "leader or politician",
        ORG: "an organization such as a company, startup, sports team or club, band or music group, record label, "
             "university or government body",
        EVENT: "a named event such as a festival, tournament, conference, trade fair, award ceremony, concert or "
               "election"},
    "organization + event wordier": {
        ORG: "an organization such as a company, startup, sports team or club, band or music group, record label, "
             "university or government body",
        EVENT: "a named event such as a festival, tournament, conference, trade fair, award ceremony, concert or "
               "election"},
    "person wordier": {
        PERSON: "a person, a real or fictional human being, such as an athlete, player, musician, artist, business "
                "leader or politician"},
    "event + conference": {EVENT: "a named event such as a festival, tournament, conference, award ceremony, concert "
                                  "or election"},
    "organization + record label": {
        ORG: "an organization such as a company, sports team, band, record label, university or government body"},
    "location + town, state, island": {
        LOCATION: "a geographic place such as a city, town, country, state, region, island, river or mountain"},
    "location as where things happen": {
        LOCATION: "a geographic place where people live, travel or play, such as a city, country, region, river or "
                  "mountain"},
}
SETS = ("twitter2017-valid", "wnut16-dev")


def variant_file(name: str, folder: Path) -> Path:
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in VARIANTS[name].items():
        if f"description: {old}\n" not in text:
            raise ValueError(f"the shipped ontology no longer says {old!r}")
        text = text.replace(f"description: {old}\n", f"description: {new}\n")
    path = folder / f"{len(list(folder.iterdir()))}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.graph_quality.run import prepare_twitter
    from bench.graph_quality.scoring import coarse_type
    from extraction.mg_vmoe import MGVMoEExtractor
    from mmkg.ontology import load_ontology
    from mmkg.records import OTHER_TYPE, Mention

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="JSON of the per-type counts")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    extractor = MGVMoEExtractor()
    sets = {s: prepare_twitter(args.data, None, s) for s in SETS}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            ontology = load_ontology(variant_file(name, Path(tmp)))
            for s, d in sets.items():
                posts = {p.id: p for p in d["posts"]}
                gold = sorted(d["gold"])
                mentions = [Mention(pid, a, b, posts[pid].text[a:b], "gold") for pid, a, b, _ in gold]
                per: dict[str, Counter] = defaultdict(Counter)
                for (_, _, _, t), tm in zip(gold, extractor.type_mentions(posts, mentions, ontology)):
                    per[t]["ABSTAIN" if tm.entity_type == OTHER_TYPE else coarse_type(tm.entity_type)] += 1
                right = sum(per[t][t] for t in per)
                results.setdefault(name, {})[s] = {"accuracy": round(100 * right / len(gold), 1), "right": right,
                                                   "gold": len(gold), "by_gold_type": {t: dict(c) for t, c in per.items()}}
                print(f"{name:32s} {s:18s} {100 * right / len(gold):5.1f} ({right}/{len(gold)}) "
                      + " ".join(f"{t}:{100 * per[t][t] / sum(per[t].values()):.1f}" for t in sorted(per)), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"variants": VARIANTS, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How precise each relation of the shipped ontology is, by argument types, on development posts.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality.ontology_relations [--ontology PATH] [--out DIR]

The MNRE val file's posts whose text is in neither the train nor the test file (development data: the relation
checkpoint trained on the train file and no number reported as test reads these posts) go through the real
stages with the shipped detector, typer, relation checkpoint and decision rule under the *shipped* ontology
(``ontology/ontology.yaml``, or ``--ontology``). Each relation instance whose two entities are an annotated MNRE
pair of its post (names matched as ``bench.graph_quality`` matches them) is judged against the MNRE relation it
corresponds to: ``member_of`` /per/org/member_of, ``place_of_residence`` /per/loc/place_of_residence,
``present_in`` /per/misc/present_in, ``peer`` /per/per/peer (either order), ``located_in`` /org/loc/locate_at or
/misc/loc/held_on in the same direction, or /loc/loc/contain in the reverse one (the tail contains the head).
``created_by`` has no MNRE counterpart (its instances can only count as wrong here). Reported per (relation, head
type, tail type): instances on annotated pairs and the share that is right.

This is what the default label set was reviewed with (README: *The label set*): a relation's argument-type pair
that is much less precise than the rest costs a data team trust for little recall. MNRE annotates only some pairs,
and its labels are lenient one way and harsh the other (``bench.graph_quality.audit``), so each written instance is
also read against its post: two readers' verdicts (``audits/ontology-dev.json``, ``audits/ontology-dev.reader2.json``,
the audit's criterion, written apart from ``--list``'s listing), reported per row as the share each reader finds
stated, with their agreement. Writes ``ontology_relations.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.graph_quality.audit import AUDITS, agreement, by_instance, key as audit_key
from bench.graph_quality.run import CREATED_AT, RESULTS_DIR, probe_stamp, research_data, write_result

#: The two readers' verdict files on the instances this writes (``--list``), first reader first.
READERS = ("ontology-dev.json", "ontology-dev.reader2.json")

#: The MNRE relations each shipped relation is judged by (same direction unless said).
MNRE_COUNTERPARTS = {
    "member_of": {"/per/org/member_of"},
    "place_of_residence": {"/per/loc/place_of_residence"},
    "present_in": {"/per/misc/present_in"},
    "peer": {"/per/per/peer"},
    "located_in": {"/org/loc/locate_at", "/misc/loc/held_on"},
    "created_by": set(),
}
#: MNRE relations that state the shipped one with head and tail swapped.
MNRE_REVERSED = {"located_in": {"/loc/loc/contain"}}
SYMMETRIC = {"peer"}


def judge(relation: str, head: str, tail: str, annotations) -> bool:
    """Whether an annotation of the pair states ``relation`` from ``head`` to ``tail``."""
    for a in annotations:
        forward = (a.head_name, a.tail_name) == (head, tail)
        if a.relation in MNRE_COUNTERPARTS.get(relation, ()) and (forward or relation in SYMMETRIC):
            return True
        if a.relation in MNRE_REVERSED.get(relation, ()) and (a.head_name, a.tail_name) == (tail, head):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.graph_quality.scoring import build_mnre_posts, mnre_text
    from extraction.detection import EntityDetector
    from extraction.pipeline import extractor_for, readable_script
    from mmkg.identity import entity_name
    from mmkg.ontology import load_ontology
    from mmkg.records import Post
    from mmkg.settings import PipelineSettings
    from models.data import read_mnre

    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality.ontology_relations",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ontology", type=Path, default=None, help="default: the shipped one (MMKG_ONTOLOGY)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="print every written instance with its post text and stop")
    args = parser.parse_args(argv)
    data = research_data("mnre/mnre_val.txt")
    if data is None:
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ontology_path = args.ontology or PipelineSettings.from_env().ontology_path
    ontology = load_ontology(ontology_path)
    files, _ = read_mnre(data)
    elsewhere = {mnre_text(r["token"]) for r in files[0]} | {mnre_text(r["token"]) for r in files[2]}
    mnre_posts = [p for p in build_mnre_posts(files[1]) if p.text not in elsewhere]
    posts = {p.id: Post(id=p.id, text=p.text, created_at=CREATED_AT, source="mnre_val") for p in mnre_posts}
    texts = {pid: p.text for pid, p in posts.items()}
    mentions = [m for m in EntityDetector().detect(list(posts.values())) if readable_script(m.text)]
    extractor = extractor_for("mg-vmoe")
    typed = extractor.type_mentions(posts, mentions, ontology)
    relations = extractor.extract_relations(posts, typed, ontology)
    if args.list:
        for r in relations:
            print(json.dumps({"post_id": r.post_id, "relation": r.relation, "head_type": r.head.entity_type,
                              "tail_type": r.tail.entity_type, "head": entity_name(r.head.mention, texts),
                              "tail": entity_name(r.tail.mention, texts), "text": texts[r.post_id]}, ensure_ascii=False))
        return 0
    readers = [_verdicts(AUDITS / name) for name in READERS]
    annotations = defaultdict(list)
    for p in mnre_posts:
        annotations[p.id].extend(p.annotations)
    counts: Counter = Counter()
    pairs: list[dict] = []  # (first reader, second reader) on the instances both read
    for r in relations:
        head, tail = entity_name(r.head.mention, texts), entity_name(r.tail.mention, texts)
        key = f"{r.relation} ({r.head.entity_type}, {r.tail.entity_type})"
        counts[(key, "written")] += 1
        k = audit_key(r.post_id, r.relation, head, tail)
        for n, verdicts in enumerate(readers):
            if k in verdicts:
                for kk in (key, "all"):
                    counts[(kk, f"read_{n}")] += 1
                    counts[(kk, f"stated_{n}")] += verdicts[k]
        if all(k in v for v in readers) and readers:
            pairs.append({"stated": readers[0][k], "stated_2": readers[-1][k]})
        on = [a for a in annotations[r.post_id] if {a.head_name, a.tail_name} == {head, tail}]
        if on:
            right = judge(r.relation, head, tail, on)
            for k in (key, "all"):
                counts[(k, "annotated")] += 1
                counts[(k, "right")] += right
    rows = []
    for key in sorted({k for k, _ in counts if k != "all"}) + ["all"]:
        n, right = counts[(key, "annotated")], counts[(key, "right")]
        rows.append({"relation (head, tail)": key, "written": counts[(key, "written")] if key != "all" else len(relations),
                     "on_annotated_pairs": n, "right": right, "precision": round(100 * right / n, 1) if n else None,
                     **{f"stated_reader{i + 1}": _share(counts[(key, f"stated_{i}")], counts[(key, f"read_{i}")])
                        for i in range(len(readers))}})
    result = {**probe_stamp(t0), "ontology": str(ontology_path),
              "label_set_id": ontology.label_set_id, "posts": len(posts),
              "rows": rows, "readers": [str(AUDITS / n) for n in READERS if (AUDITS / n).is_file()],
              "agreement": agreement(pairs)}
    lines = ["# The shipped ontology's relations by argument types, on development posts", "",
             f"`python -m bench.graph_quality.ontology_relations` — {result['when']}, commit `{commit}`, ontology "
             f"`{ontology_path}` ({ontology.label_set_id}), {len(posts)} MNRE val-file posts in neither the train nor "
             f"the test file, wall {result['wall_s']} s. Definitions: `bench/graph_quality/ontology_relations.py`.", "",
             "Stated: of the written instances a reader read, the share whose post states them (the audit's criterion,"
             f" `bench/graph_quality/audit.py`); readers' agreement: {result['agreement']}.", "",
             "| relation (head, tail) | written | on annotated pairs | right (MNRE) | precision (MNRE) | stated, reader 1 | stated, reader 2 |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['relation (head, tail)']} | {r['written']} | {r['on_annotated_pairs']} | {r['right']} | "
              f"{r['precision']} | {r.get('stated_reader1', '–')} | {r.get('stated_reader2', '–')} |" for r in rows]
    write_result(args.out, "ontology_relations", result, "\n".join(lines))
    return 0


def _verdicts(path: Path) -> dict:
    """A reader's verdicts by instance (``audit.key``), empty when the file is absent."""
    if not path.is_file():
        return {}
    return {k: bool(v["stated"]) for k, v in by_instance(json.loads(path.read_text(encoding="utf-8"))).items()}


def _share(stated: int, read: int) -> str | None:
    return f"{stated} / {read} ({round(100 * stated / read, 1)})" if read else None


if __name__ == "__main__":
    raise SystemExit(main())

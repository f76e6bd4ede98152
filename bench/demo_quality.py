"""The demo's graph scored against the sample posts' gold entities.

    mmkg neo4j start && bin/demo          # on an emptied graph (README: the demo)
    python -m bench.demo_quality [--out bench/results]

Reads the graph the demo loaded (``kg_loader.writer.connect()``: the same settings as ``mmkg``) and
``sample_data/gold_entities.json`` (written by ``sample_data/generate.py`` from ``SAMPLE_ENTITIES``: every
person, team, place, event, company and product the valid sample posts name, with the ontology types that are
right for it and the hashtags and handles that stand for it). Only the sample posts' ``MENTIONS`` are read, so
other data in the store does not count.

Two views, as a data team reads the graph:

- **Entities** (issue 10's demo target: each sample person, team, place and event in one entity with its right
  type): for each gold entity, the graph entities its posts mention under any of its names. *right*: one node,
  a right type; *variant*: right type, but a hashtag or a short form ("aurora fest") is a second node, which
  entity resolution proposes as a merge; *split*: one name in two types; *mistyped*; *missing*.
- **Relation triples** (issue 15's demo target: the triples with the most evidence read as plausible facts):
  each triple of the sample posts against the facts the posts state (``SAMPLE_FACTS``; ``score_relations``).
- **Mentions per post** (entity level: a post mentions a gold entity when one of its ``MENTIONS`` goes to a
  node named by any of the entity's names): typed and untyped P/R/F1 over all annotated posts, and apart for
  the posts in English and those in other Latin-script languages (``lang`` of the post). A graph mention whose
  name is none of the post's gold entities is listed as *junk*.

The sample data is the demo's own: nothing in the pipeline was chosen on it, so it is a test, read last.
Writes ``demo_quality.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from bench.graph_quality.scoring import prf
from mmkg.identity import normalize_name

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "sample_data" / "gold_entities.json"
RESULTS_DIR = ROOT / "bench" / "results"
KINDS = ("person", "team", "place", "event", "organization", "product")

SAMPLE_TRIPLES = """
MATCH (h:Entity)-[r]->(t:Entity) WHERE r.relation IS NOT NULL
UNWIND r.post_ids AS post_id
WITH h, r, t, post_id WHERE post_id IN $post_ids
RETURN post_id, h.name AS head, r.relation AS relation, t.name AS tail, r.evidence_count AS evidence_count,
       r.max_score AS max_score
"""

SAMPLE_MENTIONS = """
MATCH (p:Post)-[m:MENTIONS]->(e:Entity) WHERE p.id IN $post_ids
RETURN p.id AS post_id, e.id AS entity_id, e.name AS name, e.type AS type
"""


def read_gold(path: Path = GOLD) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def score(gold: dict, rows: list[dict]) -> dict:
    """Both views from the sample posts' ``MENTIONS`` rows (post_id, entity_id, name, type)."""
    entities = {e["name"]: e for e in gold["entities"]}
    names = {e["name"]: {normalize_name(s) for s in e["surfaces"]} for e in gold["entities"]}
    by_name: dict[str, list[str]] = defaultdict(list)
    for entity, ns in names.items():
        for n in ns:
            by_name[n].append(entity)
    posts = gold["posts"]
    mentioned: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        mentioned[r["post_id"]].append(r)

    # Entities: the nodes each gold entity's own posts mention under one of its names.
    nodes: dict[str, dict[str, dict]] = defaultdict(dict)
    for pid, p in posts.items():
        for r in mentioned.get(pid, ()):
            for entity in by_name.get(r["name"], ()):
                if entity in p["entities"]:
                    node = nodes[entity].setdefault(r["entity_id"], {"name": r["name"], "type": r["type"], "posts": set()})
                    node["posts"].add(pid)
    entity_rows = []
    for name, e in entities.items():
        n_posts = sum(name in p["entities"] for p in posts.values())
        if not n_posts:
            continue
        found = sorted(nodes.get(name, {}).values(), key=lambda n: (-len(n["posts"]), n["name"], n["type"]))
        right = [n for n in found if n["type"] in e["types"]]
        canonical = normalize_name(name)
        types_of_name = {n["type"] for n in found if n["name"] == canonical}
        if not found:
            status = "missing"
        elif len(types_of_name) > 1 or len({n["type"] for n in found}) > 1:
            status = "split" if right else "mistyped"
        elif not right:
            status = "mistyped"
        elif len(found) > 1:
            status = "variant"
        else:
            status = "right"
        entity_rows.append({"name": name, "kind": e["kind"], "types": e["types"], "posts": n_posts, "status": status,
                            "nodes": [{**n, "posts": len(n["posts"])} for n in found]})

    # Mentions per post, entity level.
    groups = {"all": lambda p: True, "English": lambda p: p["lang"] == "en",
              "other Latin-script languages": lambda p: p["lang"] not in ("en", "ko", "ja")}
    counts = {g: defaultdict(int) for g in groups}
    junk = []
    for pid, p in posts.items():
        gold_here = set(p["entities"])
        found_typed, found_any, pred_typed, pred_any, pred_junk = set(), set(), 0, 0, 0
        for r in {(r["name"], r["type"]): r for r in mentioned.get(pid, ())}.values():
            matches = [e for e in by_name.get(r["name"], ()) if e in gold_here]
            pred_any += 1
            if not matches:
                pred_junk += 1
                junk.append({"post_id": pid, "lang": p["lang"], "name": r["name"], "type": r["type"]})
                continue
            found_any.update(matches)
            typed = [e for e in matches if r["type"] in entities[e]["types"]]
            if typed:
                found_typed.update(typed)
                pred_typed += 1
        for g, keep in groups.items():
            if keep(p):
                c = counts[g]
                c["posts"] += 1
                c["gold"] += len(gold_here)
                c["predicted"] += pred_any
                c["tp_typed_pred"] += pred_typed
                c["tp_untyped_pred"] += pred_any - pred_junk
                c["tp_typed_gold"] += len(found_typed)
                c["tp_untyped_gold"] += len(found_any)
    mentions = {}
    for g, c in counts.items():
        mentions[g] = {"posts": c["posts"], "gold": c["gold"], "predicted": c["predicted"],
                       "typed": prf(c["tp_typed_pred"], c["predicted"], c["tp_typed_gold"], c["gold"]),
                       "untyped": prf(c["tp_untyped_pred"], c["predicted"], c["tp_untyped_gold"], c["gold"])}
    by_status = defaultdict(int)
    target_kinds = ("person", "team", "place", "event")
    for row in entity_rows:
        by_status[row["status"]] += 1
    return {
        "entities": entity_rows,
        "entities_by_status": dict(sorted(by_status.items())),
        "target": {"kinds": list(target_kinds),
                   "right": sum(r["status"] == "right" for r in entity_rows if r["kind"] in target_kinds),
                   "right_or_variant": sum(r["status"] in ("right", "variant") for r in entity_rows
                                           if r["kind"] in target_kinds),
                   "of": sum(r["kind"] in target_kinds for r in entity_rows)},
        "mentions": mentions,
        "junk": junk,
    }


def score_relations(gold: dict, rows: list[dict], symmetric: frozenset[str] = frozenset({"peer"})) -> dict:
    """Relation triples of the sample posts against the facts each post states (``SAMPLE_FACTS``).

    ``rows``: one per (triple, supporting post): post_id, head, relation, tail (graph names), evidence_count,
    max_score. A graph name stands for a gold entity of that post when it is one of the entity's names. An
    *instance* (a triple in one post) is right when that post states the fact (either order for a symmetric
    relation); a *triple* (head, relation, tail in the graph) is right when some sample post states its fact.
    Recall: the posts' facts stated by some instance."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for e in gold["entities"]:
        for n in {normalize_name(x) for x in e["surfaces"]}:
            by_name[n].append(e["name"])
    posts = gold["posts"]

    def key(h: str, rel: str, t: str) -> tuple:
        return (rel, *sorted((h, t))) if rel in symmetric else (rel, h, t)

    stated = {(pid, key(*f)) for pid, p in posts.items() for f in p.get("facts", ())}
    true_anywhere = {k for _, k in stated}
    instances, triples, found = [], {}, set()
    for r in rows:
        here = posts.get(r["post_id"], {}).get("entities", ())
        heads = [e for e in by_name.get(r["head"], ()) if e in here]
        tails = [e for e in by_name.get(r["tail"], ()) if e in here]
        keys = [key(h, r["relation"], t) for h in heads for t in tails]
        right = [k for k in keys if (r["post_id"], k) in stated]
        found.update((r["post_id"], k) for k in right)
        instances.append({**r, "right": bool(right)})
        t = triples.setdefault((r["head"], r["relation"], r["tail"]), {
            "head": r["head"], "relation": r["relation"], "tail": r["tail"], "evidence_count": r["evidence_count"],
            "max_score": round(float(r["max_score"]), 3), "right": False})
        g_heads = by_name.get(r["head"], ())
        g_tails = by_name.get(r["tail"], ())
        t["right"] = t["right"] or any(key(h, r["relation"], tl) in true_anywhere for h in g_heads for tl in g_tails)
    ranked = sorted(triples.values(), key=lambda t: (-t["evidence_count"], -t["max_score"], t["head"]))
    n_right = sum(t["right"] for t in ranked)
    per_post = prf(sum(i["right"] for i in instances), len(instances), len(found), len(stated))
    return {
        "facts": len(stated), "facts_found": len(found),
        "instances": len(instances), "instances_right": sum(i["right"] for i in instances),
        "triples": len(ranked), "triples_right": n_right,
        "instance_precision": per_post["precision"],
        "triple_precision": prf(n_right, len(ranked), 0, 0)["precision"], "fact_recall": per_post["recall"],
        "top10_right": sum(t["right"] for t in ranked[:10]),
        "triple_list": ranked,
    }


def render(result: dict, meta: dict) -> str:
    t = result["target"]
    lines = [
        "# The demo's graph against the sample posts' gold entities",
        "",
        f"`python -m bench.demo_quality` after `bin/demo` on an emptied graph — {meta['when']}, commit "
        f"`{meta['commit']}`. Gold: `sample_data/gold_entities.json` (`sample_data/generate.py`, `SAMPLE_ENTITIES`). "
        "Definitions: `bench/demo_quality.py`.",
        "",
        f"**People, teams, places and events in one entity with a right type: {t['right']} of {t['of']}** "
        f"({t['right_or_variant']} with a right type when a name variant, a merge candidate, is counted too). "
        f"All entities by status: {result['entities_by_status']}.",
        "",
        "| posts | P / R / F1 typed | P / R / F1 untyped | gold | graph mentions |",
        "|---|---|---|---|---|",
    ]
    for g, m in result["mentions"].items():
        ty, un = m["typed"], m["untyped"]
        lines.append(f"| {g} ({m['posts']}) | {ty['precision']} / {ty['recall']} / **{ty['f1']}** | "
                     f"{un['precision']} / {un['recall']} / {un['f1']} | {m['gold']} | {m['predicted']} |")
    lines += ["", "| kind | entity | right type | posts | status | graph entities (name: type, posts) |",
              "|---|---|---|---|---|---|"]
    for row in sorted(result["entities"], key=lambda r: (KINDS.index(r["kind"]), r["status"] != "right", r["name"])):
        nodes = "; ".join(f"{n['name']}: {n['type']}, {n['posts']}" for n in row["nodes"]) or "–"
        status = row["status"] if row["status"] == "right" else f"**{row['status']}**"
        lines.append(f"| {row['kind']} | {row['name']} | {'/'.join(row['types'])} | {row['posts']} | {status} | {nodes} |")
    rel = result.get("relations")
    if rel:
        lines += ["", f"**Relation triples**: {rel['triples_right']} of {rel['triples']} right (**{rel['triple_precision']}%**; "
                  f"right: some sample post states the fact); per post {rel['instances_right']} of {rel['instances']} "
                  f"instances right ({rel['instance_precision']}%: that post states it); {rel['facts_found']} of the posts' "
                  f"{rel['facts']} stated facts found (recall {rel['fact_recall']}%); the 10 with the most evidence (the "
                  f"demo's query): {rel['top10_right']} right.", "",
                  "| head | relation | tail | posts | best score | right |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['head']} | {t['relation']} | {t['tail']} | {t['evidence_count']} | {t['max_score']} | "
                  f"{'yes' if t['right'] else '**no**'} |" for t in rel["triple_list"]]
    lines += ["", "Junk: graph mentions that are none of their post's gold entities", "",
              "| post | lang | name | type |", "|---|---|---|---|"]
    lines += [f"| {j['post_id']} | {j['lang']} | {j['name']} | {j['type']} |" for j in result["junk"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import subprocess

    from kg_loader.writer import connect
    from mmkg.settings import PipelineSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    args = parser.parse_args(argv)
    gold = read_gold()
    with connect() as driver:
        rows = driver.execute_query(SAMPLE_MENTIONS, post_ids=list(gold["posts"]), result_transformer_=lambda r: r.data())
        triples = driver.execute_query(SAMPLE_TRIPLES, post_ids=list(gold["posts"]), result_transformer_=lambda r: r.data())
    if not rows:
        raise SystemExit("no sample post in the graph: run bin/demo first (README: the demo)")
    symmetric = frozenset(r.name for r in PipelineSettings.from_env().label_set().relation_types
                          if r.symmetric)
    result = {**score(gold, rows), "relations": score_relations(gold, triples, symmetric)}
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_quality.json").write_text(json.dumps({**meta, **result}, indent=1, default=sorted) + "\n")
    text = render(result, meta)
    (args.out / "demo_quality.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""bench.demo_quality: the demo graph's score against the sample posts' gold entities."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from bench.demo_quality import GOLD, score

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "sample_data" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_committed_gold_is_what_the_generator_writes():
    g = _generator()
    valid = g.DAY1 + g.DAY2 + g.DAY3 + g.DAY3_NDJSON_GZ + [obj for obj, reason in g.DAY3_PARQUET if reason is None]
    assert json.loads(GOLD.read_text(encoding="utf-8")) == json.loads(json.dumps(g.gold_entities(valid)))
    posts = {p["id"]: p for p in valid}
    # Longest surface first, whole words, hashtags and handles stand for their entity, invisible characters removed.
    assert g.gold_mentions(posts["1101-009"]["text"]) == ["Atlantic Cup", "Lisbon Falcons", "Riverside Rovers", "Porto"]
    assert g.gold_mentions(posts["1101-010"]["text"]) == ["Riverside Rovers", "Manchester", "Tom Adeyemi"]
    assert g.gold_mentions(posts["1102-027"]["text"]) == ["Sofia Marin", "Lucas Moreau", "Kyoto"]
    assert g.gold_mentions(posts["1102-011"]["text"]) == []  # Japanese: not annotated


GOLD_SMALL = {
    "entities": [
        {"name": "Porto", "types": ["Location"], "kind": "place", "surfaces": ["Porto"]},
        {"name": "Aurora Festival", "types": ["Event"], "kind": "event", "surfaces": ["Aurora Festival", "#AuroraFest"]},
        {"name": "Ana Costa", "types": ["Person"], "kind": "person", "surfaces": ["Ana Costa", "@anacosta10"]},
        {"name": "Hanbit Comets", "types": ["Organization"], "kind": "team", "surfaces": ["Hanbit Comets"]},
    ],
    "posts": {
        "a": {"lang": "en", "entities": ["Porto", "Aurora Festival"]},
        "b": {"lang": "pt", "entities": ["Ana Costa", "Aurora Festival"]},
        "c": {"lang": "en", "entities": ["Ana Costa", "Hanbit Comets"]},
    },
}


def row(post_id, name, type_):
    return {"post_id": post_id, "entity_id": f"{type_}:{name}", "name": name, "type": type_}


def test_score_statuses_and_mentions():
    rows = [row("a", "porto", "Organization"), row("a", "aurora festival", "Event"), row("a", "aurora fest", "Event"),
            row("b", "aurora festival de", "Event"), row("b", "ana costa", "Person"),
            row("c", "ana costa", "Person"), row("c", "anacosta10", "Organization")]
    result = score(GOLD_SMALL, rows)
    status = {r["name"]: r["status"] for r in result["entities"]}
    assert status == {"Porto": "mistyped", "Aurora Festival": "variant", "Ana Costa": "split", "Hanbit Comets": "missing"}
    assert result["target"] == {"kinds": ["person", "team", "place", "event"], "right": 0, "right_or_variant": 1, "of": 4}
    assert [(j["post_id"], j["name"]) for j in result["junk"]] == [("b", "aurora festival de")]
    m = result["mentions"]
    # all: gold 6; found untyped porto, aurora (a), ana costa (b), ana costa (c) = 4; typed 3 (porto mistyped)
    assert m["all"]["gold"] == 6 and m["all"]["predicted"] == 7
    assert m["all"]["untyped"]["recall"] == round(100 * 4 / 6, 1)
    assert m["all"]["typed"]["recall"] == 50.0
    # predictions right: a: porto(untyped only), aurora festival, aurora fest; b: ana costa; c: ana costa, anacosta10 (untyped)
    assert m["all"]["untyped"]["precision"] == round(100 * 6 / 7, 1)
    assert m["all"]["typed"]["precision"] == round(100 * 4 / 7, 1)
    assert m["other Latin-script languages"]["posts"] == 1 and m["English"]["posts"] == 2


def test_relation_triples_are_judged_against_the_facts_their_posts_state():
    from bench.demo_quality import score_relations

    gold = {**GOLD_SMALL, "posts": {
        "a": {"lang": "en", "entities": ["Ana Costa", "Aurora Festival", "Porto"],
              "facts": [["Ana Costa", "present_in", "Aurora Festival"], ["Aurora Festival", "located_in", "Porto"]]},
        "b": {"lang": "en", "entities": ["Ana Costa", "Aurora Festival"], "facts": []},
        "c": {"lang": "en", "entities": ["Ana Costa", "Hanbit Comets"], "facts": [["Ana Costa", "peer", "Hanbit Comets"]]},
    }}

    def t(pid, h, rel, tl, n=1, score=0.9):
        return {"post_id": pid, "head": h, "relation": rel, "tail": tl, "evidence_count": n, "max_score": score}

    rows = [t("a", "ana costa", "present_in", "aurora fest", 2), t("b", "anacosta10", "present_in", "aurora festival", 1),
            t("a", "porto", "located_in", "aurora festival", 1),  # the wrong direction
            t("c", "hanbit comets", "peer", "ana costa", 1)]  # symmetric: either order
    r = score_relations(gold, rows)
    assert (r["facts"], r["facts_found"]) == (3, 2)
    # instances: a/present_in right (alias of the festival), b/... not stated in b, a/located_in reversed, c/peer right
    assert (r["instances"], r["instances_right"]) == (4, 2)
    # triples: present_in (ana costa, aurora fest) right; (anacosta10, aurora festival) true in post a; reversed: wrong
    right = {(x["head"], x["tail"]): x["right"] for x in r["triple_list"]}
    assert right == {("ana costa", "aurora fest"): True, ("anacosta10", "aurora festival"): True,
                     ("porto", "aurora festival"): False, ("hanbit comets", "ana costa"): True}
    assert r["triple_list"][0]["head"] == "ana costa"  # the most evidence first

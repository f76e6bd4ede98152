"""``python -m bench.graph_quality``: real posts through the real stages into a throw-away Neo4j, and
the graph scored with Cypher against gold. See ``bench/graph_quality/__init__.py``."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from bench.graph_quality import graph, report
from bench.graph_quality.scoring import (
    ARGUMENT_TYPES,
    HEADLINE_MATCH,
    MATCH_MODES,
    MATCH_TITLES,
    SYMMETRIC_RELATIONS,
    build_mnre_posts,
    coarse_type,
    entity_coverage,
    example_spans,
    gold_pairs,
    leaked_texts,
    mnre_text,
    one_name_pairs,
    relation_name,
    score_entities,
    score_relations,
    spacy_ontology_type,
    split_leaked,
    WNUT_TO_COARSE,
    typed_allowed,
    typed_gold_spans,
    written_offsets,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CREATED_AT = "2018-01-01T00:00:00Z"  # the corpora carry no timestamps; every post gets this one

#: Systems: ``entity`` ones are scored on Twitter-2017, ``relation`` ones on MNRE.
SYSTEMS = {
    "mg-vmoe": {"entity": True, "relation": True},
    "label-similarity": {"entity": True, "relation": True},
    "spacy": {"entity": True, "relation": False},
    "mg-vmoe+keep-all": {"entity": False, "relation": True},
    "label-similarity+keep-all": {"entity": False, "relation": True},
}
EXTRACTORS = ("mg-vmoe", "label-similarity")

#: The two MNRE relation ontologies, both run on the same posts, mentions and typing; the first is the
#: headline (the product as configured: a user writes a relation with its argument types).
ONTOLOGIES = {
    "typed": "allowed (head, tail) types from the relation name's argument types (per->Person, org->Organization, "
             "loc->Location, misc->any of Event/Product/Location/Organization)",
    "any": "every relation allowed between any two entity types",
}
HEADLINE_ONTOLOGY = "typed"


# ------------------------------------------------------------------------------------------ data
#: The research data files the graph-quality benchmark reads, relative to ``MMKG_DATA``: what ``research_data()``
#: needs when a caller names nothing.
DATA_FILES = ("mnre/mnre_train.txt", "mnre/mnre_val.txt", "mnre/mnre_test.txt", "twitter2017/test.txt")


def research_data(*needed: str) -> Path | None:
    """The research data directory (``MMKG_DATA``) when it holds every ``needed`` path (relative to it; default
    ``DATA_FILES``); else None, after printing what is missing: every entry point of this package then skips
    with exit status 0 (the data is not the project's and is not shipped)."""
    from mmkg.settings import research_data_dir

    data = research_data_dir()
    needed = needed or DATA_FILES
    missing = list(needed) if data is None else [p for p in needed if not (data / p).exists()]
    if missing:
        print(f"SKIPPED: research data not found ({', '.join(missing)} under "
              f"{data if data is not None else 'MMKG_DATA, unset'}); set MMKG_DATA to the research data directory, "
              "see ../shared/README.md.")
        return None
    return data


def mnre_ontology(test_relations: list[str], allowed: str = HEADLINE_ONTOLOGY):
    """The shipped entity types, and the 7 unseen test relations allowed, for ``allowed="typed"``,
    between the relation name's argument types (``typed_allowed``), for ``"any"`` between any two types."""
    import yaml

    from models.label_descriptions import MNRE_DESCRIPTIONS
    from mmkg.ontology import Ontology

    if allowed not in ONTOLOGIES:
        raise ValueError(f"unknown MNRE ontology {allowed!r}; known: {list(ONTOLOGIES)}")
    shipped = yaml.safe_load((REPO_ROOT / "ontology" / "ontology.yaml").read_text(encoding="utf-8"))
    types = [e["name"] for e in shipped["entity_types"]]
    missing = sorted({t for ts in ARGUMENT_TYPES.values() for t in ts} - set(types))
    if allowed == "typed" and missing:
        raise ValueError(f"the shipped ontology lacks the argument types {missing}")

    def pairs(r: str) -> list[list[str]]:
        return typed_allowed(r) if allowed == "typed" else [[h, t] for h in types for t in types]

    return Ontology.from_dict({
        "version": 1,
        "entity_types": shipped["entity_types"],
        "relation_types": [
            {"name": relation_name(r), "description": MNRE_DESCRIPTIONS[r], "allowed": pairs(r),
             # the ontology's ``symmetric`` flag (written once per entity pair) where the relation is
             # symmetric; an ontology module without the flag ignores the key
             **({"symmetric": True} if r in SYMMETRIC_RELATIONS else {})}
            for r in test_relations
        ],
    }, where=f"graph-quality MNRE ontology ({allowed})")


#: ``--mnre-part``: which MNRE file's posts are scored, and against which relations of the seed-0 split.
MNRE_PARTS = {
    "test": "the test file's posts, the 7 test relations (the headline)",
    "dev": ("the val file's posts, the 7 validation relations: the development protocol on which the relation "
            "stage's decision rule is chosen; no test relation and no test-file text in it"),
    "val": "the val file's posts, the 7 test relations (for choices about detection and typing, not relations)",
    "dev-wide": ("the dev protocol on the 3 validation relations the mnre-pipeline-wide split leaves unseen (it trains "
                 "on the other 4): to compare relation checkpoints trained on 8 and on 12 relations"),
    "product": ("the test file's posts, the 5 MNRE relations of the kinds the shipped ontology has (member of, lives "
                "in, located at, present in, peer): what a user of the default ontology gets; not zero-shot, any "
                "checkpoint may have trained on them; posts sharing a text with a training line of either relation "
                "checkpoint (any train-file line; any sample of a seed-0 train relation) are left out"),
}
#: The MNRE counterparts of the shipped ontology's relations (``ontology/ontology.yaml``: member_of,
#: place_of_residence, located_in, present_in, peer; created_by has none), scored by ``--mnre-part product``.
PRODUCT_RELATIONS = ["/per/org/member_of", "/per/loc/place_of_residence", "/org/loc/locate_at",
                     "/per/misc/present_in", "/per/per/peer"]
#: Parts whose relations must be unseen by the measured checkpoint (``checkpoints.relation_checkpoint_for``).
ZERO_SHOT_PARTS = ("test", "dev", "val", "dev-wide")


def prepare_mnre(data: Path, limit: int | None, part: str = "test") -> dict:
    """MNRE posts and gold for ``part`` (``MNRE_PARTS``). ``test`` is the headline. ``dev`` scores the val file
    against the *validation* relations - the classes the relation checkpoint is early-stopped and calibrated
    on, never a test relation - and leaves out any post whose text also occurs in the test file, so a choice
    made on it is disjoint from every reported test number. ``val`` keeps the test relations on the val file's
    posts (its relation scores are not clean for relation choices; entity coverage is)."""
    from extraction.images import validate_image
    from mmkg.records import Post
    from models.data import mnre_relation_split, read_mnre

    if part not in MNRE_PARTS:
        raise ValueError(f"unknown MNRE part {part!r}; known: {list(MNRE_PARTS)}")
    files, _ = read_mnre(data)
    train_rel, val_rel, split_test_rel = mnre_relation_split(files, seed=0)
    # ``test_rel``: the relations this run scores (its "test" scope): the validation ones on the dev protocol
    if part == "dev-wide":
        from models.data import wide_relation_split

        train_rel, val_rel = wide_relation_split(train_rel, val_rel)
    test_rel = val_rel if part.startswith("dev") else PRODUCT_RELATIONS if part == "product" else split_test_rel
    test_rows = files[{"val": 1, "dev": 1, "dev-wide": 1, "test": 2, "product": 2}[part]]
    posts = build_mnre_posts(test_rows)
    leaked = leaked_texts(files, train_rel)
    if part.startswith("dev"):
        leaked |= {mnre_text(r["token"]) for r in files[2]}
    if part == "product":  # the shipped checkpoint trained on every line of the train file
        leaked |= {mnre_text(r["token"]) for r in files[0]}
    kept, excluded = split_leaked(posts, leaked)

    # Why each excluded post is excluded: the training samples (relation, file) sharing its text.
    why = Counter()
    excluded_texts = {p.text for p in excluded}
    for name, rows in zip(("mnre_train.txt", "mnre_val.txt", "mnre_test.txt"), files):
        for r in rows:
            if r["relation"] in set(train_rel) and " ".join(r["token"]) in excluded_texts:
                why[f"{name}: {r['relation']}"] += 1
    excluded_pairs = [p for post in excluded for p in gold_pairs(post, test_rel)]
    val_texts = leaked_texts(files, val_rel)

    if limit is not None:
        kept = kept[:limit]
    pairs = [p for post in kept for p in gold_pairs(post, test_rel)]
    image_dir = data / "mnre_images"
    records, with_image = [], 0
    for p in kept:
        images = ()
        for img in p.img_ids:
            if (image_dir / img).is_file():
                check = validate_image(img, image_dir)
                if check.ref.ok:
                    images = (check.ref,)
                    with_image += 1
                break
        records.append(Post(id=p.id, text=p.text, created_at=CREATED_AT, source=f"mnre_{part}", images=images))

    scope = Counter(p.scope for p in pairs)
    ontologies = {key: mnre_ontology(test_rel, key) for key in ONTOLOGIES}
    gold_by_rel = Counter(a.relation for p in pairs if p.scope == "test" for a in p.annotations)
    return {
        "posts": records,
        "gold_pairs": pairs,
        "test_relations": test_rel,
        "ontologies": ontologies,
        "summary": {
            "file": f"mnre/mnre_{part}.txt",
            "lines": len(test_rows),
            "posts_distinct_texts": len(posts),
            "split": {"seed": 0, "train_relations": train_rel, "val_relations": val_rel, "test_relations": test_rel},
            "part": part,
            "part_description": MNRE_PARTS[part],
            "scored_relations": ("validation" if part.startswith("dev") else
                                 "product-kind" if part == "product" else "test"),
            "excluded": {
                "reason": ("text occurs in a sample of a seed-0 train relation (any of the three MNRE files); the "
                           "shipped relation checkpoint mre-mnre (split mnre-pipeline) was trained on those samples"
                           + ("; or in the test file (the dev protocol shares no post with the test)"
                              if part.startswith("dev") else "")
                           + ("; or in a line of the train file (a checkpoint of split mnre-all-relations trains on "
                              "all of them)" if part == "product" else "")),
                "posts": len(excluded),
                "lines": sum(len(p.lines) for p in excluded),
                "annotations": sum(len(p.annotations) for p in excluded),
                "pairs_by_scope": dict(Counter(p.scope for p in excluded_pairs)),
                "test_relation_annotations": sum(len(p.annotations) for p in excluded_pairs if p.scope == "test"),
                "training_samples_sharing_the_text": dict(sorted(why.items())),
            },
            "scored_posts": len(records),
            "scored_posts_with_image": with_image,
            "scored_posts_whose_text_is_a_val_relation_sample": sum(p.text in val_texts for p in kept),
            "limit": limit,
            "gold": {
                "pairs_by_scope": {"test": scope["test"], "none": scope["none"], "other": scope["other"]},
                "test_relation_annotations": sum(gold_by_rel.values()),
                "test_relation_annotations_by_relation": {r: gold_by_rel[r] for r in test_rel},
                "symmetric_relations": sorted(SYMMETRIC_RELATIONS),
                "pairs_whose_two_spans_are_one_name_by_scope": one_name_pairs(pairs),
                "entities_whose_surface_has_a_sign": _signed_entities(pairs, {p.id: p.text for p in kept}),
            },
        },
    }


def _signed_entities(pairs, texts: dict) -> dict:
    """Gold entities (spans of test and None pairs) whose surface starts with ``@`` / ``#``: never matched exactly."""
    ents = {(p.post_id, s) for p in pairs if p.scope in ("test", "none") for s in p.spans}
    signs = Counter(texts[pid][s] for pid, (s, _) in ents if texts[pid][s] in "@#")
    return {"of": len(ents), "@": signs["@"], "#": signs["#"]}


def relabel(typed: list, ontology) -> list:
    """The same typed mentions under another label set of the same entity types: typing reads only the
    entity types, so one typing pass serves both MNRE ontologies; only ``label_set_id`` differs."""
    return [dataclasses.replace(tm, label_set_id=ontology.label_set_id) for tm in typed]


#: Tweet sets with typed gold the entity part can score: ``corpus/part`` -> file under the data directory.
#: Twitter-2017 test is the headline; its ``valid`` is for choices made before any test score is read;
#: WNUT-16 test is a second public set (its types mapped by ``scoring.WNUT_TO_COARSE``).
ENTITY_SETS = {"twitter2017-test": "twitter2017/test.txt", "twitter2017-valid": "twitter2017/valid.txt",
               "wnut16-test": "wnut16/test", "wnut16-dev": "wnut16/dev"}


def prepare_twitter(data: Path, limit: int | None, entity_set: str = "twitter2017-test") -> dict:
    """Posts and typed gold of one of ``ENTITY_SETS`` (default Twitter-2017 test)."""
    from bench.entity_detection import build_example, read_conll
    from mmkg.records import Post
    from models.data import tweet_post_id

    corpus, part = entity_set.split("-")
    to_coarse = (lambda t: t) if corpus == "twitter2017" else (lambda t: WNUT_TO_COARSE[t])  # noqa: E731
    tweets = read_conll(data / ENTITY_SETS[entity_set])
    if limit is not None:
        tweets = tweets[:limit]
    posts, gold, ignore = [], set(), set()
    for i, tweet in enumerate(tweets):
        example = build_example(tweet, "tweet")  # the post as written: the project's construction
        text, offsets = written_offsets(tweet)
        typed = {(a, b, to_coarse(t)) for a, b, t in typed_gold_spans(tweet, offsets)}
        if text != example.text or {(s, e) for s, e, _ in typed} != example_spans(example):
            raise AssertionError(f"tweet {i}: typed gold does not agree with bench.entity_detection.build_example")
        pid = tweet_post_id(corpus, part, i)
        if corpus == "wnut16":
            # WNUT-16 to the pipeline's convention, as the detector's benchmark reads it: a span starts past a
            # leading #/@, and @handles (never annotated in WNUT-16) are ignored regions, not false positives.
            from models.mention_tagger import past_sigil, wnut_convention

            typed = {(*past_sigil(text, a, b), t) for a, b, t in typed}
            ignore.update((pid, a, b) for a, b in wnut_convention(example, [t for t, _ in tweet]).ignore)
        posts.append(Post(id=pid, text=text, created_at=CREATED_AT, source=f"{corpus}_{part}"))
        gold.update((pid, s, e, t) for s, e, t in typed)
    return {
        "posts": posts,
        "gold": gold,
        "ignore": ignore,
        "summary": {
            "file": ENTITY_SETS[entity_set],
            "ignored_handle_regions": len(ignore),
            "set": entity_set,
            "tweets": len(tweets),
            "gold_mentions": len(gold),
            "gold_by_type": dict(sorted(Counter(t for *_, t in gold).items())),
            "limit": limit,
        },
    }


# ---------------------------------------------------------------------------------- extractors
def relation_name_to_mnre(name: str) -> str:
    return "/" + name.replace("_", "/", 2)


def load_extractor(name: str, entity_checkpoint: str = "", relation_checkpoint: str = ""):
    from extraction.pipeline import extractor_for

    return extractor_for(name, entity_checkpoint, relation_checkpoint)


def keep_all_variant(extractor, name: str):
    """The same extractor with relation abstention off: every candidate pair keeps its best allowed
    relation. A shallow copy, so MG-VMoE's post states encoded by ``type_mentions`` are reused."""
    variant = copy.copy(extractor)
    if name == "mg-vmoe":
        mre = extractor.mre
        variant.mre = dataclasses.replace(
            mre, card={**mre.card, "thresholds": {**mre.thresholds, "min_score": float("-inf"), "decision": {}}})
    elif name == "label-similarity":
        variant.relation_threshold = float("-inf")
    else:
        raise ValueError(name)
    variant.model_version = f"{extractor.model_version}+keep-all"
    return variant


def spacy_typed(detector, posts, ontology) -> tuple[list, dict]:
    """Plain spaCy NER (the detector's own ``en_core_web_sm`` pipeline, on the raw post text, labels of
    ``DEFAULT_LABELS``) as typed mentions of the mapped ontology type, written like any other."""
    from extraction.detection import DEFAULT_LABELS
    from mmkg.records import Mention, TypedMention

    nlp = detector.nlp
    if nlp is None:  # a tagger detector that needs no spaCy: load it as the detector would
        import spacy

        nlp = spacy.load(detector.model, exclude=["lemmatizer"])
    version = f"spacy/{detector.model}@{getattr(nlp, 'meta', {}).get('version', '?')}"
    out, dropped = [], Counter()
    for post, doc in zip(posts, nlp.pipe([p.text for p in posts], batch_size=64)):
        for ent in doc.ents:
            if ent.label_ not in DEFAULT_LABELS:
                dropped[ent.label_] += 1
                continue
            m = Mention(post.id, ent.start_char, ent.end_char, ent.text, "spacy-plain", ent.label_)
            out.append(TypedMention(m, spacy_ontology_type(ent.label_), 1.0, version, ontology.label_set_id))
    return out, {"numeric_or_temporal_entities_dropped": dict(sorted(dropped.items())), "model_version": version}


# ------------------------------------------------------------------------------------- scoring
def entity_result(driver, gold: set, typed: list, load_report: dict, ignore: set = frozenset()) -> dict:
    """Typed-entity scores of the graph's MENTIONS; a mention overlapping an ``ignore`` region of its post
    (a WNUT-16 @handle, never annotated there) is left out of the scoring."""
    from mmkg.records import OTHER_TYPE

    t0 = time.perf_counter()
    rows = graph.mentions(driver)
    regions: dict = {}
    for pid, a, b in ignore:
        regions.setdefault(pid, []).append((a, b))
    pred = {(r["post_id"], int(r["start"]), int(r["end"]), coarse_type(r["type"])) for r in rows
            if not any(a < int(r["end"]) and int(r["start"]) < b for a, b in regions.get(r["post_id"], ()))}
    scores = score_entities(pred, gold)
    return {
        **scores,
        "mentions_in": len(typed),
        "abstained": sum(tm.entity_type == OTHER_TYPE for tm in typed),
        "mentions_in_graph": len(rows),
        "graph_types": dict(sorted(Counter(r["type"] for r in rows).items())),
        "load": _load_summary(load_report),
        "query_s": round(time.perf_counter() - t0, 3),
    }


def relation_result(driver, mnre: dict, ontology, typed: list, relations: list, load_report: dict) -> dict:
    from extraction.zero_shot import relation_candidates
    from mmkg.records import OTHER_TYPE

    t0 = time.perf_counter()
    type_to_rel = {relation_name(r).upper(): r for r in mnre["test_relations"]}
    instances = graph.triple_instances(driver, type_to_rel)
    shape = graph.shape(driver)
    post_mentions: dict[str, list] = {}
    for r in graph.mentions(driver):
        post_mentions.setdefault(r["post_id"], []).append(((int(r["start"]), int(r["end"])), r["name"]))
    posts = shape["posts"]
    out = {
        "graph": {
            **shape,
            "triples_per_post": round(shape["triples"] / posts, 3) if posts else None,
            "evidence_per_post": round(shape["evidence"] / posts, 3) if posts else None,
        },
        "stage": {
            "mentions_in": len(typed),
            "abstained_mentions": sum(tm.entity_type == OTHER_TYPE for tm in typed),
            "candidate_pairs": len(relation_candidates({p.id: p for p in mnre["posts"]}, typed, ontology)),
            "relations_returned": len(relations),
        },
        "load": _load_summary(load_report),
    }
    for mode in MATCH_MODES:
        out[mode] = score_relations(instances, mnre["gold_pairs"], mnre["test_relations"], mode)
        out[mode]["entity_coverage"] = entity_coverage(post_mentions, mnre["gold_pairs"], mode)
    out["query_s"] = round(time.perf_counter() - t0, 3)
    return out


def ontology_summary(ontology) -> dict:
    return {"label_set_id": ontology.label_set_id,
            "entity_types": [e.name for e in ontology.entity_types],
            "relation_types": [r.name for r in ontology.relation_types],
            "allowed": {r.name: [list(p) for p in r.allowed] for r in ontology.relation_types},
            "declared_symmetric": [r.name for r in ontology.relation_types
                                   if relation_name_to_mnre(r.name) in SYMMETRIC_RELATIONS],
            "symmetric_flag_supported": hasattr(ontology.relation_types[0], "symmetric")}


def _load_summary(load_report: dict) -> dict:
    return {k: load_report[k] for k in ("rows", "nodes_created", "relationships_created", "deadlock_retries")} | {
        "dropped": dict(load_report.get("dropped", {})),
        "rejected": len(load_report["rejected"]),
        "rejected_examples": load_report["rejected"][:5],
    }


# ----------------------------------------------------------------------------------------- main
def write_result(out: Path, stem: str, result: dict, text: str) -> None:
    """A probe's result: ``<stem>.json`` and ``<stem>.md`` (``text``) under ``out``, and ``text`` on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text if text.endswith("\n") else text + "\n")
    print(text)


def probe_stamp(started: float) -> dict:
    """When a dev-set probe finished, at which commit (short), and its wall seconds since ``started``
    (``time.perf_counter()``): the first fields of every probe's result."""
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
            "wall_s": round(time.perf_counter() - started, 1)}


def git_info() -> dict:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    status = run("status", "--porcelain")
    changed = run("status", "--porcelain", "--", *STAGE_SOURCES)
    return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(status),
            "dirty_files": len(status.splitlines()) if status else 0,
            "uncommitted_stage_sources": [line[3:] for line in changed.splitlines()],
            "stage_sources_sha256_12": stage_sources()}


#: Files that define what the stages write: their hashes go into the results, since the working tree
#: may hold uncommitted changes to them.
STAGE_SOURCES = (
    "extraction/detection.py", "extraction/zero_shot.py", "extraction/mg_vmoe.py", "extraction/label_similarity.py",
    "extraction/pipeline.py", "kg_loader/load.py", "kg_loader/records.py", "kg_loader/writer.py",
    "kg_loader/cypher.py", "mmkg/identity.py", "mmkg/ontology.py", "mmkg/records.py", "ontology/ontology.yaml",
    "models/modeling.py", "models/label_descriptions.py", "models/mention_tagger.py",
    "models/checkpoints/met-tweets/checkpoint.json", "models/checkpoints/met-tweets/heads.safetensors",
    "models/checkpoints/mre-mnre/checkpoint.json", "models/checkpoints/mre-mnre/heads.safetensors",
)
CHECKPOINTS = "models/checkpoints"  # every file under it is hashed too (a mention-tagger checkpoint, say)


def stage_sources() -> dict:
    import hashlib

    rels = list(STAGE_SOURCES)
    rels += sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / CHECKPOINTS).rglob("*")
                   if p.is_file() and str(p.relative_to(REPO_ROOT)) not in rels)
    out = {}
    for rel in rels:
        path = REPO_ROOT / rel
        try:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else None
        except OSError:  # being rewritten right now
            out[rel] = None
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_quality",
                                     description="End-to-end graph-quality benchmark (MNRE relations, Twitter-2017 entities)")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS), metavar="SYSTEM",
                        help=f"systems to run (default all): {', '.join(SYSTEMS)}")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="posts per dataset (MNRE: the first N scored posts), for a quick run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="where graph_quality.{json,md,png} go (default bench/results)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    parser.add_argument("--parts", nargs="+", choices=["entities", "relations"], default=["entities", "relations"],
                        help="what to score (default both): Twitter-2017 typed entities, MNRE relations")
    parser.add_argument("--entity-set", choices=list(ENTITY_SETS), default="twitter2017-test",
                        help="tweets scored for typed entities (default twitter2017-test; twitter2017-valid for "
                             "choices made before any test score; wnut16-test: a second public set)")
    parser.add_argument("--mnre-part", choices=list(MNRE_PARTS), default="test",
                        help="MNRE posts and relations scored: " + "; ".join(f"{k}: {v}" for k, v in MNRE_PARTS.items()))
    parser.add_argument("--entity-checkpoint", default="", metavar="PATH",
                        help="MG-VMoE entity checkpoint (default the shipped one)")
    parser.add_argument("--relation-checkpoint", default="", metavar="PATH",
                        help="MG-VMoE relation checkpoint (default the shipped one)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = research_data()
    if data is None:
        return 0

    import torch

    torch.set_num_threads(args.threads)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    import os

    load_at_start = os.getloadavg()
    git = git_info()  # at the start: the stage sources as they were imported
    wall0 = time.perf_counter()
    timings: dict = {}

    def timed(key: str, fn, *a):
        t = time.perf_counter()
        value = fn(*a)
        timings[key] = round(time.perf_counter() - t, 2)
        return value

    systems = [s for s in SYSTEMS if s in args.systems]
    entity_systems = [s for s in systems if SYSTEMS[s]["entity"] and "entities" in args.parts]
    relation_systems = [s for s in systems if SYSTEMS[s]["relation"] and "relations" in args.parts]
    mnre = timed("prepare_mnre_s", prepare_mnre, data, args.limit, args.mnre_part) if relation_systems else None
    relation_checkpoint = args.relation_checkpoint
    if mnre is not None and "mg-vmoe" in {s.split("+")[0] for s in relation_systems}:
        from bench.graph_quality.checkpoints import relation_checkpoint_card, relation_checkpoint_for

        relation_checkpoint = timed("relation_checkpoint_s", relation_checkpoint_for, mnre["test_relations"],
                                    args.relation_checkpoint, args.mnre_part in ZERO_SHOT_PARTS)
        mnre["summary"]["relation_checkpoint"] = relation_checkpoint_card(relation_checkpoint)
    tw = timed("prepare_twitter_s", prepare_twitter, data, args.limit, args.entity_set) if entity_systems else None
    from mmkg.ontology import load_ontology

    shipped = load_ontology(REPO_ROOT / "ontology" / "ontology.yaml")

    from extraction.detection import EntityDetector

    detector = timed("load_detector_s", EntityDetector)
    mnre_mentions = timed("detect_mnre_s", detector.detect, mnre["posts"]) if mnre else []
    tw_mentions = timed("detect_twitter_s", detector.detect, tw["posts"]) if tw else []
    detector_info = {"mode": getattr(detector, "mode", "spacy"), "spacy_model": detector.model,
                     "rules": sorted(getattr(detector, "rules", ())),
                     "tagger_card": {k: v for k, v in (getattr(detector, "tagger_card", None) or {}).items()
                                     if isinstance(v, (str, int, float, bool))}}
    print(f"detected {len(mnre_mentions)} mentions in {len(mnre['posts']) if mnre else 0} MNRE posts, "
          f"{len(tw_mentions)} in {len(tw['posts']) if tw else 0} {args.entity_set} posts", flush=True)

    entity_results: dict = {}
    relation_results: dict = {}  # ontology key -> system -> result
    checkpoints_at_load: dict = {}  # extractor -> checkpoint file hashes when it was loaded
    with graph.throwaway_neo4j() as driver:
        for name in EXTRACTORS:
            wanted = [s for s in systems if s == name or s == f"{name}+keep-all"]
            if not wanted:
                continue
            checkpoints = (args.entity_checkpoint, relation_checkpoint) if name == "mg-vmoe" else ("", "")
            extractor = timed(f"{name}/load_extractor_s", load_extractor, name, *checkpoints)
            checkpoints_at_load[name] = {k: v for k, v in stage_sources().items() if k.startswith("models/checkpoints/")}
            if name in entity_systems:
                posts_by_id = {p.id: p for p in tw["posts"]}
                typed = timed(f"{name}/twitter_type_s", extractor.type_mentions, posts_by_id, tw_mentions, shipped)
                rep = timed(f"{name}/twitter_load_s", graph.load, driver, shipped, tw["posts"], typed, [], f"gq-{name}-tw17")
                entity_results[name] = entity_result(driver, tw["gold"], typed, rep, tw["ignore"])
                _print_entity(name, entity_results[name])
            if any(s in relation_systems for s in wanted):
                ontologies = mnre["ontologies"]
                posts_by_id = {p.id: p for p in mnre["posts"]}
                # One typing pass (under the headline ontology) serves both ontologies: they share the
                # entity types, and typing reads nothing else. Only relations, load and scoring repeat.
                typed_once = timed(f"{name}/mnre_type_s", extractor.type_mentions, posts_by_id, mnre_mentions,
                                   ontologies[HEADLINE_ONTOLOGY])
                variants = []
                if name in relation_systems:
                    variants.append((name, extractor))
                if f"{name}+keep-all" in relation_systems:
                    variants.append((f"{name}+keep-all", keep_all_variant(extractor, name)))
                for okey, onto in ontologies.items():
                    typed = typed_once if okey == HEADLINE_ONTOLOGY else relabel(typed_once, onto)
                    for system, ext in variants:
                        rels = timed(f"{system}/mnre_{okey}_relations_s", ext.extract_relations, posts_by_id, typed, onto)
                        rep = timed(f"{system}/mnre_{okey}_load_s", graph.load, driver, onto, mnre["posts"], typed, rels,
                                    f"gq-{system}-mnre-{okey}")
                        relation_results.setdefault(okey, {})[system] = relation_result(driver, mnre, onto, typed, rels, rep)
                        _print_relation(f"{system} [{okey}]", relation_results[okey][system])
            stats = getattr(extractor, "stats", None)
            if stats:
                timings[f"{name}/extractor_stats"] = dict(stats)
            del extractor
        if "spacy" in entity_systems:
            typed, info = timed("spacy/twitter_ner_s", spacy_typed, detector, tw["posts"], shipped)
            rep = timed("spacy/twitter_load_s", graph.load, driver, shipped, tw["posts"], typed, [], "gq-spacy-tw17")
            entity_results["spacy"] = {**entity_result(driver, tw["gold"], typed, rep, tw["ignore"]), **info}
            _print_entity("spacy", entity_results["spacy"])

    from bench.machine import describe

    import neo4j

    results = {
        "benchmark": "graph_quality",
        "command": "python -m bench.graph_quality" + ("" if argv is None and len(sys.argv) <= 1 else
                                                      " " + " ".join(argv if argv is not None else sys.argv[1:])),
        "started_at": started_at,
        "git": git,
        "machine": describe(),
        "load_average_at_start": load_at_start,
        "torch_threads": args.threads,
        "versions": {"torch": torch.__version__, "neo4j_driver": neo4j.__version__, "neo4j_server": "5.26 (neo4j_server/launcher)"},
        "systems": systems,
        "detector": detector_info,
        "headline_match": HEADLINE_MATCH,
        "match_modes": dict(MATCH_TITLES),
        "headline_ontology": HEADLINE_ONTOLOGY,
        "mnre": None if mnre is None else {
            **mnre["summary"],
            "ontologies": {
                key: {"description": ONTOLOGIES[key], **ontology_summary(onto),
                      "systems": {s: relation_results.get(key, {})[s] for s in systems if s in relation_results.get(key, {})}}
                for key, onto in mnre["ontologies"].items()
            },
            "typing": f"one pass per system under the '{HEADLINE_ONTOLOGY}' ontology, reused (label_set_id rewritten) "
                      "for the others: the ontologies share their entity types",
            "detected_mentions": len(mnre_mentions),
        },
        "twitter2017": None if tw is None else {
            **tw["summary"],
            "ontology": {"label_set_id": shipped.label_set_id, "path": "ontology/ontology.yaml",
                         "type_map": "Person->PER, Location->LOC, Organization->ORG, any other type->MISC; spaCy: "
                                     "PERSON->PER, GPE/LOC/FAC->LOC, ORG->ORG, other DEFAULT_LABELS->MISC"},
            "detected_mentions": len(tw_mentions),
            "systems": {s: entity_results[s] for s in systems if s in entity_results},
        },
        "timings_s": timings,
    }
    results["wall_s"] = round(time.perf_counter() - wall0, 1)
    at_end = stage_sources()
    results["git"]["stage_sources_changed_during_run"] = sorted(
        k for k in at_end if at_end[k] != git["stage_sources_sha256_12"].get(k))
    results["git"]["stage_sources_sha256_12_at_end"] = at_end
    results["git"]["checkpoints_sha256_12_at_extractor_load"] = checkpoints_at_load
    results["git"]["commit_at_end"] = git_info()["commit"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "graph_quality.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    md = report.markdown(results)
    (args.out / "graph_quality.md").write_text(md, encoding="utf-8")
    report.plot(results, args.out / "graph_quality.png")
    print(md)
    print(f"wrote {args.out / 'graph_quality.json'}, .md, .png in {results['wall_s']} s")
    return 0


def _print_entity(name: str, r: dict) -> None:
    t, u = r["typed"], r["untyped"]
    print(f"[entities] {name}: typed P/R/F1 {t['precision']}/{t['recall']}/{t['f1']}, untyped F1 {u['f1']}, "
          f"abstained {r['abstained']}", flush=True)


def _print_relation(name: str, r: dict) -> None:
    e = r[HEADLINE_MATCH]
    print(f"[mnre] {name}: {r['graph']['triples']} triples, precision on annotated pairs {e['triple_precision']} "
          f"({e['correct']}/{e['on_annotated_pairs']}), micro F1 {e['micro']['f1']} F0.5 {e['micro']['f0_5']}", flush=True)

"""``mmkg entities ...``: review entity merge candidates (``kg_loader.resolution``).

    mmkg entities propose [--min-score S] [--auto-accept-threshold T]   score pairs, write SAME_AS_CANDIDATE edges
    mmkg entities candidates [--all] [--json]                            list them with their evidence
    mmkg entities accept A B [--allow-cross-type] [--note ...]           record a merge and apply it
    mmkg entities reject A B [--note ...]                                never propose this pair again
    mmkg entities apply                                                  (re)apply every accepted merge
    mmkg entities decisions [--json]                                     what was decided, by whom, when
    mmkg entities agree-types                                            one type per name across runs, whole graph
    mmkg entities set-type A TYPE [--note ...]                           every entity of A's name is a TYPE, for good
                                                                         (a name the runs abstained on: from its next run)
    mmkg entities clear-type A                                           let the evidence decide A's type again
    mmkg entities keep-apart A [--note ...]                              A's name is a homonym: split, never fold

A and B are entity ids (or unique prefixes of 8+ hex digits), names, or ``Type:name``.
This module imports only the standard library at the top: ``mmkg --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_entities_parser(sub) -> None:
    """Register the ``entities`` group on the ``mmkg`` command's subparsers."""
    entities = sub.add_parser("entities", help="entity resolution: review, accept or reject merge candidates")
    es = entities.add_subparsers(dest="entities", required=True)

    propose = es.add_parser("propose", help="score entity pairs of the graph and write them as candidates")
    propose.add_argument("--min-score", type=float, default=None, help="lowest score written (default 0.5)")
    propose.add_argument("--auto-accept-threshold", type=float, default=None,
                         help="accept and apply same-type candidates scoring at least this (off by default)")
    propose.add_argument("--json", action="store_true", help="print the candidates as JSON")
    propose.set_defaults(func=_propose)

    cands = es.add_parser("candidates", help="list merge candidates with their score and evidence")
    cands.add_argument("--all", action="store_true", help="also candidates already accepted (not yet applied)")
    cands.add_argument("--json", action="store_true", help="JSON instead of a table")
    cands.set_defaults(func=_candidates)

    for name, func, text in (("accept", _accept, "the two entities are one: record it and merge them"),
                             ("reject", _reject, "the two entities are different: never propose them again")):
        p = es.add_parser(name, help=text)
        p.add_argument("a", help="entity id / id prefix / name / Type:name")
        p.add_argument("b", help="entity id / id prefix / name / Type:name")
        p.add_argument("--note", default=None, help="why (stored with the decision)")
        if name == "accept":
            p.add_argument("--allow-cross-type", action="store_true",
                           help="merge two types even without a cross-type candidate (equal names, or a handle spelling the name)")
            p.add_argument("--no-apply", action="store_true", help="record the decision only")
        p.set_defaults(func=func)

    apply = es.add_parser("apply", help="apply every accepted merge (idempotent; loads call it too)")
    apply.set_defaults(func=_apply)

    agree = es.add_parser("agree-types", help="fold each name that runs typed differently into its best-supported "
                                               "type, over the whole graph (loads do it for the names they touch)")
    agree.set_defaults(func=_agree_types)

    st = es.add_parser("set-type", help="a person's word on a name's type: its entities become one of TYPE now, "
                                         "and every later load keeps it so")
    st.add_argument("a", help="entity id / id prefix / name / Type:name (the decision is on its name); a name no "
                              "entity holds yet, such as one the runs abstained on, is taken as it is")
    st.add_argument("type", help="an entity type of the label set")
    st.add_argument("--note", default=None, help="why (stored with the decision)")
    st.set_defaults(func=_set_type)
    ka = es.add_parser("keep-apart", help="a name is a homonym: split what type agreement folded (each mention "
                                           "back to the type its run gave it) and never fold it again")
    ka.add_argument("a", help="entity id / id prefix / name / Type:name (the decision is on its name)")
    ka.add_argument("--note", default=None, help="why (stored with the decision)")
    ka.set_defaults(func=_keep_apart)
    ct = es.add_parser("clear-type", help="drop the type decision on a name (set-type or keep-apart): its mentions "
                                          "decide its type again")
    ct.add_argument("a", help="entity id / id prefix / name / Type:name")
    ct.set_defaults(func=_clear_type)

    dec = es.add_parser("decisions", help="list accepted and rejected pairs, and types set by a person")
    dec.add_argument("--json", action="store_true")
    dec.set_defaults(func=_decisions)


def graph():
    """A driver for the configured Neo4j and its database (``mmkg entities`` and ``mmkg relations``)."""
    from kg_loader.writer import connect
    from mmkg.settings import Neo4jSettings

    neo = Neo4jSettings.from_env()
    return connect(neo), neo.database


def _symmetric() -> frozenset[str]:
    from mmkg.settings import PipelineSettings

    ontology = PipelineSettings.from_env().label_set()
    return frozenset(r.name for r in ontology.relation_types if r.symmetric)


def guarded(func, refused: type[Exception], command: str) -> int:
    """``func()``, with a refused decision (``refused``) turned into a message and exit status 2, not a traceback."""
    try:
        return func()
    except refused as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2


def _guard(func) -> int:
    from kg_loader.resolution import ResolutionError

    return guarded(func, ResolutionError, "mmkg entities")


def _propose(args: argparse.Namespace) -> int:
    from kg_loader import resolution

    driver, db = graph()
    with driver:
        kwargs = {} if args.min_score is None else {"min_score": args.min_score}
        report = resolution.propose_candidates(driver, db, auto_accept_threshold=args.auto_accept_threshold,
                                               **kwargs)  # fmt: skip
        applied = None
        if report.auto_accepted:
            applied = resolution.apply_accepted_merges(driver, db, _symmetric())
        rows = resolution.list_candidates(driver, db)
    if args.json:
        print(json.dumps({"report": report.as_dict(), "candidates": rows,
                          "applied": applied.as_dict() if applied else None}, indent=2, default=str))  # fmt: skip
        return 0
    print(f"{report.entities} entities, {report.pairs_compared} pairs compared, {len(report.candidates)} candidates")
    if report.auto_accepted:
        print(f"auto-accepted {len(report.auto_accepted)} (threshold {args.auto_accept_threshold}): {applied.as_dict()}")
    print_candidates(rows)
    return 0


def _candidates(args: argparse.Namespace) -> int:
    from kg_loader import resolution

    driver, db = graph()
    with driver:
        rows = resolution.list_candidates(driver, db, status=None if args.all else "proposed")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print_candidates(rows)
    return 0


def print_candidates(rows: list[dict]) -> None:
    if not rows:
        print("no candidates (run `mmkg entities propose` after a load)")
        return
    print(f"{'score':>6}  {'A':<40}  {'B':<40}  evidence")
    for r in rows:
        ev = r["evidence"]
        a = f"{r['a_type']}:{r['a_name']} [{r['a_id'][:8]}]"
        b = f"{r['b_type']}:{r['b_name']} [{r['b_id'][:8]}]"
        extra = []
        if ev.get("shared_posts"):
            extra.append(f"{ev['shared_posts']} shared posts")
        if ev.get("shared_neighbours"):
            extra.append(f"{ev['shared_neighbours']} shared neighbours")
        if ev.get("status") != "proposed":
            extra.append(ev.get("status", ""))
        reasons = ", ".join(ev.get("reasons") or [])
        print(f"{ev['score']:>6.3f}  {a:<40}  {b:<40}  {reasons}{'; ' + ', '.join(extra) if extra else ''}")


def _accept(args: argparse.Namespace) -> int:
    from kg_loader import resolution

    def run() -> int:
        driver, db = graph()
        with driver:
            d = resolution.accept(driver, args.a, args.b, db, note=args.note, allow_cross_type=args.allow_cross_type)
            print(f"accepted: {d.merged_type}:{d.merged_name} ({d.merged_id}) -> "
                  f"{d.canonical_type}:{d.canonical_name} ({d.canonical_id})")  # fmt: skip
            if not args.no_apply:
                print(f"applied: {resolution.apply_accepted_merges(driver, db, _symmetric()).as_dict()}")
        return 0

    return _guard(run)


def _reject(args: argparse.Namespace) -> int:
    from kg_loader import resolution

    def run() -> int:
        driver, db = graph()
        with driver:
            d = resolution.reject(driver, args.a, args.b, db, note=args.note)
        print(f"rejected: {d.a_id} / {d.b_id} (decided {d.decided_at}); this pair is not proposed again")
        return 0

    return _guard(run)


def _apply(args: argparse.Namespace) -> int:
    from kg_loader import resolution

    driver, db = graph()
    with driver:
        print(json.dumps(resolution.apply_accepted_merges(driver, db, _symmetric()).as_dict()))
    return 0


def _label_set(driver, db) -> dict:
    """What type agreement needs of the label set (broader types' labels, symmetric relations, allowed types),
    from the writer a load would use; its schema (the name locks' and decisions' constraints) ensured."""
    from kg_loader.load import writer_for
    from mmkg.settings import PipelineSettings

    writer = writer_for(driver, PipelineSettings.from_env().label_set(), db)
    writer.ensure_schema()
    return {"broader": writer.broader_types, "symmetric": writer.symmetric_relations,
            "allowed_types": writer.allowed_entity_types}  # fmt: skip


def _name_of(driver, ref: str, db) -> str:
    """The normalised name a reference stands for: a name several entities share as it is, else the name of
    the entity ``resolve_entity`` finds (an id, a prefix, ``Type:name``, a merged-away name)."""
    from kg_loader import resolution
    from mmkg.identity import normalize_name

    name = normalize_name(ref)
    if driver.execute_query("MATCH (e:Entity {name: $name}) RETURN count(e) AS n", name=name, database_=db,
                            routing_="r").records[0]["n"]:  # fmt: skip
        return name
    entity = resolution.resolve_entity(driver, ref, db)
    return driver.execute_query("MATCH (e:Entity {id: $id}) RETURN e.name AS name", id=entity, database_=db,
                                routing_="r").records[0]["name"]  # fmt: skip


def _agree_types(args: argparse.Namespace) -> int:
    from kg_loader import type_agreement

    driver, db = graph()
    with driver:
        report = type_agreement.agree_all_types(driver, db, **_label_set(driver, db))
    print(json.dumps(report.as_dict()))
    return 0


def _on_name(ref: str, act, new_names: str = "") -> int:
    """``act(driver, database, name, label_set)`` on the name ``ref`` stands for; print what it returns. A
    refused decision prints its reason and exits 2. With ``new_names`` (what to say then), a plain name no entity
    holds (one the runs abstained on: the run report's ``names_abstained_most_mentioned``) is taken as it is."""
    from kg_loader.resolution import ResolutionError
    from mmkg.identity import normalize_name

    def run() -> int:
        driver, db = graph()
        with driver:
            try:
                name = _name_of(driver, ref, db)
            except ResolutionError:
                if not new_names or ":" in ref:
                    raise
                name = normalize_name(ref)
                print(f"no entity is named {name!r}: {new_names}")
            message = act(driver, db, name, _label_set(driver, db))
        print(message)
        return 0

    return _guard(run)


def _set_type(args: argparse.Namespace) -> int:
    from kg_loader import type_agreement

    def act(driver, db, name: str, label_set: dict) -> str:
        d, report = type_agreement.set_type(driver, name, args.type, db, note=args.note, **label_set)
        return (f"set: every entity named {d.name!r} is typed {d.type} (decided {d.decided_at}); "
                f"{json.dumps(report.as_dict())}")  # fmt: skip

    return _on_name(args.a, act, new_names="the decision types its mentions from the next run of an interval that "
                                           "mentions it")


def _keep_apart(args: argparse.Namespace) -> int:
    from kg_loader import type_agreement

    def act(driver, db, name: str, label_set: dict) -> str:
        d, counts = type_agreement.keep_apart(driver, name, db, note=args.note, **label_set)
        return (f"kept apart: {d.name!r} is a homonym, one entity per type its runs gave (decided {d.decided_at}); "
                f"{json.dumps(counts)}")  # fmt: skip

    return _on_name(args.a, act)


def _clear_type(args: argparse.Namespace) -> int:
    from kg_loader import type_agreement

    def act(driver, db, name: str, label_set: dict) -> str:
        report = type_agreement.clear_type(driver, name, db, **label_set)
        return f"cleared the type decision on {name!r}; its mentions decide again: {json.dumps(report.as_dict())}"

    return _on_name(args.a, act, new_names="its decision, if any, is cleared all the same")


def _decisions(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kg_loader import resolution, type_agreement

    driver, db = graph()
    with driver:
        decisions = resolution.read_decisions(driver, db)
        types = type_agreement.read_type_decisions(driver, db)
    if args.json:
        print(json.dumps({"merges": [asdict(d) for d in decisions], "types": [asdict(t) for t in types]}, indent=2))
        return 0
    if not decisions and not types:
        print("no decisions yet")
    for t in types:
        what = f"{t.name} is typed {t.type}" if t.type else f"{t.name} is a homonym: kept apart"
        print(f"{t.decided_at}  type      {what}  (by {t.decided_by}{'; ' + t.note if t.note else ''})")
    for d in decisions:
        what = (f"{d.merged_type}:{d.merged_name} -> {d.canonical_type}:{d.canonical_name}" if d.decision == "accepted"
                else f"{d.a_id} / {d.b_id}")  # fmt: skip
        print(f"{d.decided_at}  {d.decision:<8}  {what}  (by {d.decided_by}{'; ' + d.note if d.note else ''})")
    return 0

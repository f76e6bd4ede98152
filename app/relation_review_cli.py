"""``mmkg relations ...``: review relation triples and reject the wrong ones (``kg_loader.relation_review``).

    mmkg relations review [--relation R] [--max-posts N] [--limit K] [--json]   the weakest triples, with a post
    mmkg relations reject HEAD RELATION TAIL [--note ...]    delete the triple; no later load writes it again
    mmkg relations allow HEAD RELATION TAIL                  drop that rejection (the next load may write it)
    mmkg relations decisions [--json]                        the rejections, by whom, when

HEAD and TAIL are entity names (as written or normalised); RELATION is a relation of the label set
(``member_of`` or ``MEMBER_OF``). This module imports only the standard library at the top.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.resolution_cli import graph, guarded


def add_relations_parser(sub) -> None:
    """Register the ``relations`` group on the ``mmkg`` command's subparsers."""
    relations = sub.add_parser("relations", help="relation triples: review the weakest, reject the wrong ones")
    rs = relations.add_subparsers(dest="relations", required=True)

    rev = rs.add_parser("review", help="the triples with the least evidence first, each with a post that gives it")
    rev.add_argument("--relation", default=None, help="only this relation (e.g. located_in)")
    rev.add_argument("--max-posts", type=int, default=1, help="at most this many posts of evidence (default 1)")
    rev.add_argument("--limit", type=int, default=20)
    rev.add_argument("--json", action="store_true")
    rev.set_defaults(func=_review)

    for name, func, text in (("reject", _reject, "the triple is wrong: delete it now and keep it out of every "
                                                  "later load"),
                             ("allow", _allow, "drop a rejection: the next load of a post that gives the triple "
                                               "writes it again")):
        p = rs.add_parser(name, help=text)
        p.add_argument("head", help="entity name")
        p.add_argument("relation", help="relation of the label set (member_of or MEMBER_OF)")
        p.add_argument("tail", help="entity name")
        if name == "reject":
            p.add_argument("--note", default=None, help="why (stored with the decision)")
        p.set_defaults(func=func)

    dec = rs.add_parser("decisions", help="list the rejected triples")
    dec.add_argument("--json", action="store_true")
    dec.set_defaults(func=_decisions)


def _label_set() -> tuple[list[str], list[str]]:
    """The label set's relation names and its symmetric ones."""
    from mmkg.settings import PipelineSettings

    ontology = PipelineSettings.from_env().label_set()
    return [r.name for r in ontology.relation_types], [r.name for r in ontology.relation_types if r.symmetric]


def _guard(func) -> int:
    """A refused decision (unknown relation or entity) prints its reason and exits 2, not a traceback."""
    from kg_loader.relation_review import RelationReviewError

    return guarded(func, RelationReviewError, "mmkg relations")


def _review(args: argparse.Namespace) -> int:
    from kg_loader import relation_review

    def run() -> int:
        relation = relation_review.relation_of(args.relation, _label_set()[0]) if args.relation else None
        driver, db = graph()
        with driver:
            rows = relation_review.review(driver, db, relation, args.max_posts, args.limit)
        if args.json:
            print(json.dumps(rows, indent=2, ensure_ascii=False))
            return 0
        if not rows:
            print("no relation triples with that little evidence")
        for r in rows:
            text = " ".join((r["post_text"] or "").split())
            print(f"{r['head']} ({r['head_type']}) {r['relation'].upper()} {r['tail']} ({r['tail_type']})  "
                  f"posts {r['posts']}, best score {r['max_score']:.3f}\n    {r['post_id']}: {text[:160]}")
        return 0

    return _guard(run)


def _on_triple(args: argparse.Namespace, act) -> int:
    """``act(relation_review, driver, database, relations, symmetric)`` on the label set and the graph; print what
    it returns. A refused decision prints its reason and exits 2."""
    from kg_loader import relation_review

    def run() -> int:
        relations, symmetric = _label_set()
        driver, db = graph()
        with driver:
            print(act(relation_review, driver, db, relations, symmetric))
        return 0

    return _guard(run)


def _reject(args: argparse.Namespace) -> int:
    def act(rr, driver, db, relations, symmetric) -> str:
        d, removed = rr.reject_triple(driver, args.head, args.relation, args.tail, relations=relations,
                                      symmetric=symmetric, database=db, note=args.note)
        both = " (either direction: symmetric)" if d.symmetric else ""
        return (f"rejected: {d.head} {d.relation.upper()} {d.tail}{both}; {removed} relationship(s) deleted now, and "
                "no later load writes it again")

    return _on_triple(args, act)


def _allow(args: argparse.Namespace) -> int:
    def act(rr, driver, db, relations, symmetric) -> str:
        dropped = rr.allow_triple(driver, args.head, args.relation, args.tail, relations=relations,
                                  symmetric=symmetric, database=db)
        return ("rejection dropped: the next load of a post that gives the triple writes it again" if dropped
                else "no rejection of that triple")

    return _on_triple(args, act)


def _decisions(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kg_loader import relation_review

    driver, db = graph()
    with driver:
        decisions = relation_review.read_decisions(driver, db)
    if args.json:
        print(json.dumps([asdict(d) | {"id": d.id} for d in decisions], indent=2, ensure_ascii=False))
        return 0
    if not decisions:
        print("no rejected triples")
    for d in decisions:
        print(f"{d.decided_at}  rejected  {d.head} {d.relation.upper()} {d.tail}  "
              f"(by {d.decided_by}{'; ' + d.note if d.note else ''})")
    return 0

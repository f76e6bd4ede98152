"""The README's example Cypher queries run on a loaded graph: the first thing a data team types must not fail on a
renamed property or label."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_resolution import _load

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[str]:
    """The statements of the README's ``## Example Cypher queries`` block (``;``-separated)."""
    section = README.read_text(encoding="utf-8").split("## Example Cypher queries", 1)[1]
    block = section.split("```cypher", 1)[1].split("```", 1)[0]
    return [s.strip() for s in block.split(";") if s.strip()]


def test_the_readme_has_its_example_queries():
    queries = readme_queries()
    assert len(queries) >= 5 and all("MATCH" in q and "RETURN" in q for q in queries)


@pytest.mark.neo4j
def test_every_readme_query_runs_on_a_loaded_graph(neo4j_driver):
    _load(neo4j_driver)
    run_id = "run-1"  # what tests.test_resolution._load loads under
    answered = {}
    for query in readme_queries():
        records, summary, _ = neo4j_driver.execute_query(query, run_id=run_id, routing_="r")
        assert summary.query_type == "r", query  # read-only, as a person asking questions expects
        answered[query.splitlines()[0]] = len(records)
    # the fixture has mentions, triples, a peer pair and one run: those questions have answers
    assert answered["// Most mentioned entities, with their type and how many posts mention them"] > 0
    assert answered["// Relation triples with the most evidence"] > 0
    assert answered["// Provenance: what a given run wrote, and with which model and label set"] > 0


def _query_text(query: str) -> str:
    """A query without its ``//`` comments, whitespace collapsed."""
    return " ".join(" ".join(line.split("//", 1)[0] for line in query.splitlines()).split())


def test_the_demo_prints_queries_the_readme_shows():
    """``mmkg demo`` prints ``kg_loader.queries.EXAMPLE_QUERIES``; each is one of the README's, word for word."""
    from kg_loader.queries import EXAMPLE_QUERIES

    readme = {_query_text(q) for q in readme_queries()}
    for title, query in EXAMPLE_QUERIES.items():
        assert _query_text(query) in readme, title

"""Example Cypher questions people ask of the graph (also printed by the demo and shown in the README)."""

from __future__ import annotations

EXAMPLE_QUERIES: dict[str, str] = {
    "Most mentioned entities, with their type and how many posts mention them": """
MATCH (p:Post)-[:MENTIONS]->(e:Entity)
RETURN e.type AS type, e.name AS entity, count(DISTINCT p) AS posts
ORDER BY posts DESC, entity
LIMIT 10""",
    "Relation triples with the most evidence (posts that support them)": """
MATCH (h:Entity)-[r]->(t:Entity)
WHERE r.relation IS NOT NULL  // relation triples, not SAME_AS_CANDIDATE proposals
RETURN h.name AS head, type(r) AS relation, t.name AS tail, r.evidence_count AS posts,
       round(r.max_score, 3) AS best_score
ORDER BY posts DESC, best_score DESC, head
LIMIT 10""",
}


def run_examples(driver, database: str | None = None) -> dict[str, list[dict]]:
    """Each example's rows. Read-only, so routed to a reader: under ``neo4j://`` (a cluster, Aura) they run on
    a follower or read replica, not the server taking the writes."""
    out = {}
    for title, query in EXAMPLE_QUERIES.items():
        records, _, _ = driver.execute_query(query, database_=database, routing_="r")
        out[title] = [r.data() for r in records]
    return out

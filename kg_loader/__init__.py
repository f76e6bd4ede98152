"""Neo4j side of mmkg: graph schema, idempotent batched upserts with provenance, example queries.

Runs without Airflow: give it a neo4j driver (``kg_loader.connect``) or let Airflow hand one over
through the neo4j provider's ``neo4j_default`` connection.
"""

"""A checksum of a whole graph, and its duplicates: what fault tests and re-run checks compare.

``graph_checksum`` reads every node (labels, properties) and relationship (type, properties, and its
endpoints by their key: ``Post.id``, ``Entity.id``, ``Image.sha256``, ``IngestRun.id``) with Cypher,
hashes each as canonical JSON, and adds the hashes modulo 2**256: the sum does not depend on the
order the server returns them in, streams (nothing is held but the running sum), and a duplicated
node or relationship changes it (it is added twice). Properties named in ``ignore`` (e.g. ``run_id``
when two runs legitimately stamp their own ids) are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

_NODES = "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props"
_RELATIONSHIPS = """
MATCH (a)-[r]->(b)
RETURN type(r) AS type, properties(r) AS props,
       [coalesce(a.id, a.sha256), coalesce(b.id, b.sha256)] AS ends
"""

#: Nodes sharing a label and key, and relationships sharing endpoints, type and key (a MENTIONS
#: is keyed by its span): each count must be 0 (the constraints and MERGE keys promise it).
DUPLICATES = """
CALL () {
  MATCH (n) WITH labels(n) AS labels, coalesce(n.id, n.sha256) AS key, count(*) AS c WHERE c > 1
  RETURN count(*) AS nodes
}
CALL () {
  MATCH (a)-[r]->(b)
  WITH a, b, type(r) AS type, CASE type(r) WHEN 'MENTIONS' THEN [r.start, r.end] ELSE [] END AS key, count(*) AS c
  WHERE c > 1
  RETURN count(*) AS relationships
}
RETURN nodes, relationships
"""


def graph_checksum(driver, database: str | None = None, ignore: Iterable[str] = ()) -> str:
    """64 hex digits over all nodes and relationships with their properties (order-independent)."""
    ignore = frozenset(ignore)
    total, nodes, relationships = 0, 0, 0
    with driver.session(database=database) as session:
        for record in session.run(_NODES):
            total += _hash({"labels": sorted(record["labels"]), "props": _props(record["props"], ignore)})
            nodes += 1
        for record in session.run(_RELATIONSHIPS):
            total += _hash({"type": record["type"], "props": _props(record["props"], ignore), "ends": record["ends"]})
            relationships += 1
    total %= 1 << 256
    return hashlib.sha256(f"{nodes}|{relationships}|{total:064x}".encode()).hexdigest()


def duplicates(driver, database: str | None = None) -> dict[str, int]:
    """``{"nodes": n, "relationships": m}``: groups that share a key (both 0 in a sound graph)."""
    records, _, _ = driver.execute_query(DUPLICATES, database_=database)
    return records[0].data()


def _props(props: dict, ignore: frozenset[str]) -> dict:
    return {k: v for k, v in props.items() if k not in ignore}


def _hash(item: dict[str, Any]) -> int:
    text = json.dumps(item, sort_keys=True, ensure_ascii=False, default=_value)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big")


def _value(value: Any) -> str:
    iso = getattr(value, "iso_format", None)  # neo4j.time types
    return iso() if iso is not None else repr(value)

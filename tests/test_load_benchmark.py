"""bench.load_benchmark's side-by-side parts: the CSV for neo4j-admin import and the graph handed to
neo4j-graphrag hold the same rows as mmkg's loader writes; a tiny end-to-end run (all three writers)
gets the same graph from the bulk import (checksum) and duplicates from neo4j-graphrag's second load."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from bench import load_benchmark as lb


def test_import_csv_holds_the_rows_mmkg_writes(tmp_path):
    posts, mentions, triples = lb.synthetic(30, 40, 10)
    triples.append(dataclasses.replace(triples[0], post_id="post-9", score=0.99))  # more evidence for triple 0
    args = lb.write_import_csv(tmp_path, posts, mentions, triples)
    assert args[:4] == ["database", "import", "full", "neo4j"]
    lines = {p.name: p.read_text().splitlines() for p in tmp_path.iterdir()}
    assert len(lines["posts.csv"]) == 1 + 10 and len(lines["entities.csv"]) == 1 + 30
    assert len(lines["mentions.csv"]) == 1 + 30
    assert len(lines["triples.csv"]) == 1 + 40  # the second row of triple 0 became evidence, as mmkg merges it
    assert lines["posts.csv"][0].startswith("id:ID(Post),text,created_at:datetime")
    merged = next(line for line in lines["triples.csv"] if "post-9" in line and triples[0].head_id in line)
    assert f'"{triples[0].post_id};post-9",' in merged and ",2," in merged  # post_ids sorted, evidence_count 2
    props = lb.relation_properties([triples[-1], triples[0]])
    assert props["post_ids"] == sorted([triples[0].post_id, "post-9"]) and props["max_score"] == 0.99


def test_graphrag_graph_has_the_same_rows():
    pytest.importorskip("neo4j_graphrag")
    posts, mentions, triples = lb.synthetic(30, 40, 10)
    graph = lb.graphrag_graph(posts, mentions, triples)
    assert len(graph.nodes) == 10 + 30
    assert sum(r.type == "MENTIONS" for r in graph.relationships) == 30
    assert sum(r.type != "MENTIONS" for r in graph.relationships) == 40


@pytest.mark.neo4j
def test_tiny_run_side_by_side(tmp_path):
    pytest.importorskip("neo4j_graphrag")
    from app.local_airflow import free_port

    port = free_port()
    while any(_busy(port + i) for i in range(3)):
        port = free_port()
    out = tmp_path / "lb.json"
    assert lb.main(["--entities", "60", "--triples", "60", "--posts", "20", "--repeats", "1", "--import-repeats", "1",
                    "--compare-writers", "--bolt-port", str(port), "--http-port", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["import"]["same_graph_as_mmkg"]
    assert result["reload"]["mmkg"]["second"] == result["reload"]["mmkg"]["first"]
    g = result["reload"]["graphrag"]
    assert g["second"]["nodes"] == 2 * g["first"]["nodes"] == 2 * result["graph"]["nodes"]
    assert g["first"]["relationships"] == result["graph"]["relationships"]


@pytest.mark.neo4j
def test_a_run_without_the_naive_loader_reports_no_naive_ratio(tmp_path):
    from app.local_airflow import free_port

    port = free_port()
    while any(_busy(port + i) for i in range(3)):
        port = free_port()
    out = tmp_path / "lb.json"
    assert lb.main(["--entities", "60", "--triples", "60", "--posts", "20", "--repeats", "1", "--naive-repeats", "0",
                    "--peers", "--compare-writers", "--bolt-port", str(port), "--http-port", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["naive_median_s"] is None and result["ratio_batched_over_naive"] is None
    assert result["batched_relationships_per_s"] > 0


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_relationship_floor_writes_the_same_relationships_every_way():
    """bench.relationship_floor: each variant, mmkg's MERGE and the CREATE floors with 1 and 2 writers, writes every
    triple once, from an emptied relationship set each repeat."""
    from app.local_airflow import free_port
    from bench import relationship_floor as rf
    from mmkg.settings import Neo4jSettings

    bolt, http = free_port(), free_port()
    home = Path(tempfile.mkdtemp(prefix="mmkg-test-floor-"))
    settings = Neo4jSettings(f"bolt://127.0.0.1:{bolt}", "neo4j", "mmkg-bench", "neo4j", bolt, http, home)
    _, _, triples = lb.synthetic(60, 80, 20)
    distinct = len({(t.head_id, t.relation, t.tail_id) for t in triples})
    results = rf.measure(settings, 60, 80, 20, repeats=2)
    assert set(results) == set(rf.VARIANTS)
    assert [r["relationships"] for r in results["mmkg"]] == [distinct, distinct]
    for name in rf.VARIANTS[1:]:
        assert [r["relationships"] for r in results[name]] == [80, 80], name

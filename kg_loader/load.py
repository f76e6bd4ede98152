"""One call that writes a shard's extraction into the graph, in the order the schema needs."""

from __future__ import annotations

from collections.abc import Sequence

from kg_loader import records
from kg_loader.writer import GraphWriter, LoadReport
from mmkg.ontology import Ontology
from mmkg.records import Post, RelationMention, TypedMention


def load_extraction(
    writer: GraphWriter,
    posts: Sequence[Post],
    typed: Sequence[TypedMention],
    relations: Sequence[RelationMention],
    run_id: str,
) -> LoadReport:
    """Posts, images, then (after retracting what these posts no longer support) mentions and triples."""
    texts = {p.id: p.text for p in posts}
    mention_rows = records.mention_rows(typed, run_id, texts)
    relation_rows, dropped = records.relation_rows(relations, run_id, texts, writer.symmetric_relations)
    report = writer.upsert_posts(records.post_rows(posts, run_id))
    for reason, n in dropped.items():
        report.dropped[f"relations_{reason}"] += n
    report.merge(writer.upsert_images(records.image_rows(posts)))
    report.merge(writer.retract_stale([p.id for p in posts], mention_rows, relation_rows))
    report.merge(writer.upsert_mentions(mention_rows))
    report.merge(writer.upsert_relations(relation_rows))
    return report


def writer_for(driver, ontology: Ontology, database: str | None = None, settings=None) -> GraphWriter:
    """A writer restricted to the ontology's labels, batched as ``PipelineSettings`` says."""
    from mmkg.settings import PipelineSettings

    settings = settings or PipelineSettings.from_env()
    entity_types, relation_names = records.ontology_labels(ontology)
    symmetric = [r.name for r in ontology.relation_types if r.symmetric]
    return GraphWriter(driver, database, settings.batch_size, entity_types, relation_names, settings.neo4j_writers,
                       symmetric)


def load_shard(shard: dict, plan, driver, database: str | None = None) -> dict:
    """Write one staged shard (see ``extraction.pipeline``) into the graph; returns the report as a dict."""
    from extraction import staging
    from mmkg.ontology import load_ontology

    ontology = load_ontology(plan.ontology_path)
    writer = writer_for(driver, ontology, database)
    writer.ensure_schema()
    report = load_extraction(
        writer,
        staging.read_posts(staging.shard_file(shard, "posts")),
        staging.read_typed_mentions(staging.shard_file(shard, "typed_mentions")),
        staging.read_relations(staging.shard_file(shard, "relations")),
        run_id=plan.run_id,
    )
    return {**shard, **report.as_dict()}

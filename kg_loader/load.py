"""One call that writes a shard's extraction into the graph, in the order the schema needs, in one
transaction: a shard's load is all-or-nothing, and re-running it after any failure converges."""

from __future__ import annotations

from collections.abc import Sequence

from kg_loader import records
from kg_loader.writer import GraphWriter, LoadReport, post_id_problem
from mmkg.ontology import Ontology
from mmkg.records import Post, RelationMention, TypedMention


def load_extraction(
    writer: GraphWriter,
    posts: Sequence[Post],
    typed: Sequence[TypedMention],
    relations: Sequence[RelationMention],
    run_id: str,
    *,
    partition: str | None = None,
    vanished_range: tuple[str, str | None] | None = None,
) -> LoadReport:
    """Posts, then for the posts whose version won (``cypher.UPSERT_POSTS``): images, and (after
    retracting what these posts no longer support) mentions and triples, then the accepted entity
    merges again (``kg_loader.resolution``: a re-load recreates a merged-away id), then type agreement
    across runs for the names these posts mention or mentioned (``kg_loader.type_agreement``: a name
    other runs typed differently becomes one entity of its best-supported type). All in one transaction
    (``GraphWriter.write_atomically``): a failure anywhere, a killed server included, leaves the
    graph as it was, and the driver re-runs the whole transaction on a transient failure.

    ``partition`` is the landing day the posts were read from (stored on each post). With
    ``vanished_range=(lo, hi)`` the posts of that partition with ids in ``[lo, hi)`` (``hi`` None:
    no upper bound) that ``posts`` no longer holds are retracted (``GraphWriter.retract_vanished_posts``).
    """
    if vanished_range is not None and partition is None:
        raise ValueError("vanished_range needs the partition the posts were read from")
    texts = {p.id: p.text for p in posts}
    post_rows = records.post_rows(posts, run_id, partition)
    image_rows = records.image_rows(posts)
    mention_rows = records.mention_rows(typed, run_id, texts)
    relation_rows, dropped = records.relation_rows(relations, run_id, texts, writer.symmetric_relations)

    def work(tx_writer: GraphWriter) -> LoadReport:
        report = tx_writer.upsert_posts(post_rows)
        lost = set(report.superseded)
        won = [row.id for row in post_rows if row.id not in lost and not post_id_problem(row.id)]
        touched: set[str] = set()  # entity names whose mentions this load changes: their type agreement
        if vanished_range is not None:
            lo, hi = vanished_range
            report.merge(tx_writer.retract_vanished_posts(partition, lo, hi, [p.id for p in posts], touched))
        keep = set(won)
        images = [r for r in image_rows if r.post_id in keep]
        mentions = [r for r in mention_rows if r.post_id in keep]
        relations_ = [r for r in relation_rows if r.post_id in keep]
        report.merge(tx_writer.unlink_stale_images(won, images))
        report.merge(tx_writer.upsert_images(images))
        touched.update(tx_writer.entity_names_of_posts(won), (r.name for r in mentions))
        report.merge(tx_writer.retract_stale(won, mentions, relations_))
        report.merge(tx_writer.upsert_mentions(mentions))
        report.merge(tx_writer.upsert_relations(relations_))
        report.merge(tx_writer.reapply_merges())  # accepted entity merges survive the re-load
        report.merge(tx_writer.agree_entity_types(touched))  # one type per name across runs
        report.merge(tx_writer.remove_rejected_triples())  # a triple a person rejected stays out
        return report

    report = writer.write_atomically(work)
    for reason, n in dropped.items():
        report.dropped[f"relations_{reason}"] += n
    return report


def writer_for(driver, ontology: Ontology, database: str | None = None, settings=None) -> GraphWriter:
    """A writer restricted to the ontology's labels, batched as ``PipelineSettings`` says."""
    from mmkg.settings import PipelineSettings

    settings = settings or PipelineSettings.from_env()
    entity_types, relation_names = records.ontology_labels(ontology)
    symmetric = [r.name for r in ontology.relation_types if r.symmetric]
    broader = {e.name: ontology.lineage(e.name)[1:] for e in ontology.entity_types if e.parent}
    return GraphWriter(driver, database, settings.batch_size, entity_types, relation_names, settings.neo4j_writers,
                       symmetric, broader)


def load_shard(shard: dict, plan, driver, database: str | None = None) -> dict:
    """Write one staged shard (see ``extraction.pipeline``) into the graph; returns the report as a dict.

    Each attempt is counted in the run's staging folder (``load_attempt``: 2 and more are re-runs
    after a failed attempt, shown in the run report).
    """
    from extraction import staging
    from mmkg.ontology import load_ontology

    attempt = staging.record_attempt(shard["run_dir"], f"load-{shard['shard']:05d}") if shard.get("run_dir") else 1
    ontology = load_ontology(plan.ontology_path)
    writer = writer_for(driver, ontology, database)
    writer.ensure_schema()
    vanished = None
    if shard.get("retract_vanished") and shard.get("partition"):
        lo, hi = shard["id_range"]
        vanished = (lo, hi)
    report = load_extraction(
        writer,
        staging.read_posts(staging.shard_file(shard, "posts")),
        staging.read_typed_mentions(staging.shard_file(shard, "typed_mentions")),
        staging.read_relations(staging.shard_file(shard, "relations")),
        run_id=plan.run_id,
        partition=shard.get("partition"),
        vanished_range=vanished,
    )
    return {**shard, **report.as_dict(), "load_attempt": attempt}

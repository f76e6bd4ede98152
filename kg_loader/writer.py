"""Idempotent, batched upserts into Neo4j with a typed report back.

Every write is ``UNWIND $rows`` + labelled ``MERGE`` on a constrained, deterministic key. Two ways
to run them:

- **One transaction per batch** (the ``upsert_*`` methods called on a writer, as bulk loads and the
  load benchmark do). A deadlock victim is re-run at once; any other transient failure or lost
  connection goes to the driver's managed retry (``session.execute_write``, up to
  ``max_transaction_retry_time``); see ``_write_batch``. Batches are independent transactions, so a
  load that dies half-way is completed by simply running it again: nothing duplicates.
- **All in one transaction** (``write_atomically``, what ``kg_loader.load`` does for an ingestion
  shard): the same methods on the writer handed to the work function run their batches in one
  transaction, so a shard's load is all-or-nothing (a failure or a killed server leaves the graph as
  it was, never half retracted), and the driver re-runs the whole transaction on a transient failure
  (``LoadReport.transaction_retries`` counts them).

Mentions and triples are written by ``writers`` concurrent transactions (default 2) that never
share a node: rows are partitioned by a stable hash of their node ids and scheduled in rounds whose
jobs touch disjoint partitions (see ``_mention_rounds`` / ``_relation_rounds``). They can still meet
on a relationship record that links two partitions (the head of a node's relationship chain, locked
at commit), so a few deadlocks per 100k rows are expected and cost one batch each;
``LoadReport.deadlock_retries`` counts them. A load too small to give every job a full batch (an ingestion
shard of a few hundred rows) is not split: one stream of transactions, as with one writer.

Triples find their endpoints by the ``elementId`` their entities' mention MERGEs returned to this writer
(``cypher.upsert_relations_by_element_id``, each checked to still name the row's entity) instead of two
unique-index seeks per row; a row whose element id is stale or unknown goes by key in the same
transaction. Per 100k triples this saved 0.67 s of server CPU (6.07 -> 5.40 s per load; README).
Mentions likewise find their post by the ``elementId`` its post MERGE returned
(``cypher.upsert_mentions_by_element_id``, checked; stale rows by key in the same transaction): 0.05-0.15 s
of server CPU per 50k mentions (bench/results/load_ideas.md, round 3).
The bulk mention and triple rows travel as lists (``cypher.MENTION_ROW``, ``cypher.RELATION_ROW_BY_ELEMENT_ID``),
and a call's post batches, which never share a node, are split over the writers too
(bench/results/load_ideas.md, round 2).

Rows whose label or relationship type is not allowed (not in the label set, or not a safe
identifier) are rejected with a reason, and the rest of the batch still loads.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from kg_loader import cypher, type_agreement
from kg_loader.records import ImageRow, MentionRow, PostRow, RelationRow
from mmkg.settings import PipelineSettings

log = logging.getLogger(__name__)

#: Defaults of ``mmkg.settings.PipelineSettings`` (MMKG_NEO4J_BATCH_SIZE, MMKG_NEO4J_WRITERS).
DEFAULT_BATCH_SIZE = PipelineSettings.batch_size
#: Concurrent write transactions for mentions and triples (1 = one after another).
DEFAULT_WRITERS = PipelineSettings.neo4j_writers
#: A batch that keeps deadlocking this often fails loudly (each retry waits at most 50 ms x attempt).
DEADLOCK_RETRIES = 10
DEADLOCK_CODE = "Neo.TransientError.Transaction.DeadlockDetected"
#: Most entity element ids a writer remembers (entity id -> ``elementId``, from its mention MERGEs, for
#: its triples' endpoints); past this it forgets them all and starts again (about 150 bytes each).
MAX_REMEMBERED_ENTITIES = 1_000_000
#: The same for post element ids (post id -> ``elementId``, from its post MERGEs, for its mentions).
MAX_REMEMBERED_POSTS = 1_000_000
#: Longest indexed key the loader sends (UTF-8 bytes): Neo4j's range index refuses keys over about
#: 8 KB with an error that is not retryable, so a post id or entity name over this is refused with
#: its reason instead (and the rest of the shard loads).
MAX_INDEX_KEY_BYTES = 4096
#: The update counters of Neo4j's result summary that a ``LoadReport`` sums.
COUNTERS = ("nodes_created", "nodes_deleted", "relationships_created", "relationships_deleted", "properties_set",
            "labels_added")


@dataclass(frozen=True, slots=True)
class Rejection:
    kind: str  # "mention" | "relation" | ...
    key: str  # what was rejected (post id / entity id / triple)
    reason: str


@dataclass
class LoadReport:
    """What a load did. ``created``/``updated`` are counted from Neo4j's own statistics."""

    #: Rows really written, by kind (a row whose MATCH found nothing is not counted: see ``dropped``).
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    nodes_created: int = 0
    nodes_deleted: int = 0
    relationships_created: int = 0
    relationships_deleted: int = 0
    properties_set: int = 0
    labels_added: int = 0
    batches: int = 0
    deadlock_retries: int = 0
    #: Whole transactions (``write_atomically``) re-run after a transient failure.
    transaction_retries: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    #: Rows not written, by reason: on purpose (``relations_self_loop``, ``relations_reverse_in_post``)
    #: or because an endpoint was missing (``relations_missing_endpoint``, ``mentions_missing_post``,
    #: ``images_missing_post``).
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Post ids whose row lost to a newer version already in the graph (nothing of them written).
    superseded: list[str] = field(default_factory=list)
    #: Posts of the shard's partition and id range that the shard no longer holds, removed.
    posts_retracted: int = 0
    #: Accepted entity merges (``kg_loader.resolution``) applied again because this load wrote a
    #: merged-away entity anew.
    merges_applied: int = 0
    #: Entities folded into the type their name holds most evidence for across runs
    #: (``kg_loader.type_agreement``), and names left split on purpose, by reason.
    entities_type_agreed: int = 0
    #: Relation triples a person rejected (``kg_loader.relation_review``) that this load had written again, removed.
    triples_rejected: int = 0
    names_left_split: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def created(self) -> int:
        return self.nodes_created + self.relationships_created

    @property
    def updated(self) -> int:
        """Rows that matched an existing node or relationship instead of creating one."""
        return max(sum(self.rows.values()) - self.created, 0)

    def add_counters(self, counters: Any) -> None:
        """One batch's update counters (Neo4j's result summary, or ``_summed``)."""
        self._add(counters)
        self.batches += 1

    def _add(self, counters: Any) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(counters, name))

    def merge(self, other: "LoadReport") -> "LoadReport":
        for k, v in other.rows.items():
            self.rows[k] += v
        self._add(other)
        self.batches += other.batches
        self.deadlock_retries += other.deadlock_retries
        self.transaction_retries += other.transaction_retries
        self.rejected.extend(other.rejected)
        for k, v in other.dropped.items():
            self.dropped[k] += v
        self.superseded.extend(other.superseded)
        self.posts_retracted += other.posts_retracted
        self.merges_applied += other.merges_applied
        self.entities_type_agreed += other.entities_type_agreed
        self.triples_rejected += other.triples_rejected
        for k, v in other.names_left_split.items():
            self.names_left_split[k] += v
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": dict(self.rows),
            "created": self.created,
            "updated": self.updated,
            "nodes_created": self.nodes_created,
            "nodes_deleted": self.nodes_deleted,
            "relationships_created": self.relationships_created,
            "relationships_deleted": self.relationships_deleted,
            "properties_set": self.properties_set,
            "batches": self.batches,
            "deadlock_retries": self.deadlock_retries,
            "transaction_retries": self.transaction_retries,
            "posts_superseded": len(self.superseded),
            "posts_retracted": self.posts_retracted,
            "merges_applied": self.merges_applied,
            "entities_type_agreed": self.entities_type_agreed,
            "triples_rejected": self.triples_rejected,
            "names_left_split": dict(self.names_left_split),
            "dropped": dict(self.dropped),
            "rejected": [asdict(r) for r in self.rejected],
        }


def connect(settings=None, **driver_config):
    """A neo4j driver from ``mmkg.settings.Neo4jSettings`` (environment), outside Airflow."""
    import neo4j

    from mmkg.settings import Neo4jSettings

    settings = settings or Neo4jSettings.from_env()
    return neo4j.GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password), **driver_config)


class GraphWriter:
    """Writes typed rows to one Neo4j database in batches.

    ``allowed_entity_types`` / ``allowed_relations`` (from the ontology) restrict what may become
    a label or relationship type; None allows any *valid* identifier. ``writers`` concurrent
    transactions write mentions and triples (see the module docstring).
    """

    def __init__(
        self,
        driver,
        database: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        allowed_entity_types: Iterable[str] | None = None,
        allowed_relations: Iterable[str] | None = None,
        writers: int = DEFAULT_WRITERS,
        symmetric_relations: Iterable[str] = (),
        broader_types: Mapping[str, Sequence[str]] | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if writers < 1:
            raise ValueError("writers must be >= 1")
        self.driver = driver
        self.database = database
        #: The open transaction of ``write_atomically`` (None: one transaction per batch).
        self._tx = None
        self.batch_size = batch_size
        self.writers = writers
        self.allowed_entity_types = set(allowed_entity_types) if allowed_entity_types is not None else None
        self.allowed_relations = set(allowed_relations) if allowed_relations is not None else None
        #: Relations written once per entity pair in canonical order (``records.relation_rows``).
        self.symmetric_relations = frozenset(symmetric_relations)
        #: Entity type -> the types it is a narrower kind of (``Ontology.lineage``): their labels go on its nodes.
        self.broader_types = {t: tuple(b) for t, b in (broader_types or {}).items()}
        #: Entity id -> ``elementId`` of its node, as this writer's mention MERGEs returned them: its
        #: triples find their endpoints by element id (checked) instead of two index seeks per row.
        self._entity_nodes: dict[str, str] = {}
        #: Post id -> ``elementId`` of its node, as this writer's post MERGEs returned them: its mentions find
        #: their post by element id (checked) instead of an index seek per row.
        self._post_nodes: dict[str, str] = {}

    # -- schema ---------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create constraints and indexes; safe to call on every run (IF NOT EXISTS)."""
        with self.driver.session(database=self.database) as session:
            for statement in cypher.SCHEMA_STATEMENTS:
                session.run(statement).consume()
            session.run("CALL db.awaitIndexes(300)").consume()

    # -- one transaction ------------------------------------------------------------------
    def write_atomically(self, work: Callable[["GraphWriter"], LoadReport]) -> LoadReport:
        """Run ``work(writer)`` with a writer whose writes all go into one transaction, committed when
        ``work`` returns: all of it lands, or (on any error) none of it. A transient failure
        (deadlock, lost connection, a server restarting) re-runs the whole transaction through the
        driver's managed retry, counted in ``transaction_retries``; other errors are raised."""
        attempts = 0

        def transaction(tx):
            nonlocal attempts
            attempts += 1
            bound = copy.copy(self)
            bound._tx = tx
            bound._entity_nodes = {}  # this attempt's nodes only (a rolled-back attempt's are gone)
            bound._post_nodes = {}
            return work(bound)

        with self.driver.session(database=self.database) as session:
            report = session.execute_write(transaction)
        report.transaction_retries += attempts - 1
        return report

    # -- upserts --------------------------------------------------------------------------
    def upsert_posts(self, rows: Sequence[PostRow]) -> LoadReport:
        """Posts, one version per id (``cypher.UPSERT_POSTS``); ``report.superseded`` names the rows
        that lost to a newer version in the graph, and a post id too long to index is refused."""
        report = LoadReport()
        best: dict[str, PostRow] = {}
        for row in rows:
            if reason := post_id_problem(row.id):
                report.rejected.append(Rejection("post", row.id[:80] + "…", reason))
            elif row.id not in best or _version(row) > _version(best[row.id]):
                best[row.id] = row  # one id twice in a call: the newer version, as the graph would keep
        results: list[dict] = []
        report.merge(self._write_disjoint_batches("post", cypher.UPSERT_POSTS, [_params(r) for r in best.values()],
                                                  results=results))
        report.superseded.extend(r["id"] for r in results if not r["wins"])
        known = self._post_nodes
        if len(known) > MAX_REMEMBERED_POSTS:
            known.clear()
        known.update((r["id"], r["element_id"]) for r in results)
        report.rows["post"] -= len(report.superseded)
        return report

    def upsert_images(self, rows: Sequence[ImageRow]) -> LoadReport:
        report = self._write_batches("image", cypher.UPSERT_IMAGES, [_params(r) for r in rows])
        if missing := len(rows) - report.rows["image"]:
            report.dropped["images_missing_post"] += missing
        return report

    def unlink_stale_images(self, post_ids: Sequence[str], rows: Sequence[ImageRow]) -> LoadReport:
        """Drop the ``HAS_IMAGE`` links of these posts that ``rows`` (their new images) no longer
        have; an image left without posts goes. Call before ``upsert_images`` of the same posts."""
        keep: dict[str, list[str]] = {pid: [] for pid in post_ids}
        for r in rows:
            keep.setdefault(r.post_id, []).append(f"{r.sha256}|{r.uri}")
        return self._write_batches("unlink_images", cypher.UNLINK_STALE_IMAGES,
                                   [{"id": pid, "keep": k} for pid, k in keep.items()], param="posts")

    def upsert_mentions(self, rows: Sequence[MentionRow]) -> LoadReport:
        report = LoadReport()
        parts = self._partitions(len(rows), self.writers, jobs=self.writers**2)
        jobs: dict[tuple[int, int], dict[tuple, list[dict]]] = {}
        accepted = []
        type_problems: dict[str, str | None] = {}  # each entity type checked once
        for row in rows:
            if row.entity_type not in type_problems:
                type_problems[row.entity_type] = self._entity_type_problem(row.entity_type)
            reason = type_problems[row.entity_type]
            if not reason and len(row.name) * 4 > MAX_INDEX_KEY_BYTES and len(row.name.encode("utf-8")) > MAX_INDEX_KEY_BYTES:
                reason = _too_long("entity name", row.name)
            if reason:
                report.rejected.append(Rejection("mention", f"{row.post_id}[{row.start}:{row.end}]", reason))
            else:
                accepted.append(row)
        post_part, entity_part = _Partitions(parts), _Partitions(parts)
        # In entity id order: concurrent loads lock shared entities in one order (fewer deadlocks).
        for row in sorted(accepted, key=lambda r: r.entity_id):
            shared, params = _mention_parts(row)
            job = (post_part[row.post_id], entity_part[row.entity_id])
            jobs.setdefault(job, {}).setdefault(shared, []).append(params)
        sent = len(accepted)
        rounds = _mention_rounds(parts)
        report.merge(self._write_rounds("mention", self._mention_statement, jobs, rounds, _MENTION_SHARED))
        if missing := sent - report.rows["mention"]:
            report.dropped["mentions_missing_post"] += missing
        return report

    def upsert_relations(self, rows: Sequence[RelationRow]) -> LoadReport:
        """Triples with their evidence. ``report.rows["relation"]`` counts what was written; a row
        whose head or tail entity is not in the graph (its mention was refused or abstained) writes
        nothing and is counted in ``dropped["relations_missing_endpoint"]`` and named in ``rejected``."""
        report = LoadReport()
        # One row per (triple, post): a post that states a triple twice (e.g. via "Lisbon Falcons"
        # and "#LisbonFalcons") is one piece of evidence, with its best score.
        best: dict[tuple[str, str, str, str], RelationRow] = {}
        for row in rows:
            key = (row.head_id, row.relation, row.tail_id, row.post_id)
            if key not in best or row.score > best[key].score:
                best[key] = row
        p = 2 * self.writers  # heads and tails are the same nodes: pairs of partitions, see _relation_rounds
        parts = self._partitions(len(best), p, jobs=p * (p + 1) // 2)
        jobs: dict[tuple[int, int], dict[tuple, list[dict]]] = {}
        problems: dict[str, str | None] = {}  # each relation checked once
        part = _Partitions(parts)
        for row in best.values():
            if row.relation not in problems:
                problems[row.relation] = self._relation_problem(row.relation)
            if reason := problems[row.relation]:
                report.rejected.append(
                    Rejection("relation", f"{row.head_id}-{row.relation}->{row.tail_id}@{row.post_id}", reason)
                )
            else:
                shared, params = _relation_parts(row)
                h, t = part[row.head_id], part[row.tail_id]
                job = (h, t) if h <= t else (t, h)
                jobs.setdefault(job, {}).setdefault(shared, []).append(params)
        rounds = _relation_rounds(parts)
        report.merge(self._write_rounds("relation", self._relation_statement, jobs, rounds, _RELATION_SHARED))
        return report

    def _mention_statement(self, entity_type: str) -> Callable[[Any, dict], tuple[list[dict], Any]]:
        """One mention batch, run in a transaction. When this writer's post MERGEs returned the element ids of
        all the batch's posts, it finds them by element id (``cypher.upsert_mentions_by_element_id``), and any
        row whose element id no longer names its post goes again by key (``cypher.upsert_mentions_as_lists``);
        otherwise the whole batch goes by key (one statement, rows in their order). Returns ``written`` and the
        entities' ``ids`` / ``element_ids`` of both statements, and their counters summed."""
        broader = self.broader_types.get(entity_type, ())
        by_key_query = cypher.upsert_mentions_as_lists(entity_type, broader)
        by_id_query = cypher.upsert_mentions_by_element_id(entity_type, broader)

        def run(tx, params: dict) -> tuple[list[dict], Any]:
            posts = self._post_nodes
            rows = params["rows"]
            by_id = _Rows()
            for i, row in enumerate(rows):  # a list: cypher.MENTION_ROW_BY_ELEMENT_ID
                p = posts.get(row[0])
                if p is None:
                    by_id = None
                    break
                by_id.append([p, *row, i])
            if by_id is None:
                return _run_batch(tx, by_key_query, params)
            records, c = _run_batch(tx, by_id_query, {**params, "rows": by_id})
            record = records[0]
            counters = [c]
            done = set(record["done"])
            if len(done) < len(rows):  # stale element ids: those rows by key
                stale = _Rows(row for i, row in enumerate(rows) if i not in done)
                for row in stale:
                    posts.pop(row[0], None)
                more, c = _run_batch(tx, by_key_query, {**params, "rows": stale})
                counters.append(c)
                record = {"written": record["written"] + more[0]["written"], "ids": record["ids"] + more[0]["ids"],
                          "element_ids": record["element_ids"] + more[0]["element_ids"]}
            return [record], _summed(counters)

        return run

    def _relation_statement(self, relation: str) -> Callable[[Any, dict], tuple[list[dict], Any]]:
        """One relation batch, run in a transaction: the rows whose endpoints this writer's mention
        MERGEs returned by element id (``cypher.upsert_relations_by_element_id``), then the rest, and
        any row whose element ids no longer name its entities, by key (``cypher.upsert_relations``).
        Returns ``[{"written": n}]`` and the two statements' counters summed."""

        def run(tx, params: dict) -> tuple[list[dict], Any]:
            known = self._entity_nodes
            by_id, by_key = _Rows(), _Rows()
            for row in params["rows"]:
                head, tail = row["head_id"], row["tail_id"]
                h, t = known.get(head), known.get(tail)
                if h is not None and t is not None:  # a list: cypher.RELATION_ROW_BY_ELEMENT_ID
                    by_id.append([h, t, head, tail, row["post_id"], row["score"], len(by_id)])
                else:
                    by_key.append(row)
            written, counters = 0, []
            if by_id:
                records, c = _run_batch(tx, cypher.upsert_relations_by_element_id(relation), {**params, "rows": by_id})
                counters.append(c)
                done = set(records[0]["done"]) if records else set()
                written += len(done)
                for i in (i for i in range(len(by_id)) if i not in done):  # stale element ids: by key
                    _, _, head, tail, post_id, score, _ = by_id[i]
                    known.pop(head, None)
                    known.pop(tail, None)
                    by_key.append({"head_id": head, "tail_id": tail, "post_id": post_id, "score": score})
            if by_key:
                records, c = _run_batch(tx, cypher.upsert_relations(relation), {**params, "rows": by_key})
                counters.append(c)
                written += sum(r["written"] for r in records)
            return [{"written": written}], _summed(counters)

        return run

    def retract_vanished_posts(self, partition: str, lo: str, hi: str | None, keep: Sequence[str],
                               names: set[str] | None = None) -> LoadReport:  # fmt: skip
        """Remove the posts of landing ``partition`` with ids in ``[lo, hi)`` (no upper bound when
        ``hi`` is None) other than ``keep``, with their mentions, evidence and image links, and the
        entities and images left with nothing: the re-run of a corrected partition gives the graph
        of the corrected data. The names of the entities those posts mentioned are added to ``names``
        (their type agreement may change)."""
        query = cypher.FIND_VANISHED_POSTS if hi is None else cypher.FIND_VANISHED_POSTS_BELOW
        params = {"partition": partition, "lo": lo, "keep": list(keep), **({} if hi is None else {"hi": hi})}
        vanished = [r["id"] for r in self._read(query, params)]
        report = LoadReport()
        if not vanished:
            return report
        if names is not None:
            names.update(self.entity_names_of_posts(vanished))
        report.merge(self.retract_stale(vanished, [], []))
        report.merge(self.unlink_stale_images(vanished, []))
        report.merge(self._write_batches("retract_posts", cypher.DELETE_POSTS, vanished, param="ids"))
        report.posts_retracted += len(vanished)
        log.info("retracted %d posts of partition %s that its re-run no longer has", len(vanished), partition)
        return report

    def retract_stale(
        self, post_ids: Sequence[str], mentions: Sequence[MentionRow], relations: Sequence[RelationRow]
    ) -> LoadReport:
        """Remove what these posts contributed before but no longer do (a re-run replaces, never adds).

        Call before writing the new mentions and relations of the same posts.
        """
        keep_mentions: dict[str, list[str]] = {pid: [] for pid in post_ids}
        for m in mentions:
            keep_mentions.setdefault(m.post_id, []).append(f"{m.entity_id}|{m.start}|{m.end}|{m.surface}")
        keep_relations: dict[str, list[str]] = {pid: [] for pid in post_ids}
        for r in relations:
            if not self._relation_problem(r.relation):
                keep_relations.setdefault(r.post_id, []).append(f"{r.head_id}|{r.relation.upper()}|{r.tail_id}")
        report = self._write_batches(
            "retract_evidence",
            cypher.RETRACT_STALE_EVIDENCE,
            [{"id": pid, "keep": keep} for pid, keep in keep_relations.items()],
            param="posts",
        )
        return report.merge(
            self._write_batches(
                "retract_mentions",
                cypher.RETRACT_STALE_MENTIONS,
                [{"id": pid, "keep": keep} for pid, keep in keep_mentions.items()],
                param="posts",
            )
        )

    def record_run(self, run_id: str, **props: Any) -> None:
        with self.driver.session(database=self.database) as session:
            session.execute_write(lambda tx: tx.run(cypher.RECORD_RUN, run_id=run_id, props=props).consume())

    # -- internals ------------------------------------------------------------------------
    def _entity_type_problem(self, entity_type: str) -> str | None:
        try:
            cypher.label(entity_type)
        except cypher.InvalidIdentifier as exc:
            return str(exc)
        if self.allowed_entity_types is not None and entity_type not in self.allowed_entity_types:
            return f"entity type {entity_type!r} is not in the label set"
        return None

    def _relation_problem(self, relation: str) -> str | None:
        try:
            cypher.relationship_type(relation)
        except cypher.InvalidIdentifier as exc:
            return str(exc)
        if self.allowed_relations is not None and relation not in self.allowed_relations:
            return f"relation {relation!r} is not in the label set"
        return None

    def _partitions(self, rows: int, parts: int, jobs: int) -> int:
        """``parts`` node partitions when every one of the ``jobs`` they make gets a full batch on
        average, else 1: for a shard-sized load (a few hundred rows) the extra, smaller transactions
        cost more than the second writer saves (200 posts, 600 mentions, 600 triples split for 2
        writers: 0.28 s vs 0.13 s with 1; not split: 0.15 vs 0.14 s, bench/results/load_benchmark_shard.txt)."""
        if self._tx is not None:  # one transaction: one stream of statements
            return 1
        return parts if self.writers > 1 and rows >= jobs * self.batch_size else 1

    def _write_rounds(
        self, kind: str, make_query, jobs: dict[tuple, dict], rounds: list[list[tuple]], names: tuple[str, ...]
    ) -> LoadReport:
        """Write partitioned jobs round by round: the jobs of a round touch disjoint node partitions
        and run concurrently (``self.writers`` at a time); the next round starts when all are done."""
        report = LoadReport()
        if self._tx is not None or all(len(r) == 1 for r in rounds):
            for job in (j for r in rounds for j in r if j in jobs):
                report.merge(self._write_groups(kind, make_query, jobs[job], names))
            return report
        with ThreadPoolExecutor(self.writers, thread_name_prefix="mmkg-writer") as pool:
            for round_jobs in rounds:
                futures = [pool.submit(self._write_groups, kind, make_query, jobs[j], names) for j in round_jobs if j in jobs]
                for future in futures:  # in submission order: the report does not depend on timing
                    report.merge(future.result())
        return report

    def _write_groups(self, kind: str, make_query, groups: dict[tuple, list[dict]], names: tuple[str, ...]) -> LoadReport:
        """Write row groups keyed by their shared values (entity type or relation first): one query
        per entity type / relation, in sorted order; groups of one type (rarely more than one, e.g.
        two runs' rows in one call) in first-seen order."""
        report = LoadReport()
        for key in sorted(groups, key=lambda k: k[0]):
            shared = dict(zip(names, key))
            report.merge(self._write_batches(kind, make_query(key[0]), groups[key], shared=shared))
        return report

    def _write_disjoint_batches(self, kind: str, query: str, rows: list, results: list[dict]) -> LoadReport:
        """``_write_batches`` for rows that never share a node (one post each): their batches are split
        into ``self.writers`` contiguous runs written concurrently (when each gets a full batch), and the
        report and ``results`` are the same, in the same order, as one stream's."""
        per = -(-len(rows) // self.writers)
        per = -(-per // self.batch_size) * self.batch_size  # whole batches per writer
        if self._partitions(len(rows), self.writers, jobs=self.writers) == 1 or per >= len(rows):
            return self._write_batches(kind, query, rows, results=results)
        chunks = [rows[i : i + per] for i in range(0, len(rows), per)]
        outs: list[list[dict]] = [[] for _ in chunks]
        report = LoadReport()
        with ThreadPoolExecutor(len(chunks), thread_name_prefix="mmkg-writer") as pool:
            futures = [pool.submit(self._write_batches, kind, query, c, results=o) for c, o in zip(chunks, outs)]
            for future in futures:  # in submission order: the report does not depend on timing
                report.merge(future.result())
        for o in outs:
            results.extend(o)
        return report

    def _write_batches(
        self, kind: str, query: str, rows: list, param: str = "rows", shared: dict | None = None,
        results: list[dict] | None = None,
    ) -> LoadReport:
        """Batches of ``rows``, each one transaction (or all in ``self._tx``). A query that returns
        ``written`` has that counted in ``report.rows[kind]``, else the rows sent; records of other
        queries are appended to ``results`` when given. A relation batch that wrote fewer rows than
        it sent has its missing endpoints named (``_report_missing_endpoints``)."""
        report = LoadReport()
        with contextlib.ExitStack() as stack:
            session = None if self._tx is not None else stack.enter_context(self.driver.session(database=self.database))
            for start in range(0, len(rows), self.batch_size):
                batch = _Rows(rows[start : start + self.batch_size])
                params = {**(shared or {}), param: batch}
                if self._tx is not None:
                    records, counters = _execute(self._tx, query, params)
                else:
                    records, counters = _write_batch(session, query, params, report)
                report.add_counters(counters)
                if records and "element_ids" in records[0]:
                    self._remember_entities(records)
                if records and "written" in records[0]:
                    written = sum(r["written"] for r in records)
                    if kind == "relation" and written < len(batch):
                        self._report_missing_endpoints(batch, len(batch) - written, report)
                else:
                    written = len(batch)
                    if results is not None:
                        results.extend(records)
                report.rows[kind] += written
        return report

    def _remember_entities(self, records: list[dict]) -> None:
        """Keep the element ids a mention batch returned (``ids``, ``element_ids``) for the triples."""
        known = self._entity_nodes
        if len(known) > MAX_REMEMBERED_ENTITIES:
            known.clear()
        for record in records:
            known.update(zip(record["ids"], record["element_ids"]))

    def _report_missing_endpoints(self, batch: list[dict], missing: int, report: LoadReport) -> None:
        report.dropped["relations_missing_endpoint"] += missing
        ids = sorted({row[k] for row in batch for k in ("head_id", "tail_id")})
        absent = set(self._read(cypher.MISSING_ENTITIES, {"ids": ids})[0]["missing"])
        for row in batch:
            gone = [end for end in ("head", "tail") if row[f"{end}_id"] in absent]
            if gone:
                what = " and ".join(f"{end} entity {row[f'{end}_id']}" for end in gone)
                report.rejected.append(Rejection(
                    "relation", f"{row['head_id']}->{row['tail_id']}@{row['post_id']}",
                    f"{what} not in the graph (its mention was not written): triple not written"))

    def reapply_merges(self) -> LoadReport:
        """Apply the accepted entity merges again (``kg_loader.resolution``), in this writer's
        transaction when it has one: a load that wrote a merged-away entity anew commits with that
        entity folded back into its canonical one, so accepted merges survive re-runs."""
        from kg_loader.resolution import apply_accepted_merges, apply_accepted_merges_tx

        if self._tx is not None:
            applied = apply_accepted_merges_tx(self._tx, self.symmetric_relations)
        else:
            applied = apply_accepted_merges(self.driver, self.database, self.symmetric_relations)
        return LoadReport(merges_applied=applied.merges_applied)

    def remove_rejected_triples(self) -> LoadReport:
        """Delete the relation triples a person rejected (``kg_loader.relation_review``), in this writer's transaction
        when it has one: a load that wrote one again commits without it, so rejections survive re-runs."""
        from kg_loader.relation_review import remove_rejected_tx

        if self._tx is not None:
            removed = remove_rejected_tx(self._tx)
        else:
            with self.driver.session(database=self.database) as session:
                removed = session.execute_write(remove_rejected_tx)
        return LoadReport(triples_rejected=removed)

    def entity_names_of_posts(self, post_ids: Sequence[str]) -> list[str]:
        """Names of the entities these posts mention in the graph now (read in this writer's transaction)."""
        if not post_ids:
            return []
        return self._read(type_agreement.READ_POST_ENTITY_NAMES, {"ids": list(post_ids)})[0]["names"]

    def agree_entity_types(self, names: Iterable[str]) -> LoadReport:
        """Fold the entities of ``names`` that runs typed differently into one type each
        (``kg_loader.type_agreement``), in this writer's transaction when it has one."""
        args = (names, self.broader_types, self.symmetric_relations, self.allowed_entity_types)
        if self._tx is not None:
            agreed = type_agreement.agree_types(self._tx, *args)
        else:
            with self.driver.session(database=self.database) as session:
                agreed = session.execute_write(type_agreement.agree_types, *args)
        return LoadReport(entities_type_agreed=agreed.entities_folded,
                          names_left_split=defaultdict(int, agreed.left_split))

    def _read(self, query: str, params: dict) -> list[dict]:
        """A read in the open transaction, or in its own."""
        if self._tx is not None:
            return [r.data() for r in self._tx.run(query, params)]
        records, _, _ = self.driver.execute_query(query, params, database_=self.database)
        return [r.data() for r in records]


#: Parameters shared by a batch (the first names the label / relationship type): they travel once
#: per batch instead of once per row, a third less to pack, send and unpack.
_MENTION_SHARED = ("entity_type", "model_version", "label_set_id", "run_id")
_RELATION_SHARED = ("relation", "model_version", "label_set_id", "run_id")


def _mention_parts(row: MentionRow) -> tuple[tuple, list]:
    """The values a batch shares, and the row as a list (``cypher.MENTION_ROW``, ``upsert_mentions_as_lists``)."""
    shared = (row.entity_type, row.model_version, row.label_set_id, row.run_id)
    return shared, [row.post_id, row.entity_id, row.name, row.surface, row.start, row.end, row.score]


def _relation_parts(row: RelationRow) -> tuple[tuple, dict]:
    shared = (row.relation, row.model_version, row.label_set_id, row.run_id)
    return shared, {"head_id": row.head_id, "tail_id": row.tail_id, "post_id": row.post_id, "score": row.score}


def mention_statement(row: MentionRow) -> tuple[str, dict]:
    """``(query, parameters)`` writing this one mention, as the batched loader would (label not
    checked against a label set): for row-at-a-time writers and comparisons."""
    shared, params = _mention_parts(row)
    return (cypher.upsert_mentions(row.entity_type),
            {**dict(zip(_MENTION_SHARED, shared)), "rows": [dict(zip(cypher.MENTION_ROW, params))]})


def relation_statement(row: RelationRow) -> tuple[str, dict]:
    """``(query, parameters)`` writing this one triple's evidence, as the batched loader would."""
    shared, params = _relation_parts(row)
    return cypher.upsert_relations(row.relation), {**dict(zip(_RELATION_SHARED, shared)), "rows": [params]}


def _params(row) -> dict:
    """A flat row record as a query parameter map (``dataclasses.asdict`` deep-copies: 3x slower)."""
    names = _FIELD_NAMES.get(type(row))
    if names is None:
        names = _FIELD_NAMES[type(row)] = tuple(f.name for f in fields(row))
    return {name: getattr(row, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _run_batch(tx, query: str, params: dict) -> tuple[list[dict], Any]:
    """Run one statement in ``tx``: (its records as dicts, its update counters)."""
    result = tx.run(query, params)
    records = [dict(r.items()) for r in result]  # (``Record.data()`` walks every list item: 0.6 s per load)
    return records, result.consume().counters


class _Rows(list):
    """A batch's rows: a list whose ``repr`` is short. The driver formats ``repr`` of every ``RUN``'s
    parameters for its debug log whether or not that log is on (neo4j 6.4 ``Bolt5x5.run``): 0.3 s of
    Python CPU per benchmark load for the full rows."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def _execute(tx, query, params: dict) -> tuple[list[dict], Any]:
    """One batch in ``tx``: a query text (``_run_batch``), or a function of ``(tx, params)`` that runs
    its statements (``GraphWriter._relation_statement``)."""
    return query(tx, params) if callable(query) else _run_batch(tx, query, params)


def _summed(counters: list) -> SimpleNamespace:
    """The update counters of several statements of one batch, summed (what ``LoadReport.add_counters`` reads)."""
    return SimpleNamespace(**{name: sum(getattr(c, name) for c in counters) for name in COUNTERS})


def _version(row: PostRow) -> tuple:
    """A post row's version as ``cypher.UPSERT_POSTS`` compares it: (created_at, digest)."""
    return datetime.fromisoformat(row.created_at.replace("Z", "+00:00")), row.digest


def post_id_problem(post_id: str) -> str | None:
    """Why a post id cannot be written (too long to index), or None."""
    return _too_long("post id", post_id) if len(post_id.encode("utf-8")) > MAX_INDEX_KEY_BYTES else None


def _too_long(what: str, value: str) -> str:
    return (f"{what} of {len(value.encode('utf-8'))} UTF-8 bytes is over the {MAX_INDEX_KEY_BYTES}-byte limit "
            "of an indexed key")


def _write_batch(session, query, params: dict, report: LoadReport):
    """One batch in one transaction (``query``: a text, or a function of ``(tx, params)``, see ``_execute``).

    Neo4j picks a deadlock victim when the transaction commits, after a managed transaction's
    function has returned, and the driver would then wait about a second before retrying. So the
    batch first runs in an explicit transaction and a deadlock victim is re-run at once (a short
    jittered pause). Any other retryable failure (connection lost, leader switch, ...) goes to the
    driver's managed retry with its back-off and ``max_transaction_retry_time``; a non-retryable
    one is raised. Re-running a batch is safe: every write is a MERGE.
    """
    import neo4j.exceptions

    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with session.begin_transaction() as tx:
                outcome = _execute(tx, query, params)
                tx.commit()
            return outcome
        except neo4j.exceptions.TransientError as exc:
            if exc.code != DEADLOCK_CODE:
                break
            if attempt == DEADLOCK_RETRIES:
                raise RuntimeError(f"batch still deadlocks after {attempt} attempts: {exc}") from exc
            report.deadlock_retries += 1
            log.info("batch was a deadlock victim (attempt %d), retrying", attempt)
            time.sleep(random.uniform(0, 0.05 * attempt))
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            if not exc.is_retryable():
                raise
            break
    return session.execute_write(_execute, query, params)


def _partition(node_id: str, parts: int) -> int:
    """A node's write partition: a stable hash of its id (the same in every process and run)."""
    return zlib.crc32(node_id.encode("utf-8")) % parts if parts > 1 else 0


class _Partitions(dict):
    """``_partition`` of each node id, computed once per id (an entity is the endpoint of many rows)."""

    __slots__ = ("parts",)

    def __init__(self, parts: int):
        super().__init__()
        self.parts = parts

    def __missing__(self, node_id: str) -> int:
        self[node_id] = p = _partition(node_id, self.parts)
        return p


def _mention_rounds(parts: int) -> list[list[tuple[int, int]]]:
    """Jobs are (post partition, entity partition); round k pairs post partition i with entity
    partition i + k, a Latin square: within a round no two jobs share a post or an entity."""
    return [[(i, (i + k) % parts) for i in range(parts)] for k in range(parts)]


def _relation_rounds(parts: int) -> list[list[tuple[int, int]]]:
    """Jobs are unordered pairs of entity partitions (head and tail come from the same nodes).
    A round-robin tournament (``parts`` even) gives ``parts - 1`` rounds of ``parts / 2`` disjoint
    pairs, then one round of the ``parts`` pairs (i, i), which are disjoint too."""
    if parts == 1:
        return [[(0, 0)]]
    if parts % 2:
        raise ValueError("relation partitions must be 1 or even")
    order, rounds = list(range(parts)), []
    for _ in range(parts - 1):
        rounds.append([tuple(sorted((order[i], order[parts - 1 - i]))) for i in range(parts // 2)])
        order = [order[0], order[-1], *order[1:-1]]
    rounds.append([(i, i) for i in range(parts)])
    return rounds

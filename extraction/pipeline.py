"""The stages of one ingestion run over a data interval, as plain functions over staged files.

The Airflow DAG ``mmkg_ingest`` is wiring around these; ``mmkg ingest`` runs them without
Airflow. Stages hand each other small JSON-able dicts of *paths* (never data). Every file name is
deterministic per data interval, run and shard (``extraction.staging``): a retried task overwrites
exactly its own files, two runs of one interval at once never touch each other's, and the graph
load stays idempotent.

    plan_interval -> stage_posts -> [detect_shard -> type_shard] per shard -> agree_run_types
                  -> [kg_loader.load.load_shard] per shard -> run_report

``agree_run_types`` is the one step that sees every shard of the run: one surface form gets one type
across the whole run, decided from all its mentions' raw scores (see its docstring).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from extraction import staging
from extraction.zero_shot import abstained_names, agree_on_types, decided_type, least_sure_names
from mmkg.files import atomic_write_text
from mmkg.identity import typing_keys
from mmkg.ontology import load_ontology
from mmkg.records import OTHER_TYPE, Mention, QuarantinedRecord, RelationMention, TypedMention
from mmkg.settings import PipelineSettings

log = logging.getLogger(__name__)

#: Which zero-shot extractor types mentions and relations (MMKG_EXTRACTOR).
EXTRACTORS = ("label-similarity", "mg-vmoe")


@dataclass(frozen=True)
class IntervalPlan:
    """What one run covers: the partitions (days) of its data interval, and with which label set."""

    interval_key: str
    days: tuple[str, ...]
    run_id: str
    ontology_path: str
    label_set_id: str
    staging_dir: str
    #: Entity name -> the type a person set for it (``mmkg entities set-type``), read once when the run is
    #: planned: the run's type agreement gives these names that type (so their relations are read with it).
    type_decisions: dict[str, str] = field(default_factory=dict)

    @property
    def interval_dir(self) -> Path:
        return staging.interval_dir(self.staging_dir, self.interval_key)

    @property
    def run_dir(self) -> Path:
        """This run's own staging folder (``staging.run_dir``)."""
        return staging.run_dir(self.staging_dir, self.interval_key, self.run_id)

    def with_type_decisions(self, decisions: Mapping[str, str]) -> "IntervalPlan":
        """This plan carrying the types a person set (``kg_loader.type_agreement.person_types``), those whose
        type the label set has (a decision on a type since removed from it is not applied)."""
        types = {e.name for e in load_ontology(self.ontology_path).entity_types}
        dropped = {n: t for n, t in decisions.items() if t not in types}
        if dropped:
            log.warning("type decisions not applied, their type is not in the label set: %s", dict(sorted(dropped.items())))
        return replace(self, type_decisions={n: t for n, t in sorted(decisions.items()) if t in types})

    def to_dict(self) -> dict:
        return {**asdict(self), "days": list(self.days)}

    @classmethod
    def from_dict(cls, d: dict) -> "IntervalPlan":
        return cls(**{**d, "days": tuple(d["days"]), "type_decisions": dict(d.get("type_decisions") or {})})


def plan_interval(
    run_id: str,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    partition: str | None = None,
    settings: PipelineSettings | None = None,
) -> IntervalPlan:
    """Decide the partitions to read. The ontology is validated here, before any work.

    Scheduled runs and backfills read the days of ``[start, end)``; a manual run (which may have
    no logical date) names its ``partition`` (YYYY-MM-DD) instead.
    """
    settings = settings or PipelineSettings.from_env()
    ontology = load_ontology(settings.ontology_path)  # raises OntologyError with a clear message
    if partition:
        try:
            day = date.fromisoformat(partition)
        except ValueError as exc:
            raise ValueError(f"partition must be YYYY-MM-DD, got {partition!r}") from exc
        days = (day.isoformat(),)
        key = day.isoformat()
    elif data_interval_start is not None and data_interval_end is not None:
        start, end = _utc(data_interval_start), _utc(data_interval_end)
        if end <= start:
            raise ValueError(
                f"empty data interval [{start.isoformat()}, {end.isoformat()}): give a 'partition' "
                "param (YYYY-MM-DD) for manual runs without a logical date"
            )
        days = tuple(d.isoformat() for d in _days_covered(start, end))
        key = staging.interval_key(start, end)
    else:
        raise ValueError("no data interval and no 'partition' param: trigger with partition=YYYY-MM-DD")
    return IntervalPlan(key, days, run_id, str(settings.ontology_path), ontology.label_set_id, str(settings.staging_dir))


def stage_posts(plan: IntervalPlan, settings: PipelineSettings | None = None) -> tuple[list[dict], dict]:
    """Read and validate the interval's partitions; write quarantine and post shards as Parquet.

    Returns (shards, counts): one small dict of paths per shard, and the read counts. Streams one
    partition (day) at a time: a day is read, sorted by id, cut into shards of at most
    ``shard_size`` and written before the next is read, so memory holds one day, never the interval.
    Shards never mix days; each carries its ``partition``, the ``id_range`` it covers within it, and
    whether its load may retract the partition's posts it no longer holds (``retract_vanished``:
    not for a partition with an unreadable file). A day whose folder exists but holds no valid post
    still gets one (empty) shard, so its re-run retracts what the graph has of it; a missing
    partition folder gets none and retracts nothing.

    Everything goes to the run's own folder (``plan.run_dir``), under its lock: a second attempt of
    the same run waits, then finds what a killed attempt left (temporary files, shards beyond the
    new count, extraction files of the old shards) and removes it. The quarantine and read counts
    are then published beside ``runs/`` (atomic copies, byte-identical for the same input).
    """
    from extraction.posts import read_partition

    settings = settings or PipelineSettings.from_env()
    run = plan.run_dir
    run.mkdir(parents=True, exist_ok=True)
    with staging.locked(run / ".stage.lock"):
        staging.remove_temporary_files(run)
        staging.record_attempt(run, "stage")
        staging.remove_stale_runs(plan.staging_dir, plan.interval_key, keep=run)
        for kind in ("mentions", "typed_mentions", "relations", "type_scores"):  # derived from the shards restaged now
            for old in staging.shard_paths_in(run, kind):
                old.unlink(missing_ok=True)
        shards: list[dict] = []
        counts: Counter = Counter()
        with staging.RecordWriter(staging.file_in(run, staging.QUARANTINE), QuarantinedRecord) as quarantine:
            for day in plan.days:
                part = read_partition(settings.landing_dir, date.fromisoformat(day), staging_dir=plan.staging_dir)
                quarantine.write(part.quarantined)
                counts.update(part.counts)
                shards.extend(_stage_day(plan, day, part, len(shards), settings.shard_size))
                del part
        for stale in staging.shard_paths_in(run, "posts")[len(shards) :]:  # an earlier attempt had more
            stale.unlink(missing_ok=True)
        counts_dict = {k: int(v) for k, v in sorted(counts.items())}
        _write_json(run / "read_counts.json", counts_dict)
        with staging.locked(plan.interval_dir / ".publish.lock"):
            staging.remove_temporary_files(plan.interval_dir)  # a publisher killed mid-copy
            staging.publish_copy(staging.file_in(run, staging.QUARANTINE),
                                 staging.stage_path(plan.staging_dir, plan.interval_key, staging.QUARANTINE))
            staging.publish_copy(run / "read_counts.json", plan.interval_dir / "read_counts.json")
            for kind in staging.SHARDED_KINDS:  # shards of the layout before run folders
                for legacy in staging.shard_paths(plan.staging_dir, plan.interval_key, kind):
                    legacy.unlink(missing_ok=True)
    return shards, counts_dict


def _stage_day(plan: IntervalPlan, day: str, part, first: int, shard_size: int) -> list[dict]:
    """Write one partition's shards (numbered from ``first``) into the run folder; their dicts."""
    if part.counts.get("partition_missing"):
        return []
    chunks = staging.shard_posts(part.posts, shard_size) or [[]]
    retract = not part.counts.get("files_unreadable")
    shards = []
    for j, chunk in enumerate(chunks):
        number = first + j
        staging.write_posts(staging.file_in(plan.run_dir, "posts", number), chunk)
        lo = chunk[0].id if j > 0 else ""
        hi = chunks[j + 1][0].id if j + 1 < len(chunks) else None
        shards.append({
            "staging_dir": plan.staging_dir, "interval_key": plan.interval_key, "run_dir": str(plan.run_dir),
            "shard": number, "posts": len(chunk), "partition": day, "id_range": [lo, hi],
            "retract_vanished": retract,
        })  # fmt: skip
    return shards


def read_counts(plan: IntervalPlan) -> dict:
    """The read counts this run's ``stage_posts`` wrote (its own, not the interval's published copy)."""
    return json.loads((plan.run_dir / "read_counts.json").read_text())


def detect_shard(shard: dict) -> dict:
    """Entity mentions of a shard's posts -> ``mentions.parquet``."""
    posts = staging.read_posts(staging.shard_file(shard, "posts"))
    if not posts:  # an empty shard loads no model
        staging.write_records(staging.shard_file(shard, "mentions"), [], Mention)
        return {**shard, "mentions": 0, "posts_other_language": 0, "spans_cut_to_capitals": 0}
    detector = _detector()
    before = Counter(detector.stats)
    mentions = detector.detect(posts)
    staging.write_records(staging.shard_file(shard, "mentions"), mentions, Mention)
    stats = Counter(detector.stats)
    stats.subtract(before)
    # Posts in a language the detector does not read: their spans kept only capitalised words (detection docs).
    return {**shard, "mentions": len(mentions), "posts_other_language": stats["posts_other_language"],
            "spans_cut_to_capitals": stats["spans_cut_to_capitals"]}


def type_shard(shard: dict, plan: IntervalPlan) -> dict:
    """Zero-shot typing and relation extraction -> ``typed_mentions.parquet``, ``relations.parquet``."""
    ontology = load_ontology(plan.ontology_path)
    if ontology.label_set_id != plan.label_set_id:
        raise RuntimeError(
            f"ontology {plan.ontology_path} changed during the run ({plan.label_set_id} -> "
            f"{ontology.label_set_id}); re-run the interval"
        )
    posts = {p.id: p for p in staging.read_posts(staging.shard_file(shard, "posts"))}
    mentions = staging.read_mentions(staging.shard_file(shard, "mentions"))
    staging.shard_file(shard, "type_scores").unlink(missing_ok=True)  # written again below when the typer scores
    if not posts:  # an empty shard (a partition with no valid post) loads no model
        staging.write_records(staging.shard_file(shard, "typed_mentions"), [], TypedMention)
        staging.write_records(staging.shard_file(shard, "relations"), [], RelationMention)
        return {**shard, "typed_mentions": 0, "mentions_abstained": 0, "mentions_unreadable_script": 0,
                "images_read": 0, "images_unusable": 0, "images_changed_since_staging": 0, "relations": 0,
                "model_version": None}
    settings = PipelineSettings.from_env()
    extractor = extractor_for(settings.extractor, settings.entity_checkpoint, settings.relation_checkpoint)
    readable = [m for m in mentions if readable_script(m.text)]
    stats_before = Counter(getattr(extractor, "stats", {}))
    if hasattr(extractor, "type_mentions_scored"):  # its raw scores are the run-wide agreement's evidence
        typed, raw = extractor.type_mentions_scored(posts, readable, ontology)
        write_type_evidence(shard, posts, typed, raw, extractor.min_type_score, ontology,
                            getattr(extractor, "type_min_gap", None))
    else:
        typed = extractor.type_mentions(posts, readable, ontology)
    relations = extractor.extract_relations(posts, typed, ontology)
    # Images the models read (none with checkpoints no image can change: MGVMoEExtractor.reads_images), and those
    # they could not (undecodable, or swapped on disk since staging): those posts were scored on their text alone.
    image_stats = Counter(getattr(extractor, "stats", {}))
    image_stats.subtract(stats_before)
    # Mentions in a script the encoders were not trained on are not guessed at: they abstain, counted.
    unreadable = [TypedMention(m, OTHER_TYPE, 0.0, extractor.model_version, ontology.label_set_id)
                  for m in mentions if not readable_script(m.text)]
    staging.write_records(staging.shard_file(shard, "typed_mentions"), typed + unreadable, TypedMention)
    staging.write_records(staging.shard_file(shard, "relations"), relations, RelationMention)
    return {
        **shard,
        "typed_mentions": sum(t.entity_type != OTHER_TYPE for t in typed),
        "mentions_abstained": sum(t.entity_type == OTHER_TYPE for t in typed),
        "mentions_unreadable_script": len(unreadable),
        "images_read": image_stats["images_encoded"],
        "images_unusable": image_stats["images_failed"],
        "images_changed_since_staging": image_stats["images_changed_since_staging"],
        "relations": len(relations),
        "model_version": extractor.model_version,
    }


def write_type_evidence(shard: dict, posts: dict, typed: list[TypedMention], raw, min_score: float, ontology,
                        min_gap: float | None = None) -> None:
    """The shard's ``type_scores`` file: each typed mention's surface key, shard decision and raw scores, with the
    typer's decision rule (``min_score``, ``min_gap``) that ``agree_run_types`` applies again."""
    from mmkg.identity import entity_name

    staging.write_type_scores(staging.shard_file(shard, "type_scores"), staging.TypeScores(
        entity_types=tuple(e.name for e in ontology.entity_types), min_score=float(min_score),
        label_set_id=ontology.label_set_id, post_ids=tuple(t.mention.post_id for t in typed),
        spans=tuple((t.mention.start, t.mention.end) for t in typed),
        keys=tuple(entity_name(t.mention, {t.mention.post_id: posts[t.mention.post_id].text}) for t in typed),
        shard_types=tuple(t.entity_type for t in typed), scores=tuple(tuple(map(float, r)) for r in raw.tolist()),
        min_gap=min_gap,
    ))  # fmt: skip


def agree_run_types(plan: IntervalPlan, shards: list[dict]) -> list[dict]:
    """One type per surface form across the whole run, not only per shard.

    Reads every shard's ``type_scores`` (written by ``type_shard``) and decides again over all of the
    run's mentions at once with the same rule the typer applies per shard (``zero_shot.agree_on_types``:
    the best mean raw score over all mentions of the form, a second type only for a homonym with strong
    evidence, then narrowed to a fitting subtype; a handle that spells a name of its post is decided with that
    name's mentions, ``mmkg.identity.typing_keys``). Where the run's decision differs from a shard's, that
    shard's ``typed_mentions`` get the run's type (score: its softmax probability) and the relations of
    the posts holding a retyped mention are extracted again (their candidates depend on the types); the
    other posts' relations stay as they are. So the entity id, which hashes the type, is the same in every
    shard of the run.

    Deterministic and idempotent: the decision depends only on the staged scores (in shard order), and
    what changed is measured against the shard's own decision in ``type_scores``, not against the file
    this step rewrites; a retry rewrites the same files with the same content. A run of one shard
    changes nothing (the rule is the one the shard applied), but for the names a person set a type for
    (``plan.type_decisions``, read when the run was planned): their mentions get that type, whatever the
    scores. Runs of other intervals are not consulted: a decision that read their entities would depend on
    which interval loaded first; the same name typed differently by two runs is folded by the load
    (``kg_loader.type_agreement``) instead.

    Returns the shard dicts with the counts updated and ``mentions_retyped_in_run`` added; writes
    ``type_agreement.json`` into the run's folder: what changed, and the names the run abstained on (not written
    to the graph; ``zero_shot.abstained_names``: the most mentioned, their two best types and why) and the names it
    typed by the narrowest margin (``zero_shot.least_sure_names``; a name a person typed is not among them), which the
    run report lists for a person to type (``mmkg entities set-type``, then re-run the interval).
    """
    import torch

    from mmkg.ontology import load_ontology

    ontology = load_ontology(plan.ontology_path)
    if ontology.label_set_id != plan.label_set_id:
        raise RuntimeError(f"ontology {plan.ontology_path} changed during the run ({plan.label_set_id} -> "
                           f"{ontology.label_set_id}); re-run the interval")
    evidence = []  # (shard position, TypeScores)
    for i, shard in enumerate(shards):
        path = staging.shard_file(shard, "type_scores")
        if path.exists():
            evidence.append((i, staging.read_type_scores(path)))
    out = [{**shard, "mentions_retyped_in_run": 0} for shard in shards]
    summary = {"shards_with_scores": len(evidence), "surface_forms": 0, "mentions_retyped": 0,
               "posts_relations_redone": 0, "retyped": [], "names_abstained": 0, "abstained": [],
               "names_typed_least_sure": 0, "least_sure": []}
    if evidence:
        names = [e.name for e in ontology.entity_types]
        first = evidence[0][1]
        for _, ts in evidence:
            if (list(ts.entity_types), ts.label_set_id, ts.min_score, ts.min_gap) != (
                    names, ontology.label_set_id, first.min_score, first.min_gap):
                raise RuntimeError(f"type scores of one run disagree on label set or typer ({ts.label_set_id}, "
                                   f"{ts.min_score}, {ts.min_gap} vs {ontology.label_set_id}, {first.min_score}, "
                                   f"{first.min_gap}); re-run the interval")
        keys = [k for _, ts in evidence for k in ts.keys]
        raw = torch.tensor([r for _, ts in evidence for r in ts.scores], dtype=torch.float32).reshape(len(keys), len(names))
        post_ids = [p for _, ts in evidence for p in ts.post_ids]
        typing = typing_keys(post_ids, keys)
        decided = agree_on_types(typing, raw, first.min_score, parents=ontology.parent_indices(), min_gap=first.min_gap)
        for j, key in enumerate(keys):  # a person's word beats the scores
            if key in plan.type_decisions:
                decided[j] = names.index(plan.type_decisions[key])
        summary["surface_forms"] = len(set(keys))
        summary["names_typed_by_a_person"] = sorted(set(keys) & set(plan.type_decisions))
        summary["names_abstained"], abstained = abstained_names(
            typing, raw, decided, names, first.min_score, first.min_gap, ontology.parent_indices())
        reviewable = [None if key in plan.type_decisions else d for key, d in zip(keys, decided)]  # not a person's
        summary["names_typed_least_sure"], least_sure = least_sure_names(
            typing, raw, reviewable, names, ontology.parent_indices())
        summary["abstained"], summary["least_sure"] = _with_posts(abstained, typing, post_ids), _with_posts(
            least_sure, typing, post_ids)
        retyped: dict[tuple[str, str, str], int] = Counter()
        row = 0
        extractor = None
        for i, ts in evidence:
            changes = {}  # (post id, start, end) -> (type, score)
            for j in range(len(ts.keys)):
                label, score = decided_type(raw[row + j], decided[row + j], names)
                if label != ts.shard_types[j]:
                    changes[(ts.post_ids[j], *ts.spans[j])] = (label, score)
                    retyped[(ts.keys[j], ts.shard_types[j], label)] += 1
            row += len(ts.keys)
            if changes:
                if extractor is None:
                    settings = PipelineSettings.from_env()
                    extractor = extractor_for(settings.extractor, settings.entity_checkpoint, settings.relation_checkpoint)
                out[i].update(_apply_run_types(out[i], changes, extractor, ontology))
                summary["mentions_retyped"] += len(changes)
                summary["posts_relations_redone"] += len({k[0] for k in changes})
        summary["retyped"] = [{"name": k, "from": a, "to": b, "mentions": n} for (k, a, b), n in sorted(retyped.items())]
    _write_json(plan.run_dir / "type_agreement.json", summary)
    return out


def _apply_run_types(shard: dict, changes: dict, extractor, ontology) -> dict:
    """Rewrite one shard's typed mentions with the run's types and re-extract the relations of the posts
    holding a retyped mention; the shard's counts after it."""
    typed_path, relations_path = staging.shard_file(shard, "typed_mentions"), staging.shard_file(shard, "relations")
    typed = []
    for tm in staging.read_typed_mentions(typed_path):
        change = changes.get((tm.mention.post_id, tm.mention.start, tm.mention.end))
        typed.append(tm if change is None else replace(tm, entity_type=change[0], score=change[1]))
    redo = {post_id for post_id, _, _ in changes}
    all_posts = staging.read_posts(staging.shard_file(shard, "posts"))
    posts = {p.id: p for p in all_posts if p.id in redo}
    if hasattr(extractor, "forget_posts"):
        extractor.forget_posts()
    fresh = extractor.extract_relations(posts, [t for t in typed if t.mention.post_id in redo], ontology)
    if hasattr(extractor, "forget_posts"):
        extractor.forget_posts()
    by_post: dict[str, list[RelationMention]] = {}
    for rel in [r for r in staging.read_relations(relations_path) if r.post_id not in redo] + fresh:
        by_post.setdefault(rel.post_id, []).append(rel)
    relations = [rel for p in all_posts for rel in by_post.get(p.id, [])]  # in post order, as type_shard wrote them
    staging.write_records(typed_path, typed, TypedMention)
    staging.write_records(relations_path, relations, RelationMention)
    return {
        "typed_mentions": sum(t.entity_type != OTHER_TYPE for t in typed),
        "mentions_abstained": sum(t.entity_type == OTHER_TYPE for t in typed) - shard.get("mentions_unreadable_script", 0),
        "relations": len(relations),
        "mentions_retyped_in_run": len(changes),
    }


#: Scripts the packaged encoders read: all-MiniLM-L6-v2 was trained on English text (its vocabulary has
#: no word pieces for Hangul, Kana or Han beyond single characters), so a mention written mostly in
#: another script is not typed (Spanish or Portuguese names are Latin script and are typed).
READABLE_SCRIPTS = ("LATIN",)


def readable_script(text: str) -> bool:
    """Whether at least half of a mention's letters are in ``READABLE_SCRIPTS`` (digits-only: readable)."""
    import unicodedata

    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return True
    latin = sum(unicodedata.name(ch, "").startswith(READABLE_SCRIPTS) for ch in letters)
    return 2 * latin >= len(letters)


#: Graph counters of the shard loads summed into the run report's ``graph``.
_GRAPH_COUNTERS = ("nodes_created", "nodes_deleted", "relationships_created", "relationships_deleted",
                   "properties_set", "deadlock_retries", "transaction_retries", "posts_superseded",
                   "posts_retracted", "entities_type_agreed", "triples_rejected")


#: How many of a listed name's posts ``type_agreement.json`` and the run report name (the first in the run's order).
POSTS_SHOWN = 3


def _with_posts(entries: list[dict], keys: list[str], post_ids: list[str], shown: int = POSTS_SHOWN) -> list[dict]:
    """``entries`` (of ``abstained_names`` / ``least_sure_names``) each with ``posts``: the first ``shown`` posts that
    mention its name (``keys`` and ``post_ids`` per mention), so a person reviewing it reads where it was said."""
    by_key: dict[str, dict[str, None]] = {}
    for key, post_id in zip(keys, post_ids):
        by_key.setdefault(key, {})[post_id] = None
    return [{**e, "posts": list(by_key.get(e["name"], {}))[:shown]} for e in entries]


#: How many abstained names, and how many least sure typed names, the run report lists (``type_agreement.json``
#: holds more).
ABSTAINED_REPORTED = 10


def _name_line(entry: dict) -> str:
    """One abstained or least sure name of ``type_agreement.json`` as the line a person reads."""
    return (f"{entry['name']} ({entry['mentions']}): " + " / ".join(f"{t} {v}" for t, v in entry["types"])
            + (f", gap {entry['gap']}" if "gap" in entry else "") + (f" - {entry['reason']}" if "reason" in entry else "")
            + (f" [posts {', '.join(entry['posts'])}]" if entry.get("posts") else ""))


def _typing_review_for_report(plan: IntervalPlan) -> dict:
    """What the run asks a person to look at in its typing, for its report, from ``type_agreement.json`` (none where
    the typer stages no scores): the names it abstained on (their count and the most mentioned) and the names it
    typed by the narrowest margin (``zero_shot.least_sure_names``: their count and the narrowest), each as one line."""
    path = plan.run_dir / "type_agreement.json"
    agreement = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {"names_abstained": agreement.get("names_abstained", 0),
            "names_abstained_most_mentioned": [_name_line(a) for a in agreement.get("abstained", [])[:ABSTAINED_REPORTED]],
            "names_typed_least_sure": agreement.get("names_typed_least_sure", 0),
            "names_typed_least_sure_listed": [_name_line(a) for a in agreement.get("least_sure", [])[:ABSTAINED_REPORTED]]}


def run_report(plan: IntervalPlan, read_counts: dict, loads: list[dict]) -> dict:
    """The run's summary, written to the run's folder and published beside it, and returned.

    ``costs`` says what faults cost the run: attempts of ``stage_posts`` (more than 1: re-run after
    a failure or a killed process), shard loads re-run after a failed attempt, whole shard
    transactions re-run after a transient failure (a lost connection, a server restart, a
    deadlock), and batches re-run as deadlock victims.
    """
    total = Counter()
    rejected: list = []
    for load in loads:
        for k, v in load.get("rows", {}).items():
            total[f"rows_{k}"] += v
        for k in _GRAPH_COUNTERS:
            total[k] += load.get(k, 0)
        for k, v in load.get("dropped", {}).items():
            total[f"dropped_{k}"] += v
        for k, v in load.get("names_left_split", {}).items():
            total[f"names_left_split_{k}"] += v
        rejected.extend(load.get("rejected", []))
    report = {
        "run_id": plan.run_id,
        "interval": plan.interval_key,
        "partitions": list(plan.days),
        "label_set_id": plan.label_set_id,
        "posts_read": read_counts.get("records", 0),
        "posts_valid": read_counts.get("posts", 0),
        "posts_quarantined": read_counts.get("rejected", 0),
        "images_bad": read_counts.get("images", 0) - read_counts.get("images_ok", 0),
        "quarantine": {
            k: v for k, v in read_counts.items() if k.startswith(("rejected_", "images_")) and k != "images_ok"
        },
        "mentions": sum(load.get("mentions", 0) for load in loads),
        "entities_typed": sum(load.get("typed_mentions", 0) for load in loads),
        "mentions_abstained": sum(load.get("mentions_abstained", 0) for load in loads),
        "mentions_unreadable_script": sum(load.get("mentions_unreadable_script", 0) for load in loads),
        "posts_other_language": sum(load.get("posts_other_language", 0) for load in loads),
        "spans_cut_to_capitals": sum(load.get("spans_cut_to_capitals", 0) for load in loads),
        "images_read_by_the_model": sum(load.get("images_read", 0) for load in loads),
        "images_unusable_by_the_model": sum(load.get("images_unusable", 0) for load in loads),
        "images_changed_since_staging": sum(load.get("images_changed_since_staging", 0) for load in loads),
        "relations": sum(load.get("relations", 0) for load in loads),
        "mentions_retyped_in_run": sum(load.get("mentions_retyped_in_run", 0) for load in loads),
        **_typing_review_for_report(plan),
        "graph": dict(sorted(total.items())),
        "rejected_by_loader": rejected,
        "costs": {
            "stage_attempts": staging.attempts(plan.run_dir, "stage"),
            "load_reruns": sum(max(load.get("load_attempt", 1) - 1, 0) for load in loads),
            "transaction_retries": total["transaction_retries"],
            "deadlock_retries": total["deadlock_retries"],
        },
        "partitions_not_retracted": sorted(
            {load["partition"] for load in loads if load.get("partition") and not load.get("retract_vanished")}
        ),
    }
    _write_json(plan.run_dir / "run_report.json", report)
    with staging.locked(plan.interval_dir / ".publish.lock"):
        staging.publish_copy(plan.run_dir / "run_report.json", plan.interval_dir / "run_report.json")
    return report


# -- process-wide singletons: models load once per task process -------------------------------
@lru_cache(maxsize=1)
def _detector():
    from extraction.detection import EntityDetector

    return EntityDetector()


@lru_cache(maxsize=2)
def extractor_for(name: str, entity_checkpoint: str = "", relation_checkpoint: str = ""):
    """The zero-shot extractor, loaded once per task process (and per checkpoint choice)."""
    if name == "label-similarity":
        from extraction.label_similarity import LabelSimilarityExtractor

        return LabelSimilarityExtractor()
    if name == "mg-vmoe":
        from extraction.mg_vmoe import MGVMoEExtractor
        from models.checkpoint import DEFAULT_ENTITY_CHECKPOINT, DEFAULT_RELATION_CHECKPOINT
        from models.registry import resolve

        return MGVMoEExtractor(
            resolve(entity_checkpoint or DEFAULT_ENTITY_CHECKPOINT),
            resolve(relation_checkpoint or DEFAULT_RELATION_CHECKPOINT),
        )
    raise ValueError(f"MMKG_EXTRACTOR must be one of {EXTRACTORS}, got {name!r}")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _days_covered(start: datetime, end: datetime) -> list[date]:
    """Calendar days (UTC) that overlap [start, end)."""
    days, d = [], start.date()
    last = (end - timedelta(microseconds=1)).date()
    while d <= last:
        days.append(d)
        d += timedelta(days=1)
    return days


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


__all__ = ["IntervalPlan", "plan_interval", "stage_posts", "read_counts", "detect_shard", "type_shard",
           "agree_run_types", "run_report"]

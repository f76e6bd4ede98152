"""The stages of one ingestion run over a data interval, as plain functions over staged files.

The Airflow DAG ``mmkg_ingest`` is wiring around these; ``mmkg ingest`` runs them without
Airflow. Stages hand each other small JSON-able dicts of *paths* (never data), and every file
name is deterministic per data interval and shard, so a re-run or backfill of an interval
overwrites exactly its own files and the graph load stays idempotent.

    plan_interval -> stage_posts -> [detect_shard -> type_shard -> kg_loader.load.load_shard] per shard
                                                                              -> run_report
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from extraction import staging
from mmkg.files import atomic_write_text
from mmkg.ontology import load_ontology
from mmkg.records import OTHER_TYPE, Mention, RelationMention, TypedMention
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

    @property
    def interval_dir(self) -> Path:
        return staging.interval_dir(self.staging_dir, self.interval_key)

    def to_dict(self) -> dict:
        return {**asdict(self), "days": list(self.days)}

    @classmethod
    def from_dict(cls, d: dict) -> "IntervalPlan":
        return cls(**{**d, "days": tuple(d["days"])})


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

    Returns (shards, counts): one small dict of paths per shard, and the read counts.
    """
    from extraction.posts import read_partition

    settings = settings or PipelineSettings.from_env()
    out = plan.interval_dir
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    posts, quarantined, counts = [], [], Counter()
    for day in plan.days:
        part = read_partition(
            settings.landing_dir, date.fromisoformat(day), run_seen_ids=seen, staging_dir=plan.staging_dir
        )
        posts.extend(part.posts)
        quarantined.extend(part.quarantined)
        counts.update(part.counts)
    staging.write_quarantine(staging.stage_path(plan.staging_dir, plan.interval_key, staging.QUARANTINE), quarantined)
    written = staging.write_post_shards(plan.staging_dir, plan.interval_key, posts, settings.shard_size)
    shards = [
        {"staging_dir": plan.staging_dir, "interval_key": plan.interval_key, "shard": i, "posts": len(batch)}
        for i, batch in enumerate(staging.shard_posts(posts, settings.shard_size))
    ]
    assert len(shards) == len(written)
    counts_dict = {k: int(v) for k, v in sorted(counts.items())}
    _write_json(out / "read_counts.json", counts_dict)
    return shards, counts_dict


def detect_shard(shard: dict) -> dict:
    """Entity mentions of a shard's posts -> ``mentions.parquet``."""
    posts = staging.read_posts(staging.shard_file(shard, "posts"))
    mentions = _detector().detect(posts)
    staging.write_records(staging.shard_file(shard, "mentions"), mentions, Mention)
    return {**shard, "mentions": len(mentions)}


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
    settings = PipelineSettings.from_env()
    extractor = extractor_for(settings.extractor, settings.entity_checkpoint, settings.relation_checkpoint)
    readable = [m for m in mentions if readable_script(m.text)]
    typed = extractor.type_mentions(posts, readable, ontology)
    relations = extractor.extract_relations(posts, typed, ontology)
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
        "relations": len(relations),
        "model_version": extractor.model_version,
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


def run_report(plan: IntervalPlan, read_counts: dict, loads: list[dict]) -> dict:
    """The run's summary, written beside the staged files and returned to the caller."""
    total = Counter()
    rejected: list = []
    for load in loads:
        for k, v in load.get("rows", {}).items():
            total[f"rows_{k}"] += v
        for k in ("nodes_created", "relationships_created", "relationships_deleted", "properties_set", "deadlock_retries"):
            total[k] += load.get(k, 0)
        for k, v in load.get("dropped", {}).items():
            total[f"dropped_{k}"] += v
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
        "relations": sum(load.get("relations", 0) for load in loads),
        "graph": dict(sorted(total.items())),
        "rejected_by_loader": rejected,
    }
    _write_json(plan.interval_dir / "run_report.json", report)
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


__all__ = ["IntervalPlan", "plan_interval", "stage_posts", "detect_shard", "type_shard", "run_report"]

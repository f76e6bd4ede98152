"""Parquet staging: interval keys, paths, shards, typed round-trips, atomic writes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from extraction import staging as st
from extraction.posts import read_partition
from mmkg.records import ImageRef, Mention, Post, QuarantinedRecord, RelationMention, TypedMention

SAMPLE_LANDING = Path(__file__).resolve().parent.parent / "sample_data" / "landing"
UTC = timezone.utc


def make_post(pid: str, **kw) -> Post:
    fields = {"text": f"Marta Silva 🎉 #{pid} @x https://e.example/{pid} — 日本語", "created_at": "2026-11-01T08:00:00+00:00"}
    fields.update(kw)
    return Post(id=pid, **fields)


def make_mention(pid: str = "p1", start: int = 0, end: int = 11, label: str | None = "PERSON") -> Mention:
    return Mention(post_id=pid, start=start, end=end, text="Marta Silva"[: end - start], detector="spacy", ner_label=label)


def make_typed(m: Mention, entity_type: str = "Person", score: float = 0.8125) -> TypedMention:
    return TypedMention(mention=m, entity_type=entity_type, score=score, model_version="label-sim@1", label_set_id="abc123")


# --- interval keys and paths --------------------------------------------------------------------


def test_interval_key_daily() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert st.interval_key(start, start + timedelta(days=1)) == "2026-11-01"
    assert st.interval_key(datetime(2026, 11, 1), datetime(2026, 11, 2)) == "2026-11-01"  # naive = UTC


def test_interval_key_other_intervals() -> None:
    start = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert st.interval_key(start, start + timedelta(hours=1)) == "20261101T0630_20261101T0730"
    assert st.interval_key(start, start + timedelta(days=1)) == "20261101T0630_20261102T0630"  # a day, not midnight
    two_days = datetime(2026, 11, 1, tzinfo=UTC)
    assert st.interval_key(two_days, two_days + timedelta(days=2)) == "20261101T0000_20261103T0000"
    # Zones are converted to UTC first: midnight at UTC+2 is not a UTC day.
    plus2 = timezone(timedelta(hours=2))
    assert st.interval_key(datetime(2026, 11, 2, 2, tzinfo=plus2), datetime(2026, 11, 3, 2, tzinfo=plus2)) == "2026-11-02"
    assert st.interval_key(datetime(2026, 11, 2, tzinfo=plus2), datetime(2026, 11, 3, tzinfo=plus2)) == "20261101T2200_20261102T2200"
    with pytest.raises(ValueError):
        st.interval_key(start, start - timedelta(minutes=1))


def test_stage_paths_are_deterministic(tmp_path: Path) -> None:
    assert st.stage_path(tmp_path, "2026-11-01", "posts", 3) == tmp_path / "2026-11-01" / "posts-00003.parquet"
    assert st.stage_path(tmp_path, "2026-11-01", "typed_mentions", 0).name == "typed_mentions-00000.parquet"
    assert st.stage_path(tmp_path, "2026-11-01", "quarantine") == tmp_path / "2026-11-01" / "quarantine.parquet"
    for bad in [("posts", None), ("posts", -1), ("quarantine", 0), ("nonsense", 0)]:
        with pytest.raises(ValueError):
            st.stage_path(tmp_path, "k", *bad)


def test_shard_posts_sorted_and_sized() -> None:
    posts = [make_post(pid) for pid in ["c", "a", "e", "b", "d"]]
    shards = st.shard_posts(posts, 2)
    assert [[p.id for p in s] for s in shards] == [["a", "b"], ["c", "d"], ["e"]]
    assert st.shard_posts(list(reversed(posts)), 2) == shards
    assert st.shard_posts([], 2) == []
    with pytest.raises(ValueError):
        st.shard_posts(posts, 0)


# --- round-trips --------------------------------------------------------------------------------


def test_posts_round_trip(tmp_path: Path) -> None:
    posts = [
        make_post("p1", author="falcons_fan", lang="en", source="sample", images=(
            ImageRef("images/a.png", "ok", "ab" * 32, "/landing/images/a.png", 96, 96),
            ImageRef("images/b.png", "missing"),
        )),
        make_post("p2"),
        make_post("p3", images=(ImageRef("ftp://x/y.png", "unsupported_scheme"),)),
    ]
    path = st.write_posts(tmp_path / "posts.parquet", posts)
    assert st.read_posts(path) == posts
    schema = pq.read_schema(path)
    assert str(schema.field("images").type).startswith("list<")


def test_quarantine_round_trip(tmp_path: Path) -> None:
    records = [
        QuarantinedRecord("dt=2026-11-01/posts.jsonl:7", "malformed_json", '{"id": "x", "te', None, {"message": "bad JSON"}),
        QuarantinedRecord("dt=2026-11-01/posts.jsonl:9", "image_missing", "images/a.png", "p9",
                          {"message": "no such file", "uri": "images/a.png", "n": 3, "nested": {"ok": [1, 2]}}),
        QuarantinedRecord("dt=2026-11-01/b.parquet", "unreadable_file", ""),
    ]
    path = st.write_quarantine(tmp_path / "q.parquet", records)
    assert st.read_quarantine(path) == records


def test_mentions_typed_mentions_relations_round_trip(tmp_path: Path) -> None:
    m1, m2 = make_mention(), Mention("p1", 26, 40, "Lisbon Falcons", "spacy", None)
    mentions = [m1, m2, Mention("p2", 0, 7, "#Bergen", "hashtag")]
    typed = [make_typed(m1), make_typed(m2, "Organization", 0.1 + 0.2)]
    relations = [RelationMention("p1", typed[0], typed[1], "member_of", 0.733, "label-sim@1", "abc123")]

    assert st.read_mentions(st.write_records(tmp_path / "m.parquet", mentions)) == mentions
    assert st.read_typed_mentions(st.write_records(tmp_path / "t.parquet", typed)) == typed
    assert st.read_relations(st.write_records(tmp_path / "r.parquet", relations)) == relations
    # Ids derived from fields survive too.
    assert [m.id for m in st.read_mentions(tmp_path / "m.parquet")] == [m.id for m in mentions]
    assert "head__mention__start" in pq.read_schema(tmp_path / "r.parquet").names


def test_empty_files_round_trip(tmp_path: Path) -> None:
    assert st.read_mentions(st.write_records(tmp_path / "a.parquet", [], Mention)) == []
    assert pq.read_schema(tmp_path / "a.parquet").names[:2] == ["post_id", "start"]
    assert st.read_relations(st.write_records(tmp_path / "b.parquet", [])) == []  # no type: no columns
    assert st.read_posts(st.write_posts(tmp_path / "c.parquet", [])) == []


def test_reader_refuses_another_record_type(tmp_path: Path) -> None:
    path = st.write_records(tmp_path / "t.parquet", [make_typed(make_mention())])
    with pytest.raises(ValueError, match="TypedMention"):
        st.read_mentions(path)
    with pytest.raises(TypeError):
        st.write_records(tmp_path / "mixed.parquet", [make_mention(), make_typed(make_mention())])


# --- atomic writes ------------------------------------------------------------------------------


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "k" / "mentions-00000.parquet"
    old = [make_mention("old")]
    st.write_records(target, old)
    real_write = pq.ParquetWriter.write_table

    def write_half_then_fail(self, table, *args, **kw):
        real_write(self, table.slice(0, 1), *args, **kw)  # some bytes really reach the temp file
        raise OSError("disk full")

    monkeypatch.setattr(st.pq.ParquetWriter, "write_table", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        st.write_records(target, [make_mention("new", i, i + 1) for i in range(10)])
    assert st.read_mentions(target) == old  # the previous complete file is untouched
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp file left behind

    fresh = tmp_path / "k" / "mentions-00001.parquet"
    with pytest.raises(OSError):
        st.write_records(fresh, [make_mention()])
    assert not fresh.exists()


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    st.write_records(path, [make_mention("a")])
    st.write_records(path, [make_mention("b")])
    assert [m.post_id for m in st.read_mentions(path)] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]
def test_records_stream_into_one_file_a_row_group_per_write(tmp_path: Path) -> None:
    mentions = [make_mention(f"p{i}", i, i + 1) for i in range(5)]
    path = tmp_path / "m.parquet"
    with st.RecordWriter(path, Mention) as writer:
        writer.write(mentions[:3])
        writer.write([])
        writer.write(mentions[3:])
    assert st.read_mentions(path) == mentions
    assert pq.ParquetFile(path).num_row_groups == 2
    with st.RecordWriter(tmp_path / "empty.parquet", Mention):
        pass
    assert st.read_mentions(tmp_path / "empty.parquet") == []
    with pytest.raises(RuntimeError, match="killed"):
        with st.RecordWriter(tmp_path / "never.parquet", Mention) as writer:
            writer.write(mentions)
            raise RuntimeError("killed half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.parquet", "m.parquet"]  # no partial file


# --- schema version -----------------------------------------------------------------------------


def _restamp(path: Path, version: bytes | None) -> None:
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata)
    metadata.pop(b"mmkg.schema_version")
    if version is not None:
        metadata[b"mmkg.schema_version"] = version
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_a_file_staged_with_another_schema_version_is_refused_naming_both(tmp_path: Path) -> None:
    path = st.write_records(tmp_path / "m.parquet", [make_mention()])
    _restamp(path, b"0")
    with pytest.raises(st.StagingSchemaError, match=r"schema version 0, but this mmkg reads schema version 1"):
        st.read_mentions(path)
    _restamp(path, None)
    with pytest.raises(st.StagingSchemaError, match=r"schema version \(none\)"):
        st.read_mentions(path)
    empty = st.write_records(tmp_path / "e.parquet", [], Mention)  # no rows is no excuse
    _restamp(empty, b"2")
    with pytest.raises(st.StagingSchemaError, match="version 2"):
        st.read_mentions(empty)


# --- stage_posts: streaming, run folders, re-runs -------------------------------------------------

ONTOLOGY = Path(__file__).resolve().parent.parent / "ontology" / "ontology.yaml"


def landing_post(pid: str, day: str, **kw) -> dict:
    return {"id": pid, "text": f"Marta Silva joins Lisbon Falcons, post {pid}", "created_at": f"{day}T10:00:00+00:00",
            "author": "fan", "lang": "en", "source": "synthetic", **kw}


def write_landing(landing: Path, days: dict[str, list[dict | str]]) -> Path:
    """``<landing>/dt=<day>/posts.jsonl`` with one line per record (a str is written as it is)."""
    import json

    for day, records in days.items():
        folder = landing / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
        (folder / "posts.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return landing


def plan_and_settings(landing: Path, staging_dir: Path, run_id: str, days: list[str], shard_size: int = 2):
    from extraction.pipeline import plan_interval
    from mmkg.settings import PipelineSettings

    settings = PipelineSettings(landing_dir=landing, staging_dir=staging_dir, ontology_path=ONTOLOGY,
                                shard_size=shard_size)
    start = datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(days[-1]).replace(tzinfo=UTC) + timedelta(days=1)
    return plan_interval(run_id, start, end, settings=settings), settings


def staged_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes), but attempt counters and lock files."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith((".attempts", ".lock"))}


def test_stage_posts_streams_each_day_into_its_own_shards_with_id_ranges(tmp_path: Path) -> None:
    from extraction.pipeline import stage_posts

    days = {"2026-11-01": [landing_post(f"a{i}", "2026-11-01") for i in (4, 0, 3, 1, 2)],
            "2026-11-02": [landing_post(f"b{i}", "2026-11-02") for i in (2, 0, 1)] + ["{not json"]}
    landing = write_landing(tmp_path / "landing", days)
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "manual__2026-11-03T00:00:00+00:00",
                                       list(days))
    shards, counts = stage_posts(plan, settings)
    assert [(s["partition"], s["posts"], s["id_range"]) for s in shards] == [
        ("2026-11-01", 2, ["", "a2"]), ("2026-11-01", 2, ["a2", "a4"]), ("2026-11-01", 1, ["a4", None]),
        ("2026-11-02", 2, ["", "b2"]), ("2026-11-02", 1, ["b2", None]),
    ]
    assert [s["shard"] for s in shards] == [0, 1, 2, 3, 4] and all(s["retract_vanished"] for s in shards)
    run = plan.run_dir
    assert run.parent == tmp_path / "staging" / plan.interval_key / "runs" and run.name.startswith("manual__2026-11-03T00_00_00_00_00-")
    assert [p.name for p in st.shard_paths_in(run, "posts")] == [f"posts-{i:05d}.parquet" for i in range(5)]
    assert [[p.id for p in st.read_posts(st.shard_file(s, "posts"))] for s in shards] == [
        ["a0", "a1"], ["a2", "a3"], ["a4"], ["b0", "b1"], ["b2"]]
    assert counts["posts"] == 8 and counts["rejected_malformed_json"] == 1
    # the quarantine and counts are published beside the run folders, byte-identical to the run's
    assert (plan.interval_dir / "quarantine.parquet").read_bytes() == (run / "quarantine.parquet").read_bytes()
    assert (plan.interval_dir / "read_counts.json").read_bytes() == (run / "read_counts.json").read_bytes()
    assert [q.reason for q in st.read_quarantine(plan.interval_dir / "quarantine.parquet")] == ["malformed_json"]


def test_sample_partition_stages_and_reads_back(tmp_path: Path) -> None:
    from extraction.pipeline import stage_posts

    plan, settings = plan_and_settings(SAMPLE_LANDING, tmp_path / "staging", "run-1", ["2026-11-02"], shard_size=8)
    shards, _ = stage_posts(plan, settings)
    result = read_partition(SAMPLE_LANDING, date(2026, 11, 2), staging_dir=tmp_path / "staging")
    n = -(-len(result.posts) // 8)
    assert n > 1 and [p.name for p in st.shard_paths_in(plan.run_dir, "posts")] == [f"posts-{i:05d}.parquet" for i in range(n)]
    staged = [p for shard in shards for p in st.read_posts(st.shard_file(shard, "posts"))]
    assert staged == sorted(result.posts, key=lambda p: p.id)
    assert st.read_quarantine(tmp_path / "staging" / "2026-11-02" / "quarantine.parquet") == result.quarantined


def test_an_empty_partition_gets_one_empty_shard_a_missing_one_none_an_unreadable_one_no_retraction(tmp_path):
    from extraction.pipeline import stage_posts

    landing = write_landing(tmp_path / "landing", {"2026-11-01": ["{broken"], "2026-11-03": [landing_post("c1", "2026-11-03")]})
    (landing / "dt=2026-11-03" / "b.parquet").write_bytes(b"PAR1 not really")
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "r", ["2026-11-01", "2026-11-02", "2026-11-03"])
    shards, counts = stage_posts(plan, settings)
    assert [(s["partition"], s["posts"], s["id_range"], s["retract_vanished"]) for s in shards] == [
        ("2026-11-01", 0, ["", None], True),  # exists, no valid post: its re-run retracts the day's posts
        ("2026-11-03", 1, ["", None], False),  # a file could not be read: retract nothing of the day
    ]  # dt=2026-11-02 is missing: no shard, nothing retracted
    assert counts["partition_missing"] == 1 and counts["files_unreadable"] == 1
    assert st.read_posts(st.shard_file(shards[0], "posts")) == []


def test_restaging_a_run_leaves_what_a_clean_run_leaves(tmp_path: Path) -> None:
    """A killed attempt left temporary files, a truncated shard beyond the new count and extraction
    files of old shards: the next attempt of the run removes them all, and its files
    are byte-identical to those of a run that never failed."""
    from extraction.pipeline import stage_posts

    landing = write_landing(tmp_path / "landing", {"2026-11-01": [landing_post(f"p{i}", "2026-11-01") for i in range(5)]})
    clean_plan, settings = plan_and_settings(landing, tmp_path / "clean", "run-1", ["2026-11-01"])
    stage_posts(clean_plan, settings)
    plan, settings = plan_and_settings(landing, tmp_path / "staging", "run-1", ["2026-11-01"])
    stage_posts(plan, settings)
    run = plan.run_dir
    (run / ".posts-00001.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half a file")
    (plan.interval_dir / ".quarantine.parquet.k1ll3d.tmp").write_bytes(b"PAR1")  # a publisher killed mid-copy
    (run / "posts-00007.parquet").write_bytes((run / "posts-00000.parquet").read_bytes()[:40])
    st.write_records(run / "mentions-00000.parquet", [make_mention("p0")])
    shards, _ = stage_posts(plan, settings)
    assert staged_tree(plan.interval_dir) == staged_tree(clean_plan.interval_dir)
    assert st.attempts(run, "stage") == 2 and len(shards) == 3


def test_two_runs_of_one_interval_stage_into_their_own_folders(tmp_path: Path) -> None:
    import os
    import threading

    from extraction.pipeline import stage_posts

    landing = write_landing(tmp_path / "landing", {"2026-11-01": [landing_post(f"p{i}", "2026-11-01") for i in range(7)]})
    one, settings = plan_and_settings(landing, tmp_path / "one", "run-a", ["2026-11-01"])
    stage_posts(one, settings)
    plans = [plan_and_settings(landing, tmp_path / "staging", run_id, ["2026-11-01"])[0] for run_id in ("run-a", "run-b")]
    errors: list[BaseException] = []

    def stage(plan):
        try:
            for _ in range(3):
                stage_posts(plan, settings)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stage, args=(p,)) for p in plans + plans]  # two threads per run, too
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert plans[0].run_dir != plans[1].run_dir
    alone = staged_tree(one.run_dir)
    assert staged_tree(plans[0].run_dir) == alone and staged_tree(plans[1].run_dir) == alone
    published = {k: v for k, v in staged_tree(plans[0].interval_dir).items() if "/" not in k}
    assert published == {k: v for k, v in staged_tree(one.interval_dir).items() if "/" not in k}
    # a run folder idle for more than a day goes when the interval is staged again, unless it is
    # being staged right now (its lock is held)
    old = plans[1].run_dir
    for path in (old, *old.iterdir()):
        os.utime(path, (0, 0))
    with st.locked(old / ".stage.lock"):
        os.utime(old, (0, 0))
        stage_posts(plans[0], settings)
    assert old.exists()
    stage_posts(plans[0], settings)
    assert not old.exists() and plans[0].run_dir.exists()

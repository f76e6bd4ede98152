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


def test_write_post_shards_removes_stale_shards(tmp_path: Path) -> None:
    posts = [make_post(f"p{i}") for i in range(5)]
    assert len(st.write_post_shards(tmp_path, "k", posts, 2)) == 3
    st.write_post_shards(tmp_path, "k", posts[:3], 2)  # a re-run with fewer posts
    paths = st.shard_paths(tmp_path, "k", "posts")
    assert [p.name for p in paths] == ["posts-00000.parquet", "posts-00001.parquet"]
    assert sorted(p.id for path in paths for p in st.read_posts(path)) == ["p0", "p1", "p2"]


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


def test_sample_partition_stages_and_reads_back(tmp_path: Path) -> None:
    key = st.interval_key(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    result = read_partition(SAMPLE_LANDING, date(2026, 11, 2))
    paths = st.write_post_shards(tmp_path, key, result.posts, 8)
    st.write_quarantine(st.stage_path(tmp_path, key, "quarantine"), result.quarantined)
    assert [p.name for p in paths] == ["posts-00000.parquet", "posts-00001.parquet", "posts-00002.parquet"]
    staged = [p for path in paths for p in st.read_posts(path)]
    assert staged == sorted(result.posts, key=lambda p: p.id)
    assert st.read_quarantine(tmp_path / key / "quarantine.parquet") == result.quarantined


# --- atomic writes ------------------------------------------------------------------------------


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "k" / "mentions-00000.parquet"
    old = [make_mention("old")]
    st.write_records(target, old)
    real_write = pq.write_table

    def write_half_then_fail(table, where, **kw):
        real_write(table.slice(0, 1), where, **kw)  # some bytes really reach the temp file
        raise OSError("disk full")

    monkeypatch.setattr(st.pq, "write_table", write_half_then_fail)
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

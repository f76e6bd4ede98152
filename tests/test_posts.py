"""Reading posts from the landing directory: the sample data, every bad-record kind, images."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from extraction.posts import MAX_ID_CHARS, MAX_PAYLOAD_CHARS, MAX_TEXT_CHARS, read_partition
from mmkg.images import ImageTooLarge, load_image_rgb
from mmkg.records import Post
from mmkg.settings import ImageSettings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
EXPECTED = json.loads((SAMPLE / "expected.json").read_text(encoding="utf-8"))
DAY = date(2026, 11, 1)
TS = "2026-11-01T08:00:00+00:00"


# --- helpers ------------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (8, 8), colour: str = "red", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    (root / f"dt={DAY.isoformat()}").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "images" / "ok.png").write_bytes(png_bytes())
    return root


def post(pid: object = "p1", text: object = "Marta Silva signed with Lisbon Falcons", **extra: object) -> dict:
    return {"id": pid, "text": text, "created_at": TS, **extra}


def write_lines(landing: Path, *lines: bytes | str | dict, name: str = "posts.jsonl") -> Path:
    raw = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=False)
        raw.append(line.encode("utf-8") if isinstance(line, str) else line)
    path = landing / f"dt={DAY.isoformat()}" / name
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def read(landing: Path, **kwargs):
    return read_partition(landing, DAY, **kwargs)


def only_reject(result) -> tuple[str, object]:
    """The single rejected record's reason and post id, asserting nothing else happened."""
    assert len(result.quarantined) == 1, result.quarantined
    q = result.quarantined[0]
    assert result.counts["rejected"] == 1
    assert result.counts[f"rejected_{q.reason}"] == 1
    assert q.details["message"]
    return q.reason, q.post_id


def image_of(landing: Path, ref: object, **kwargs):
    write_lines(landing, post(images=[ref]))
    result = read(landing, **kwargs)
    assert len(result.posts) == 1, "a bad image must never cost the post"
    return result, result.posts[0].images[0]


# --- the shipped sample data --------------------------------------------------------------------


@pytest.mark.parametrize("day", sorted(EXPECTED["days"]))
def test_sample_day_matches_expected(day: str, tmp_path: Path) -> None:
    exp = EXPECTED["days"][day]
    result = read_partition(SAMPLE / "landing", date.fromisoformat(day), staging_dir=tmp_path)
    c = result.counts
    assert (c["records"], c["posts"], c["partition_missing"]) == (exp["records"], exp["posts"], 0)
    assert len(result.posts) == exp["posts"]
    assert {k[len("rejected_"):]: v for k, v in c.items() if k.startswith("rejected_")} == exp["rejected"]
    assert c["rejected"] == sum(exp["rejected"].values())
    assert {k[len("images_"):]: v for k, v in c.items() if k.startswith("images_")} == exp["images"]
    got = [{"source": q.source, "reason": q.reason, "post_id": q.post_id} for q in result.quarantined]
    assert got == exp["quarantine"]
    assert c["quarantined"] == len(result.quarantined)
    # Every post-level reject keeps its original payload; image records name the image.
    for q in result.quarantined:
        assert q.payload
        assert q.details["message"]


def test_sample_totals_and_contract() -> None:
    seen: set[str] = set()
    totals = {"records": 0, "posts": 0}
    posts: list[Post] = []
    for day in sorted(EXPECTED["days"]):
        result = read_partition(SAMPLE / "landing", date.fromisoformat(day), seen)
        totals["records"] += result.counts["records"]
        totals["posts"] += result.counts["posts"]
        posts += result.posts
    assert totals == {k: EXPECTED["totals"][k] for k in totals}
    assert totals["posts"] >= 60
    assert len(seen) == len({p.id for p in posts}) == len(posts)
    for p in posts:
        assert p.created_at.endswith("+00:00") and p.text.strip()
    # The sample is meant to exercise the awkward parts of real posts.
    texts = " ".join(p.text for p in posts)
    assert "#" in texts and "@" in texts and "https://" in texts
    assert {p.lang for p in posts} >= {"en", "pt", "es", "de", "fr", "ja", "ko"}
    assert any(ord(ch) > 0x1F000 for ch in texts)  # emoji
    assert sum(1 for p in posts if p.images) > len(posts) // 2
    assert any(not p.images for p in posts)
    assert "1103501" in seen  # Parquet integer ids become strings


def test_sample_generator_is_deterministic(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SAMPLE / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True)
    assert json.loads((tmp_path / "expected.json").read_text()) == EXPECTED
    for day in EXPECTED["days"]:
        for path in sorted((SAMPLE / "landing" / f"dt={day}").iterdir()):
            if path.suffix != ".parquet":  # Parquet files carry the writer's version
                rel = path.relative_to(SAMPLE)
                assert (tmp_path / rel).read_bytes() == path.read_bytes(), rel
    total = sum(f.stat().st_size for f in (SAMPLE / "landing").rglob("*") if f.is_file())
    assert total < 1_000_000


# --- one bad record at a time -------------------------------------------------------------------


def test_valid_post_is_normalised(landing: Path) -> None:
    write_lines(landing, {"id": 42, "text": "Jon Park 🏀 #SeoulTigers @hoops https://x.example", "created_at": "2026-11-01T10:00:00+02:00",
                          "author": "hoops", "lang": "", "source": None, "images": ["images/ok.png"], "extra": {"ignored": True}})
    result = read(landing)
    assert result.quarantined == []
    (p,) = result.posts
    assert (p.id, p.created_at, p.author, p.lang, p.source) == ("42", "2026-11-01T08:00:00+00:00", "hoops", None, None)
    assert p.image is not None and p.image.width == 8
    assert result.counts["records"] == result.counts["posts"] == 1


def test_zulu_and_bom_and_blank_lines(landing: Path) -> None:
    path = write_lines(landing, "", json.dumps(post("a", created_at="2026-11-01T08:00:00Z")), "   ", json.dumps(post("b")))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = read(landing)
    assert [p.id for p in result.posts] == ["a", "b"]
    assert result.posts[0].created_at == "2026-11-01T08:00:00+00:00"
    assert result.counts["records"] == 2


@pytest.mark.parametrize(
    ("line", "reason", "post_id"),
    [
        ('{"id": "p1", "text": "unterminated', "malformed_json", None),
        ("[1, 2, 3]", "not_an_object", None),
        ('"just a string"', "not_an_object", None),
        (post(pid=None), "missing_id", None),
        (post(pid="  "), "missing_id", None),
        ({"text": "no id", "created_at": TS}, "missing_id", None),
        (post(text=None), "missing_text", "p1"),
        (post(text=""), "missing_text", "p1"),
        (post(text=" \n "), "missing_text", "p1"),
        (post(pid=1.5), "wrong_type", None),
        (post(pid=True), "wrong_type", None),
        (post(text=["a"]), "wrong_type", "p1"),
        (post(author=7), "wrong_type", "p1"),
        (post(images="images/ok.png"), "wrong_type", "p1"),
        (post(images=[1]), "wrong_type", "p1"),
        ({"id": "p1", "text": "t"}, "missing_created_at", "p1"),
        (post(created_at=1730000000), "wrong_type", "p1"),
        (post(created_at="yesterday"), "bad_created_at", "p1"),
        (post(created_at="2026-11-01T08:00:00"), "naive_created_at", "p1"),
        (post(created_at="2026-11-01"), "naive_created_at", "p1"),
        (post(text="x" * (MAX_TEXT_CHARS + 1)), "text_too_long", "p1"),
        (post(pid="x" * (MAX_ID_CHARS + 1)), "id_too_long", None),
        (post(pid=10**300), "id_too_long", None),
        ('{"id": "p1", "text": "lone \\ud800 surrogate", "created_at": "2026-11-01T08:00:00Z"}', "bad_encoding", "p1"),
    ],
)
def test_each_bad_record_is_quarantined_and_the_run_goes_on(landing: Path, line, reason: str, post_id) -> None:
    write_lines(landing, post("before"), line, post("after"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["before", "after"]
    (q,) = result.quarantined
    assert (q.reason, q.post_id) == (reason, post_id)
    assert q.source.endswith("posts.jsonl:2")
    assert q.payload == (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False))
    assert q.details["message"]
    assert result.counts["records"] == 3 and result.counts["rejected"] == 1


def test_text_at_limit_is_fine(landing: Path) -> None:
    write_lines(landing, post(text="é" * MAX_TEXT_CHARS))
    assert len(read(landing).posts) == 1


def test_invalid_utf8_line_costs_only_that_line(landing: Path) -> None:
    write_lines(landing, post("a"), b'{"id": "b", "text": "Caf\xe9", "created_at": "2026-11-01T08:00:00Z"}', post("c", text="café ☕"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["a", "c"]
    assert only_reject(result)[0] == "bad_encoding"
    assert "\\xe9" in result.quarantined[0].payload


def test_duplicate_id_first_wins_within_and_across_partitions(landing: Path) -> None:
    write_lines(landing, post("p1", text="first"), post("p1", text="second"))
    seen: set[str] = set()
    result = read(landing, run_seen_ids=seen)
    assert [p.text for p in result.posts] == ["first"]
    assert only_reject(result) == ("duplicate_id", "p1")
    assert seen == {"p1"}
    # Same set, another read: the id is already taken in this run.
    again = read(landing, run_seen_ids=seen)
    assert again.posts == [] and again.counts["rejected_duplicate_id"] == 2


def test_invalid_record_does_not_claim_its_id(landing: Path) -> None:
    write_lines(landing, post("p1", created_at="2026-11-01T08:00:00"), post("p1", text="the valid one"))
    result = read(landing)
    assert [p.text for p in result.posts] == ["the valid one"]
    assert only_reject(result)[0] == "naive_created_at"


def test_missing_partition_is_empty_not_an_error(tmp_path: Path) -> None:
    result = read_partition(tmp_path / "nowhere", DAY)
    assert result.posts == [] and result.quarantined == []
    assert result.counts["partition_missing"] == 1 and result.counts["records"] == 0


def test_hidden_and_other_files_are_skipped_and_counted(landing: Path) -> None:
    write_lines(landing, post("a"))
    write_lines(landing, "not json at all", name=".posts.jsonl.tmp")
    write_lines(landing, "not json at all", name="_SUCCESS")
    write_lines(landing, "not json at all", name="notes.txt")
    write_lines(landing, "not json at all", name="posts.json")
    (landing / f"dt={DAY.isoformat()}" / "sub.jsonl").mkdir()
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"] and result.counts["files"] == 1
    c = result.counts
    assert (c["files_skipped"], c["files_skipped_hidden"], c["files_skipped_unknown_type"], c["files_skipped_directory"]) == (5, 2, 2, 1)
    assert result.quarantined == []


# --- Parquet ------------------------------------------------------------------------------------


def test_parquet_rows_and_unreadable_file(landing: Path) -> None:
    part = landing / f"dt={DAY.isoformat()}"
    table = pa.table({
        "id": pa.array([7, 8, 9], pa.int64()),
        "text": ["Aurora Festival in Bergen 🎶", None, "Nimbus X2 by Corvid Labs"],
        "created_at": pa.array([datetime(2026, 11, 1, 8, tzinfo=timezone.utc)] * 3, pa.timestamp("us", tz="UTC")),
        "images": pa.array([["images/ok.png"], [], None], pa.list_(pa.string())),
    })
    pq.write_table(table, part / "a.parquet")
    (part / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    write_lines(landing, post("c"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["7", "9", "c"]
    assert result.posts[0].created_at == "2026-11-01T08:00:00+00:00"
    assert result.posts[0].image is not None
    reasons = [(q.reason, q.source, q.post_id) for q in result.quarantined]
    assert reasons == [
        ("missing_text", f"dt={DAY.isoformat()}/a.parquet:2", "8"),
        ("unreadable_file", f"dt={DAY.isoformat()}/b.parquet", None),
    ]
    assert json.loads(result.quarantined[0].payload)["id"] == 8
    c = result.counts
    assert (c["files"], c["files_unreadable"], c["records"], c["posts"], c["rejected"]) == (3, 1, 4, 3, 1)
    assert c["quarantined"] == c["rejected"] + c["files_unreadable"]


def test_parquet_naive_timestamp_is_rejected(landing: Path) -> None:
    part = landing / f"dt={DAY.isoformat()}"
    pq.write_table(pa.table({"id": ["n"], "text": ["t"], "created_at": [datetime(2026, 11, 1, 8)]}), part / "a.parquet")
    assert only_reject(read(landing)) == ("naive_created_at", "n")


# --- images -------------------------------------------------------------------------------------


def test_ok_image_records_hash_size_and_original_path(landing: Path) -> None:
    data = (landing / "images" / "ok.png").read_bytes()
    result, ref = image_of(landing, "images/ok.png")
    assert ref.ok and ref.sha256 == hashlib.sha256(data).hexdigest()
    assert (ref.width, ref.height) == (8, 8)
    assert Path(ref.path) == (landing / "images" / "ok.png").resolve()
    assert result.quarantined == [] and result.counts["images_ok"] == 1
    rgb = load_image_rgb(ref.path)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)


def test_file_uri_inside_landing_is_fine(landing: Path) -> None:
    _, ref = image_of(landing, (landing / "images" / "ok.png").resolve().as_uri())
    assert ref.ok


@pytest.mark.parametrize(
    "make_ref",
    [
        lambda root, outside: "../outside.png",
        lambda root, outside: "images/../../outside.png",
        lambda root, outside: str(outside),
        lambda root, outside: outside.as_uri(),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "file-uri"],
)
def test_path_escaping_landing_is_refused(landing: Path, make_ref) -> None:
    outside = landing.parent / "outside.png"
    outside.write_bytes(png_bytes())  # a perfectly good image, just in the wrong place
    result, ref = image_of(landing, make_ref(landing, outside))
    assert ref.status == "outside_landing" and ref.sha256 is None and ref.path is None
    (q,) = result.quarantined
    assert (q.reason, q.post_id) == ("image_outside_landing", "p1")
    assert result.counts["images_outside_landing"] == 1 and result.counts["rejected"] == 0


def test_symlink_escaping_landing_is_refused(landing: Path) -> None:
    outside = landing.parent / "secret"
    outside.mkdir()
    (outside / "x.png").write_bytes(png_bytes())
    (landing / "images" / "link").symlink_to(outside, target_is_directory=True)
    (landing / "images" / "file_link.png").symlink_to(outside / "x.png")
    assert image_of(landing, "images/link/x.png")[1].status == "outside_landing"
    assert image_of(landing, "images/file_link.png")[1].status == "outside_landing"


def test_symlink_inside_landing_is_fine(landing: Path) -> None:
    (landing / "images" / "alias.png").symlink_to(landing / "images" / "ok.png")
    assert image_of(landing, "images/alias.png")[1].ok


@pytest.mark.parametrize(
    ("setup", "ref", "kwargs", "status"),
    [
        (None, "images/nope.png", {}, "missing"),
        (None, "images", {}, "missing"),
        (None, "", {}, "missing"),
        ("corrupt", "images/bad.png", {}, "corrupt"),
        ("truncated", "images/bad.png", {}, "corrupt"),
        ("tiff", "images/bad.tif", {}, "corrupt"),
        (None, "images/ok.png", {"max_image_bytes": 10}, "oversized"),
        (None, "images/ok.png", {"max_image_pixels": 63}, "too_many_pixels"),
        (None, "ftp://example.org/a.png", {}, "unsupported_scheme"),
        (None, "data:image/png;base64,AAAA", {}, "unsupported_scheme"),
        (None, "file://otherhost/a.png", {}, "unsupported_scheme"),
        (None, "https://example.org/a.png", {}, "fetch_failed"),  # no staging dir: never fetched
    ],
)
def test_bad_image_keeps_post_and_is_recorded(landing: Path, setup, ref: str, kwargs: dict, status: str) -> None:
    if setup == "corrupt":
        (landing / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n definitely not a png")
    elif setup == "truncated":
        data = png_bytes((64, 64), "blue")
        (landing / "images" / "bad.png").write_bytes(data[: len(data) // 2])
    elif setup == "tiff":  # decodable by Pillow, but not a format we accept
        (landing / "images" / "bad.tif").write_bytes(png_bytes(fmt="TIFF"))
    result, ref_out = image_of(landing, ref, **kwargs)
    assert ref_out.status == status and ref_out.uri == ref
    assert result.posts[0].text and result.posts[0].image is None
    (q,) = result.quarantined
    assert (q.reason, q.post_id, q.payload) == (f"image_{status}", "p1", ref)
    assert q.details["message"]
    assert result.counts[f"images_{status}"] == 1 and result.counts["rejected"] == 0


def test_decompression_bomb_guard_uses_pillow_limit(landing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 8x8 = 64 > 2 * 10: Pillow refuses on open
    assert image_of(landing, "images/ok.png")[1].status == "too_many_pixels"
    with pytest.raises((ImageTooLarge, Image.DecompressionBombError)):
        load_image_rgb(landing / "images" / "ok.png")


def test_one_post_several_images(landing: Path) -> None:
    write_lines(landing, post(images=["images/nope.png", "images/ok.png", "images/ok.png"]))
    result = read(landing)
    (p,) = result.posts
    assert [i.status for i in p.images] == ["missing", "ok", "ok"]
    assert p.image is p.images[1]
    assert result.counts["images"] == 3 and len(result.quarantined) == 1


def test_load_image_rgb_flattens_alpha(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert load_image_rgb(path).getpixel((0, 0)) == (255, 255, 255)


# --- real-world file quirks ---------------------------------------------------------------------


def test_id_at_limit_is_fine(landing: Path) -> None:
    write_lines(landing, post(pid="é" * MAX_ID_CHARS))
    assert [len(p.id) for p in read(landing).posts] == [MAX_ID_CHARS]


def test_bom_before_any_line_crlf_and_last_line_without_newline(landing: Path) -> None:
    path = landing / f"dt={DAY.isoformat()}" / "posts.jsonl"
    lines = [json.dumps(post(pid)).encode() for pid in ("a", "b", "c", "d")]
    # A BOM before line 1 and line 3 (files appended to each other), CRLF ends, no final newline.
    path.write_bytes(b"\xef\xbb\xbf" + lines[0] + b"\r\n" + lines[1] + b"\r\n\xef\xbb\xbf" + lines[2] + b"\r\n" + lines[3])
    result = read(landing)
    assert [p.id for p in result.posts] == ["a", "b", "c", "d"]
    assert result.quarantined == [] and result.counts["records"] == 4


def test_a_bad_line_keeps_its_payload_without_the_line_end(landing: Path) -> None:
    path = landing / f"dt={DAY.isoformat()}" / "posts.jsonl"
    path.write_bytes(b'{"id": "a", "text": \r\n')
    (q,) = read(landing).quarantined
    assert (q.reason, q.payload, q.source) == ("malformed_json", '{"id": "a", "text": ', f"dt={DAY.isoformat()}/posts.jsonl:1")


@pytest.mark.parametrize("name", ["posts.ndjson", "POSTS.JSONL", "posts.Jsonl", "export.NDJSON"])
def test_other_jsonl_names_are_read(landing: Path, name: str) -> None:
    write_lines(landing, post("a"), name=name)
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"] and result.counts["files_skipped"] == 0


@pytest.mark.parametrize("name", ["posts.jsonl.gz", "posts.ndjson.gz", "POSTS.JSONL.GZ"])
def test_gzip_compressed_jsonl_is_read(landing: Path, name: str) -> None:
    data = b"\n".join(json.dumps(post(pid)).encode() for pid in ("a", "b")) + b"\n"
    (landing / f"dt={DAY.isoformat()}" / name).write_bytes(gzip.compress(data))
    result = read(landing)
    assert [p.id for p in result.posts] == ["a", "b"]
    assert result.posts[0].source is None and result.counts["files"] == 1


def test_damaged_gzip_keeps_lines_before_the_damage(landing: Path) -> None:
    lines = [json.dumps(post(f"p{i}", text=f"post number {i} " * 20)).encode() for i in range(2000)]
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    (landing / f"dt={DAY.isoformat()}" / "a.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (landing / f"dt={DAY.isoformat()}" / "b.jsonl.gz").write_bytes(b"not gzip at all")
    result = read(landing)
    assert 0 < len(result.posts) < 2000
    assert [(q.reason, q.source) for q in result.quarantined] == [
        ("unreadable_file", f"dt={DAY.isoformat()}/a.jsonl.gz"),
        ("unreadable_file", f"dt={DAY.isoformat()}/b.jsonl.gz"),
    ]
    assert result.quarantined[0].details["lines_read"] == len(result.posts)
    c = result.counts
    assert c["files_unreadable"] == 2 and c["records"] == c["posts"] == len(result.posts)


def test_a_gzip_bomb_is_cut_after_its_inflate_limit(landing: Path, monkeypatch) -> None:
    import time

    from extraction import posts as posts_module

    monkeypatch.setattr(posts_module, "MIN_GZIP_LIMIT", 4 * 1024 * 1024)  # the limit small, so the test is quick
    bomb = gzip.compress(json.dumps(post("first")).encode() + b"\n" + b"0" * (512 * 1024 * 1024), 9)
    assert len(bomb) < 1024 * 1024  # ~1000x: a 512 MB line in well under 1 MB
    (landing / f"dt={DAY.isoformat()}" / "bomb.jsonl.gz").write_bytes(bomb)
    started = time.monotonic()
    result = read(landing)
    assert time.monotonic() - started < 10  # 4 MB inflated, not 512 MB
    assert [p.id for p in result.posts] == ["first"]
    (q,) = result.quarantined
    assert (q.reason, q.source) == ("unreadable_file", f"dt={DAY.isoformat()}/bomb.jsonl.gz")
    assert "gzip bomb" in q.details["message"] and q.details["lines_read"] == 2


def test_over_long_line_is_quarantined_cut_and_never_held_whole(landing: Path) -> None:
    path = landing / f"dt={DAY.isoformat()}" / "posts.jsonl"
    huge = 48 * 1024 * 1024  # no newline in 48 MB: only a bounded read keeps memory small
    with open(path, "wb") as f:
        f.write(json.dumps(post("before")).encode() + b"\n")
        f.write(b'{"id": "huge", "text": "')
        block = b"x" * (1024 * 1024)
        for _ in range(huge // len(block)):
            f.write(block)
        f.write(b'", "created_at": "2026-11-01T08:00:00Z"}\n')
        f.write(json.dumps(post("after")).encode())
    tracemalloc.start()
    try:
        result = read(landing)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.id for p in result.posts] == ["before", "after"]
    (q,) = result.quarantined
    assert (q.reason, q.source) == ("line_too_long", f"dt={DAY.isoformat()}/posts.jsonl:2")
    assert len(q.payload) == MAX_PAYLOAD_CHARS and q.payload.startswith('{"id": "huge"')
    assert q.details["line_bytes"] > huge and q.details["message"]
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes: the long line was read whole"


def test_line_at_the_limit_is_fine(landing: Path) -> None:
    line = json.dumps(post("a", text="y" * 900)).encode()
    write_lines(landing, line, post("b"))
    result = read(landing, max_line_bytes=len(line))
    assert [p.id for p in result.posts] == ["a", "b"]
    result = read(landing, max_line_bytes=len(line) - 1)
    assert [p.id for p in result.posts] == ["b"] and result.quarantined[0].reason == "line_too_long"


def test_symlinked_input_file_is_refused_without_its_content(landing: Path, tmp_path: Path) -> None:
    secret = tmp_path / "environ"
    secret.write_text('{"id": "s", "text": "AWS_SECRET=hunter2", "created_at": "2026-11-01T08:00:00Z"}\n')
    part = landing / f"dt={DAY.isoformat()}"
    write_lines(landing, post("a"))
    (part / "env.jsonl").symlink_to(secret)
    (part / "passwd.jsonl").symlink_to("/etc/passwd")
    (part / "proc.ndjson").symlink_to("/proc/self/environ")
    (part / "inside.parquet").symlink_to(part / "posts.jsonl")  # even pointing inside: not followed
    (part / "notes.txt").symlink_to(secret)  # not a post file name: skipped, counted
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"]
    refused = [(q.source, q.reason, q.payload) for q in result.quarantined]
    assert refused == [
        (f"dt={DAY.isoformat()}/env.jsonl", "symlinked_file", ""),
        (f"dt={DAY.isoformat()}/inside.parquet", "symlinked_file", ""),
        (f"dt={DAY.isoformat()}/passwd.jsonl", "symlinked_file", ""),
        (f"dt={DAY.isoformat()}/proc.ndjson", "symlinked_file", ""),
    ]
    assert result.quarantined[2].details["target"] == "/etc/passwd"
    assert "hunter2" not in json.dumps([(q.payload, q.details) for q in result.quarantined])
    c = result.counts
    assert (c["files"], c["files_refused"], c["files_skipped_symlink"], c["records"]) == (1, 4, 1, 1)
    assert c["quarantined"] == c["rejected"] + c["files_unreadable"] + c["files_refused"]


def test_fifo_in_the_partition_does_not_block(landing: Path) -> None:
    os.mkfifo(landing / f"dt={DAY.isoformat()}" / "pipe.jsonl")
    write_lines(landing, post("a"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"]
    (q,) = result.quarantined
    assert (q.reason, q.source) == ("unreadable_file", f"dt={DAY.isoformat()}/pipe.jsonl")


# --- Parquet whose schema differs from the contract --------------------------------------------


def test_parquet_extra_columns_are_ignored(landing: Path) -> None:
    part = landing / f"dt={DAY.isoformat()}"
    pq.write_table(pa.table({
        "id": ["a"], "text": ["Jon Park 🏀"], "created_at": [TS],
        "likes": [12], "blob": [b"\x00" * 1000], "nested": [{"k": [1, 2]}],
    }), part / "a.parquet")
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"] and result.quarantined == []


def test_parquet_without_a_required_column_refuses_every_row(landing: Path) -> None:
    part = landing / f"dt={DAY.isoformat()}"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "likes": [1, 2, 3]}), part / "a.parquet")
    pq.write_table(pa.table({"likes": [1, 2]}), part / "b.parquet")  # no contract column at all
    write_lines(landing, post("d"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["d"]
    got = [(q.reason, q.source, q.post_id) for q in result.quarantined]
    assert got == [
        ("missing_column", f"dt={DAY.isoformat()}/a.parquet:1", "a"),
        ("missing_column", f"dt={DAY.isoformat()}/a.parquet:2", "b"),
        ("missing_column", f"dt={DAY.isoformat()}/a.parquet:3", "c"),
        ("missing_column", f"dt={DAY.isoformat()}/b.parquet:1", None),
        ("missing_column", f"dt={DAY.isoformat()}/b.parquet:2", None),
    ]
    assert result.quarantined[0].details["missing"] == ["created_at"]
    assert result.quarantined[3].details["missing"] == ["id", "text", "created_at"]
    assert json.loads(result.quarantined[0].payload) == {"id": "a", "text": "x"}  # contract columns only
    c = result.counts
    assert (c["records"], c["posts"], c["rejected"], c["rejected_missing_column"]) == (6, 1, 5, 5)


# --- bad image paths never escape ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "status"),
    [
        ("images/a\u0000.png", "bad_path"),
        ("file:///a%00", "bad_path"),
        ("file:///images/ok.png%00.png", "bad_path"),
        ("images/" + "x" * 300 + ".png", "bad_path"),  # a name component over 255 bytes
        ("images/" + "/".join(["abcdefgh"] * 600) + ".png", "bad_path"),  # over PATH_MAX
        ("images/ok.png/inner.png", "missing"),  # ENOTDIR
        ("images/loop.png", "missing"),  # a symlink loop
    ],
)
def test_a_path_the_filesystem_refuses_costs_only_that_image(landing: Path, ref: str, status: str) -> None:
    (landing / "images" / "loop.png").symlink_to(landing / "images" / "loop.png")
    write_lines(landing, post("a", images=[ref, "images/ok.png"]), post("b"))
    result = read(landing)
    assert [p.id for p in result.posts] == ["a", "b"]
    assert [i.status for i in result.posts[0].images] == [status, "ok"]
    (q,) = result.quarantined
    assert (q.reason, q.post_id) == (f"image_{status}", "a") and q.details["message"]


def test_images_per_post_are_bounded_and_the_rest_quarantined(landing: Path) -> None:
    for i in range(6):
        (landing / "images" / f"{i}.png").write_bytes(png_bytes((4 + i, 4)))
    uris = [f"images/{i}.png" for i in range(6)] + ["images/nope.png"] * 3
    write_lines(landing, post("a", images=uris), post("b", images=["images/0.png"]))
    settings = ImageSettings(max_images_per_post=4)
    result = read(landing, image_settings=settings)
    a, b = result.posts
    assert [i.uri for i in a.images] == uris[:4] and all(i.ok for i in a.images)
    assert b.images[0].ok
    (q,) = result.quarantined
    assert (q.reason, q.post_id, json.loads(q.payload)) == ("too_many_images", "a", uris[4:])
    assert (q.details["limit"], q.details["images"], q.details["dropped"]) == (4, 9, 5)
    c = result.counts
    assert (c["images"], c["images_ok"], c["dropped_images"], c["quarantined_too_many_images"]) == (5, 5, 5, 1)
    assert c["quarantined"] == c["rejected"] + c["files_unreadable"] + (c["images"] - c["images_ok"]) + 1
    # The default bound is 16.
    write_lines(landing, post("c", images=["images/0.png"] * 500))
    result = read(landing, image_settings=ImageSettings())
    assert len(result.posts[0].images) == 16 and result.counts["dropped_images"] == 484


def test_image_checks_are_deterministic_whatever_the_thread_count(landing: Path) -> None:
    for i in range(12):
        (landing / "images" / f"{i}.png").write_bytes(png_bytes((3 + i, 5)))
    posts = [post(f"p{n}", images=[f"images/{(n * 5 + k) % 14}.png" for k in range(4)]) for n in range(10)]
    write_lines(landing, *posts)
    runs = [read(landing, image_settings=ImageSettings(fetch_workers=w)) for w in (1, 3, 8)]
    for other in runs[1:]:
        assert other.posts == runs[0].posts
        assert other.quarantined == runs[0].quarantined
        assert other.counts == runs[0].counts
    assert runs[0].counts["images_missing"] > 0 and runs[0].counts["images_ok"] > 0


# --- pixel limit ----------------------------------------------------------------------------------


def test_small_png_declaring_many_pixels_is_refused_without_decoding(landing: Path) -> None:
    # 6000 x 6000 = 36 Mpx: under Pillow's own guard (~89 Mpx), over the 25 Mpx default limit.
    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 100_000
    (landing / "images" / "bomb.png").write_bytes(buf.getvalue())
    result, ref = image_of(landing, "images/bomb.png", image_settings=ImageSettings())
    assert ref.status == "too_many_pixels"
    assert "25000000" in result.quarantined[0].details["message"]
    with pytest.raises(ImageTooLarge):
        load_image_rgb(landing / "images" / "bomb.png")
    assert ImageSettings().max_pixels < Image.MAX_IMAGE_PIXELS

"""Reading posts from the landing directory: the sample data, every bad-record kind, images."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from extraction import images as img
from extraction.posts import MAX_TEXT_CHARS, read_partition
from mmkg.images import ImageTooLarge, load_image_rgb
from mmkg.records import Post

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
        rel = f"landing/dt={day}/posts.jsonl"
        assert (tmp_path / rel).read_bytes() == (SAMPLE / rel).read_bytes(), rel
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


def test_hidden_and_other_files_are_skipped(landing: Path) -> None:
    write_lines(landing, post("a"))
    write_lines(landing, "not json at all", name=".posts.jsonl.tmp")
    write_lines(landing, "not json at all", name="_SUCCESS")
    write_lines(landing, "not json at all", name="notes.txt")
    result = read(landing)
    assert [p.id for p in result.posts] == ["a"] and result.counts["files"] == 1


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


# --- http(s) images, served from this machine ----------------------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    files = {"/a.png": png_bytes((5, 3)), "/junk.png": b"not an image", "/big.png": png_bytes((200, 200), "green", "BMP")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()
    httpd.server_close()


def test_http_image_is_cached_by_content(landing: Path, tmp_path: Path, server) -> None:
    base, files = server
    staging = tmp_path / "staging"
    result, ref = image_of(landing, f"{base}/a.png", staging_dir=staging)
    sha = hashlib.sha256(files["/a.png"]).hexdigest()
    assert ref.ok and ref.sha256 == sha and (ref.width, ref.height) == (5, 3)
    assert Path(ref.path) == staging / "images" / f"{sha}.png"
    assert Path(ref.path).read_bytes() == files["/a.png"]
    assert [p.name for p in (staging / "images").iterdir()] == [f"{sha}.png"]  # no temp files left


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/missing.png", {}, "fetch_failed"),
        ("/junk.png", {}, "corrupt"),
        ("/big.png", {"max_image_bytes": 1000}, "oversized"),
    ],
)
def test_http_image_failures(landing: Path, tmp_path: Path, server, path: str, kwargs: dict, status: str) -> None:
    base, _ = server
    staging = tmp_path / "staging"
    _, ref = image_of(landing, base + path, staging_dir=staging, **kwargs)
    assert ref.status == status
    assert not (staging / "images").exists() or not any((staging / "images").iterdir())


def test_http_connection_refused_is_fetch_failed(landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, ref = image_of(landing, f"http://127.0.0.1:{port}/a.png", staging_dir=tmp_path, fetch_timeout_s=2)
    assert ref.status == "fetch_failed"

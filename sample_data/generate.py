"""Generate mmkg's sample landing data: three days of invented social-media posts with images.

Run with the project's Python (it needs Pillow and pyarrow)::

    python sample_data/generate.py            # rewrites sample_data/landing, expected.json, gold_entities.json
    python sample_data/generate.py --out DIR  # writes them under DIR

Everything here is authored for this project: the people, teams, bands, companies and products
are invented (cities and countries are real). The output is deterministic.

Besides valid posts, the data holds deliberately bad records, each with one known defect, and
``expected.json`` states what a reader must make of every day: valid posts, rejected records by
reason (with their source line), bad images by status. Those expectations are written down here
from what each record was made to be, not computed by running the reader.

The hostile part (issue 12): lines a real export produces (a byte-order mark before a line, CRLF
line ends, a last line without a newline, gzip-compressed NDJSON, Parquet with an extra column or
without a required one) and lines meant to hurt (image URLs at internal addresses: the local Neo4j,
a cloud metadata address, Airflow's log server as a decimal IP; image paths with a NUL or a 300-byte
name; an id of 300 characters; 20 images on one post; Cypher-looking text; zero-width characters
and handles such as ``@__`` or 100 letters long). Every line ends in the graph or in the quarantine
with a reason. What cannot live in a repository (a symlink to /etc/passwd, a 2 GB line, a slow
server) is tested in tests/test_posts.py and tests/test_image_fetch.py.

This script must never download anything or copy text or images from any dataset.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 96

# --- images -------------------------------------------------------------------------------------


def _canvas(bg: tuple[int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (SIZE, SIZE), bg)
    return im, ImageDraw.Draw(im)


def draw_football():
    im, d = _canvas((46, 139, 87))
    d.line([(48, 0), (48, 96)], fill="white", width=2)
    d.ellipse([30, 30, 66, 66], fill="white", outline="black", width=2)
    d.regular_polygon((48, 48, 8), 5, fill="black")
    return im


def draw_basketball():
    im, d = _canvas((30, 30, 60))
    d.ellipse([18, 18, 78, 78], fill=(238, 120, 30), outline="black", width=2)
    d.line([(18, 48), (78, 48)], fill="black", width=2)
    d.line([(48, 18), (48, 78)], fill="black", width=2)
    d.arc([4, 18, 40, 78], -60, 60, fill="black", width=2)
    d.arc([56, 18, 92, 78], 120, 240, fill="black", width=2)
    return im


def draw_track():
    im, d = _canvas((190, 70, 50))
    for y in range(12, 96, 18):
        d.line([(0, y), (96, y)], fill="white", width=2)
    d.rectangle([70, 0, 74, 96], fill="white")
    return im


def draw_trophy():
    im, d = _canvas((20, 40, 90))
    d.pieslice([24, 10, 72, 58], 0, 180, fill=(230, 190, 40))
    d.rectangle([24, 10, 72, 34], fill=(230, 190, 40))
    d.rectangle([44, 58, 52, 74], fill=(230, 190, 40))
    d.rectangle([32, 74, 64, 84], fill=(150, 110, 30))
    return im


def draw_festival():
    im, d = _canvas((15, 15, 45))
    colours = [(255, 80, 80), (80, 255, 120), (90, 140, 255), (255, 220, 60), (240, 90, 240)]
    for i in range(12):
        x, y = 8 + (i * 29) % 84, 6 + (i * 17) % 40
        d.ellipse([x, y, x + 7, y + 7], fill=colours[i % len(colours)])
    d.polygon([(0, 96), (48, 62), (96, 96)], fill=(40, 40, 40))
    return im


def draw_drums():
    im, d = _canvas((250, 245, 235))
    d.ellipse([20, 40, 76, 88], fill=(180, 20, 40), outline="black", width=2)
    d.ellipse([20, 34, 76, 56], fill=(235, 235, 235), outline="black", width=2)
    d.line([(10, 10), (40, 40)], fill=(120, 80, 40), width=4)
    d.line([(86, 10), (56, 40)], fill=(120, 80, 40), width=4)
    return im


def draw_vinyl():
    im, d = _canvas((240, 200, 120))
    d.ellipse([8, 8, 88, 88], fill=(15, 15, 15))
    for r in (34, 26):
        d.ellipse([48 - r, 48 - r, 48 + r, 48 + r], outline=(50, 50, 50))
    d.ellipse([36, 36, 60, 60], fill=(200, 40, 60))
    d.ellipse([46, 46, 50, 50], fill=(240, 200, 120))
    return im


def draw_stage():
    im, d = _canvas((10, 10, 20))
    d.polygon([(20, 0), (4, 80), (40, 80)], fill=(255, 250, 180))
    d.polygon([(76, 0), (56, 80), (92, 80)], fill=(180, 220, 255))
    d.rectangle([0, 80, 96, 96], fill=(90, 50, 30))
    return im


def draw_phone():
    im, d = _canvas((220, 225, 235))
    d.rounded_rectangle([30, 8, 66, 88], radius=8, fill=(30, 30, 35))
    d.rectangle([34, 16, 62, 78], fill=(70, 150, 230))
    d.ellipse([45, 81, 51, 87], fill=(90, 90, 90))
    return im


def draw_watch():
    im, d = _canvas((245, 245, 245))
    d.rectangle([38, 0, 58, 96], fill=(60, 60, 60))
    d.rounded_rectangle([26, 26, 70, 70], radius=10, fill=(20, 20, 20))
    d.line([(48, 48), (48, 34)], fill=(80, 230, 120), width=3)
    d.line([(48, 48), (58, 52)], fill=(80, 230, 120), width=3)
    return im


def draw_laptop():
    im, d = _canvas((200, 210, 200))
    d.rectangle([18, 20, 78, 62], fill=(40, 40, 50))
    d.rectangle([22, 24, 74, 58], fill=(30, 90, 60))
    for y in range(28, 56, 6):
        d.line([(26, y), (26 + (y * 7) % 40, y)], fill=(140, 240, 160), width=2)
    d.polygon([(10, 66), (86, 66), (94, 76), (2, 76)], fill=(150, 150, 160))
    return im


def draw_temple():
    im, d = _canvas((250, 225, 190))
    d.rectangle([10, 22, 86, 30], fill=(200, 40, 30))
    d.rectangle([16, 36, 80, 41], fill=(200, 40, 30))
    d.rectangle([24, 22, 31, 92], fill=(200, 40, 30))
    d.rectangle([65, 22, 72, 92], fill=(200, 40, 30))
    return im


def draw_train():
    im, d = _canvas((170, 210, 240))
    d.polygon([(0, 60), (30, 30), (60, 50), (96, 20), (96, 96), (0, 96)], fill=(240, 240, 250))
    d.rounded_rectangle([8, 52, 88, 78], radius=6, fill=(200, 30, 40))
    for x in range(14, 84, 14):
        d.rectangle([x, 57, x + 8, 64], fill=(220, 235, 255))
    d.line([(0, 84), (96, 84)], fill=(60, 60, 60), width=3)
    return im


def draw_market():
    im, d = _canvas((25, 20, 40))
    for i, x in enumerate(range(6, 96, 18)):
        y = 14 + (i % 2) * 14
        d.line([(x + 7, 0), (x + 7, y)], fill=(120, 120, 120))
        d.ellipse([x, y, x + 14, y + 18], fill=(230, 60 + i * 25, 40))
    d.rectangle([0, 70, 96, 96], fill=(80, 50, 30))
    return im


def draw_mountains():
    im, d = _canvas((150, 200, 245))
    d.polygon([(0, 96), (30, 30), (60, 96)], fill=(90, 100, 120))
    d.polygon([(30, 96), (66, 20), (96, 80), (96, 96)], fill=(70, 80, 100))
    d.polygon([(66, 20), (58, 36), (74, 36)], fill="white")
    d.polygon([(30, 30), (24, 44), (36, 44)], fill="white")
    return im


def draw_beach():
    im, d = _canvas((120, 190, 240))
    d.ellipse([64, 8, 84, 28], fill=(255, 220, 60))
    d.rectangle([0, 50, 96, 70], fill=(30, 110, 190))
    d.rectangle([0, 70, 96, 96], fill=(240, 215, 150))
    return im


def draw_city():
    im, d = _canvas((255, 190, 130))
    for x, h in [(2, 40), (16, 62), (32, 30), (44, 74), (60, 50), (76, 66)]:
        d.rectangle([x, 96 - h, x + 13, 96], fill=(50, 50, 70))
        for y in range(100 - h, 92, 8):
            d.rectangle([x + 3, y, x + 5, y + 3], fill=(250, 230, 120))
    return im


# file name -> drawing; the extension picks the format.
IMAGES = {
    "football.png": draw_football,
    "basketball.jpg": draw_basketball,
    "track.png": draw_track,
    "trophy.png": draw_trophy,
    "festival.jpg": draw_festival,
    "drums.png": draw_drums,
    "vinyl.png": draw_vinyl,
    "stage.jpg": draw_stage,
    "phone.png": draw_phone,
    "watch.png": draw_watch,
    "laptop.png": draw_laptop,
    "temple.png": draw_temple,
    "train.jpg": draw_train,
    "market.jpg": draw_market,
    "mountains.jpg": draw_mountains,
    "beach.jpg": draw_beach,
    "city.png": draw_city,
}

# The image references that are bad on purpose, and the status a reader must give each.
MISSING_IMAGE = "images/falcons_training.jpg"  # never written
CORRUPT_IMAGE = "images/unboxing.png"  # a PNG cut in half
ESCAPING_IMAGE = "../generate.py"  # exists, but outside the landing directory
FTP_IMAGE = "ftp://files.example/market.jpg"
# Internal services a post must never make a worker fetch (refused before any connection).
NEO4J_BROWSER_IMAGE = "http://127.0.0.1:7474/browser/"
METADATA_IMAGE = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
LOG_SERVER_IMAGE = "http://2130706433:8793/log/"  # 127.0.0.1 written as one decimal number
NUL_IMAGE = "images/stage\u0000.jpg"  # a NUL byte cannot be in a file name
NUL_URI_IMAGE = "file:///images/a%00.png"
LONG_NAME_IMAGE = "images/" + "x" * 300 + ".png"  # a name component over 255 bytes
BAD_IMAGES = {
    MISSING_IMAGE: "missing",
    CORRUPT_IMAGE: "corrupt",
    ESCAPING_IMAGE: "outside_landing",
    FTP_IMAGE: "unsupported_scheme",
    NEO4J_BROWSER_IMAGE: "blocked_address",
    METADATA_IMAGE: "blocked_address",
    LOG_SERVER_IMAGE: "blocked_address",
    NUL_IMAGE: "bad_path",
    NUL_URI_IMAGE: "bad_path",
    LONG_NAME_IMAGE: "bad_path",
}
#: Images read per post (``mmkg.settings.ImageSettings.max_images_per_post``, default 16): the
#: rest of a post's list is quarantined once, as ``too_many_images``.
MAX_IMAGES_PER_POST = 16


def _encode(im: Image.Image, name: str) -> bytes:
    buf = io.BytesIO()
    if name.endswith(".jpg"):
        im.save(buf, "JPEG", quality=85)
    else:
        im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def write_images(images_dir: Path) -> None:
    images_dir.mkdir(parents=True)
    for name, draw in IMAGES.items():
        (images_dir / name).write_bytes(_encode(draw(), name))
    whole = _encode(draw_phone(), "x.png")
    corrupt = whole[: len(whole) // 2]
    try:  # make sure the bad image really is undecodable
        with Image.open(io.BytesIO(corrupt)) as im:
            im.load()
    except Exception:
        pass
    else:
        raise AssertionError("the truncated PNG still decodes")
    (images_dir / Path(CORRUPT_IMAGE).name).write_bytes(corrupt)


# --- posts --------------------------------------------------------------------------------------


def img(name: str) -> str:
    return f"images/{name}"


def post(pid: str, created_at: str, text: str, images: list[str] | None = None, *, author: str, lang: str = "en") -> dict:
    return {
        "id": pid,
        "text": text,
        "created_at": created_at,
        "author": author,
        "lang": lang,
        "source": "sample",
        "images": images or [],
    }


@dataclass
class Bad:
    """A record a reader must reject: the exact line written, the reason, the id it reports."""

    line: bytes
    reason: str
    post_id: str | None = None


def bad(obj: object, reason: str, post_id: str | None = None) -> Bad:
    return Bad(json.dumps(obj, ensure_ascii=False).encode("utf-8"), reason, post_id)


BLANK = b""

DAY1 = [
    post("1101-001", "2026-11-01T08:02:00+00:00", "BREAKING ⚽ Marta Silva signed with Lisbon Falcons today! Three-year deal. #LisbonFalcons #transfers https://falcons.example/news/silva", [img("football.png")], author="falcons_fan"),
    post("1101-002", "2026-11-01T08:40:00+00:00", "Marta Silva and Ana Costa together again 🙌 teammates at Lisbon Falcons, rivals no more. @anacosta10 @martasilva9 #LisbonFalcons", [img("football.png")], author="futebol_daily"),
    post("1101-003", "2026-11-01T09:15:00+00:00", "Marta Silva assinou com o Lisbon Falcons! Que reforço 🔥 #futebol #Lisboa", [img("football.png")], author="bola_viva", lang="pt"),
    post("1101-004", "2026-11-01T10:05:00+09:00", "Jon Park was born in Busan and still lives there in the off-season 🌊🏀 Tonight he dropped 31 for the Seoul Tigers. #JonPark", [img("basketball.jpg")], author="hoops_korea"),
    post("1101-005", "2026-11-01T11:30:00+09:00", "Jon Park vs Min Seo-yeon tonight — two Busan kids, old rivals, one court. Who you got? 🏀 #SeoulTigers #HanbitComets", [img("basketball.jpg")], author="courtside_kr"),
    post("1101-006", "2026-11-01T12:00:00+09:00", "존 박 선수는 부산에서 태어났어요! 오늘 밤 서울 타이거즈 경기 🏀 #SeoulTigers", [img("basketball.jpg")], author="busan_hoops", lang="ko"),
    post("1101-007", "2026-11-01T06:10:00+00:00", "Kofi Mensah lives in Accra and trains at dawn every day. Next stop: the Coastline Games in Durban 🏃🏾‍♂️💨 #CoastlineGames", [img("track.png")], author="trackside"),
    post("1101-008", "2026-11-01T16:45:00+02:00", "Kofi Mensah wins the 200m at the Coastline Games in Durban! 19.87 🔥🔥 @kofi_runs #athletics", [img("trophy.png")], author="trackside"),
    post("1101-009", "2026-11-01T13:00:00+00:00", "The Atlantic Cup final is set: Lisbon Falcons vs Riverside Rovers in Porto on Saturday 🏆 tickets: https://atlanticcup.example/final #AtlanticCup", [img("trophy.png")], author="AtlanticCupHQ"),
    post("1101-010", "2026-11-01T14:20:00+00:00", "Riverside Rovers (Manchester) name Tom Adeyemi as their new captain 🎖️ @RiversideRovers #RRFC", [img("football.png")], author="rovers_news"),
    post("1101-011", "2026-11-01T15:00:00+01:00", "Lineup for the Aurora Festival in Bergen just dropped 🎶✨ The Glass Owls, Priya Nair, DJ Tomas Reyes and more. #AuroraFest https://aurorafest.example/lineup", [img("festival.jpg")], author="aurorafest"),
    post("1101-012", "2026-11-01T15:30:00+01:00", "Lena Vogt, drummer of The Glass Owls, on touring: \"Berlin is home, but the road is where we live.\" 🥁 #TheGlassOwls", [img("drums.png")], author="indie_weekly"),
    post("1101-013", "2026-11-01T16:00:00+05:30", "Priya Nair just released her new album Monsoon Letters on Northwind Records 💿🌧️ #MonsoonLetters @priyanairmusic", [img("vinyl.png")], author="musicdrops"),
    post("1101-014", "2026-11-01T17:10:00+01:00", "Northwind Records, the Oslo indie label, signs The Glass Owls for two more albums 🦉 #indie #Oslo", [img("vinyl.png")], author="indie_weekly"),
    post("1101-015", "2026-11-01T18:00:00+01:00", "DJ Tomas Reyes will play the closing set at the Aurora Festival in Bergen 🎧🔊 see you by the fjord! #AuroraFest", [img("stage.jpg")], author="aurorafest"),
    post("1101-016", "2026-11-01T19:25:00+01:00", "¡Tomas Reyes en el Aurora Festival de Bergen! Qué noche 🎉🎶 #música", [img("stage.jpg")], author="noche_sonora", lang="es"),
    post("1101-017", "2026-11-01T20:00:00Z", "Monsoon Letters by Priya Nair is the best record of the year, no debate. Track 4 🥹 #MonsoonLetters", None, author="vinyl_hoarder"),
    post("1101-018", "2026-11-01T20:30:00Z", "Ana Costa out for two weeks with an ankle knock 😞 Lisbon Falcons confirm. #LisbonFalcons", [img("football.png")], author="falcons_fan"),
    post("1101-019", "2026-11-01T21:00:00+00:00", "Watching the Atlantic Cup draw from a café in Porto ☕ @AtlanticCupHQ", None, author="porto_eats"),
    post("1101-020", "2026-11-01T21:40:00+09:00", "Min Seo-yeon, captain of the Hanbit Comets, lives in Daejeon and drives 2 hours to every home game 🚗 #HanbitComets", [img("basketball.jpg")], author="courtside_kr"),
    # Keeps its text; its image was never uploaded.
    post("1101-021", "2026-11-01T22:05:00+00:00", "Photo from the Falcons training session this morning 📸 Marta Silva and Ana Costa running drills. #LisbonFalcons", [MISSING_IMAGE], author="falcons_fan"),
    post("1101-022", "2026-11-01T23:15:00-05:00", "Who else is going to the Aurora Festival? Flights to Bergen are wild right now ✈️😬 #AuroraFest #travel", None, author="gig_hopper"),
    # Written with a byte-order mark before the line (a spreadsheet export appended to the file).
    post("1101-023", "2026-11-01T23:30:00+00:00", "Late-night tram ride through Porto 🚋 the city never sleeps on match week", [img("city.png")], author="porto_eats"),
    # Keeps its text; the image URL points at the local Neo4j Browser: never fetched.
    post("1101-024", "2026-11-01T23:40:00+00:00", "Our fan dashboard is live, screenshot below 📊", [NEO4J_BROWSER_IMAGE], author="sneaky_dev"),
    # 20 images: the first 16 (all different) are read, the last 4 are quarantined as too_many_images.
    post("1101-025", "2026-11-01T23:50:00+00:00", "Photo dump from the weekend 📸📸📸 #photodump", [img(n) for n in list(IMAGES)[:16]] + [img(n) for n in list(IMAGES)[:4]], author="gig_hopper"),
]
#: Lines written with a UTF-8 byte-order mark in front.
BOM_LINES = {"1101-023"}
# Bad records, inserted after the valid post with the given index.
DAY1_BAD = {
    5: Bad(b'{"id": "1101-901", "text": "Lena Vogt says the new Glass Owls single is coming Fri', "malformed_json"),
    11: bad({"id": "1101-902", "created_at": "2026-11-01T12:00:00+00:00", "author": "ghost_account", "images": [img("stage.jpg")]}, "missing_text", "1101-902"),
    17: bad(post("1101-001", "2026-11-01T20:10:00+00:00", "(repost) Marta Silva signed with Lisbon Falcons! ⚽", [img("football.png")], author="repost_bot"), "duplicate_id", "1101-001"),
}

DAY2 = [
    post("1102-001", "2026-11-02T07:00:00+02:00", "Corvid Labs unveils the Nimbus X2 phone in Tallinn 📱 6.1\" screen, 3-day battery. #NimbusX2 https://corvidlabs.example/x2", [img("phone.png")], author="corvidlabs"),
    post("1102-002", "2026-11-02T07:20:00+02:00", "Dana Whitfield, CEO of Corvid Labs, on stage: \"The Nimbus X2 is built for people who hate chargers.\" 🔋 #CorvidLabs", [img("stage.jpg")], author="techbeat"),
    post("1102-003", "2026-11-02T09:00:00+00:00", "Hands-on with the Nimbus X2 by Corvid Labs: great camera, meh speakers 🤔 full review → https://gadgetdesk.example/nimbus-x2 @gadgetdesk", [img("phone.png")], author="gadgetdesk"),
    post("1102-004", "2026-11-02T09:45:00-06:00", "Helix Dynamics (Austin, TX) ships the Pulse Watch 3 next month ⌚ #PulseWatch3", [img("watch.png")], author="wearable_world"),
    post("1102-005", "2026-11-02T10:10:00+00:00", "Raj Malhotra leaves Helix Dynamics to join Corvid Labs as head of hardware 👀 #tech #hiring", None, author="techbeat"),
    post("1102-006", "2026-11-02T10:30:00+08:00", "ByteConf 2026 in Singapore: Dana Whitfield and Raj Malhotra share a panel on repairable phones 🔧 #ByteConf", [img("laptop.png")], author="byteconf"),
    post("1102-007", "2026-11-02T11:00:00+01:00", "Corvid Labs eröffnet ein neues Büro in Berlin 🇩🇪 Die Nimbus X2 kommt im Dezember. #Tech #Berlin", [img("city.png")], author="technik_heute", lang="de"),
    post("1102-008", "2026-11-02T11:30:00+09:00", "Sofia Marin lives in Valencia but her heart is in Kyoto 🍁 Day 1 of the autumn trip. #travel #Kyoto", [img("temple.png")], author="sofiamarin_travels"),
    post("1102-009", "2026-11-02T12:15:00+09:00", "Kyoto → Osaka on the morning train 🚄 Sofia Marin's guide to the Kansai rail pass: https://wander.example/kansai #travel", [img("train.jpg")], author="sofiamarin_travels"),
    post("1102-010", "2026-11-02T20:00:00+08:00", "Lantern Night Market in Taipei is pure magic 🏮🥟 @sofiamarin_travels", [img("market.jpg")], author="street_food_asia"),
    post("1102-011", "2026-11-02T21:00:00+08:00", "台北のランタンナイトマーケット、最高でした！🏮 #台湾旅行", [img("market.jpg")], author="tabibito_jp", lang="ja"),
    post("1102-012", "2026-11-02T12:40:00+01:00", "Alpine Rail Co. from Zurich launches the Glacier Line sleeper train to Milan 🚂🏔️ #AlpineRail", [img("train.jpg")], author="AlpineRailCo"),
    post("1102-013", "2026-11-02T13:00:00+00:00", "Snowed in at Reykjavik airport ❄️✈️ 6 hours and counting. #travel #Iceland", [img("mountains.jpg")], author="gig_hopper"),
    post("1102-014", "2026-11-02T14:00:00-06:00", "Helix Dynamics CEO Grace Okafor lives in Austin and rides her bike to work every day 🚲 #HelixDynamics", None, author="founder_stories"),
    post("1102-015", "2026-11-02T14:30:00+00:00", "Pulse Watch 3 review: the sleep tracking from Helix Dynamics finally works 😴⌚ #wearables", [img("watch.png")], author="gadgetdesk"),
    # Keeps its text; its image is a PNG cut in half.
    post("1102-016", "2026-11-02T15:00:00+00:00", "Unboxing the Nimbus X2 right now!!! 📦📱 #NimbusX2 #unboxing", [CORRUPT_IMAGE], author="unbox_it"),
    # Keeps its text; its image path climbs out of the landing directory.
    post("1102-017", "2026-11-02T15:30:00+08:00", "Check out my desk setup for ByteConf 2026 💻 #ByteConf", [ESCAPING_IMAGE], author="sneaky_dev"),
    post("1102-018", "2026-11-02T16:00:00+00:00", "Beach day in Lagos, Portugal 🏖️ not Nigeria, I checked twice 😂 #algarve", [img("beach.jpg")], author="gig_hopper"),
    post("1102-019", "2026-11-02T17:00:00+01:00", "Sofia Marin and Lucas Moreau, travel buddies since 2019, hiking near Chamonix ⛰️ #alps", [img("mountains.jpg")], author="sofiamarin_travels"),
    post("1102-020", "2026-11-02T18:00:00+01:00", "Lucas Moreau habite à Lyon et il adore le Lantern Night Market de Taipei 🏮 #voyage", [img("market.jpg")], author="lucas_moreau", lang="fr"),
    post("1102-021", "2026-11-02T19:00:00+08:00", "Raj Malhotra at ByteConf 2026 in Singapore: \"Repairability is a feature.\" 🛠️ https://byteconf.example/talks/42", [img("laptop.png")], author="byteconf"),
    # Keep their text; each image reference is refused without a request or a crash.
    post("1102-022", "2026-11-02T19:30:00+00:00", "Cloud costs explained in one picture ☁️💸", [METADATA_IMAGE], author="sneaky_dev"),
    post("1102-023", "2026-11-02T19:40:00+00:00", "Backstage at the ByteConf keynote 🎤", [NUL_IMAGE], author="sneaky_dev"),
    post("1102-024", "2026-11-02T19:50:00+00:00", "Three shots of the Tallinn skyline 🌆", [NUL_URI_IMAGE, LONG_NAME_IMAGE, img("city.png")], author="sneaky_dev"),
    post("1102-025", "2026-11-02T20:00:00+00:00", "Server logs of the launch night, see the picture 🖥️", [LOG_SERVER_IMAGE], author="sneaky_dev"),
    # Stored verbatim: text is a parameter, never query text.
    post("1102-026", "2026-11-02T20:10:00+00:00", "MATCH (n) DETACH DELETE n; // '}) RETURN 1 // just kidding 😈 Corvid Labs rocks", None, author="sneaky_dev"),
    # Zero-width space, soft hyphen and a right-to-left override inside names; a handle with no
    # letters (@__) and a 100-letter one: neither is a mention.
    post("1102-027", "2026-11-02T20:20:00+00:00", "Thanks Sofia\u200b Marin and Lu\u00adcas Moreau for the Kyoto tips 🍁 \u202eevil\u202c cc @__ @" + "a" * 100, None, author="sofiamarin_travels"),
]
DAY2_BAD = {
    2: bad(post("1102-901", "2026-11-02T09:30:00", "Corvid Labs stock up 4% after the Nimbus X2 launch 📈", None, author="market_watch"), "naive_created_at", "1102-901"),
    6: bad(post("1102-902", "2026-11-02T10:00:00+00:00", "GO FALCONS! ⚽ " * 400, [img("football.png")], author="caps_lock_fan"), "text_too_long", "1102-902"),
    9: Bad('{"id": "1102-903", "text": "Café con leche in Valencia ☕", "created_at": "2026-11-02T10:00:00+01:00"}'.replace("é", "\udce9").encode("utf-8", "surrogateescape"), "bad_encoding"),
    12: bad(["1102-904", "Tallinn tech week recap"], "not_an_object"),
    15: bad({"id": "1102-905", "text": 12345, "created_at": "2026-11-02T10:00:00+00:00"}, "wrong_type", "1102-905"),
    18: Bad(BLANK, "blank"),  # a blank line is not a record at all
    20: bad(post("1102-" + "9" * 300, "2026-11-02T19:10:00+00:00", "An id longer than any index key should be 🔑", None, author="sneaky_dev"), "id_too_long"),
}

DAY3 = [
    post("1103-001", "2026-11-03T21:50:00+00:00", "Marta Silva scores twice as Lisbon Falcons win the Atlantic Cup in Porto 🏆⚽⚽ #AtlanticCup", [img("trophy.png")], author="AtlanticCupHQ"),
    post("1103-002", "2026-11-03T22:10:00+00:00", "Riverside Rovers fans heading home from Porto 😢 next year. @RiversideRovers", None, author="rovers_news"),
    post("1103-003", "2026-11-03T22:30:00+01:00", "The Glass Owls closing the Aurora Festival in Bergen tonight 🦉🎸 Lena Vogt broke a drumstick in the first song 😂", [img("stage.jpg")], author="aurorafest"),
    post("1103-004", "2026-11-03T20:00:00+01:00", "Priya Nair performed Monsoon Letters live at the Aurora Festival 🌧️💿 goosebumps. #AuroraFest", [img("festival.jpg")], author="musicdrops"),
    post("1103-005", "2026-11-03T09:00:00+09:00", "Jon Park signs a new deal with the Seoul Tigers through 2029 🏀✍️ #SeoulTigers", [img("basketball.jpg")], author="hoops_korea"),
    post("1103-006", "2026-11-03T10:00:00+02:00", "Kofi Mensah and Tom Adeyemi, childhood friends from Accra, meet again at the Coastline Games 🤝 #CoastlineGames", [img("track.png")], author="trackside"),
    post("1103-007", "2026-11-03T08:00:00+02:00", "Corvid Labs confirms the Nimbus X2 sold out in Tallinn and Helsinki in 48 hours 📱🔥 #NimbusX2", [img("phone.png")], author="corvidlabs"),
    post("1103-008", "2026-11-03T11:00:00-06:00", "Grace Okafor: Helix Dynamics will open a lab in Nairobi next year 🌍 #HelixDynamics", None, author="founder_stories"),
    post("1103-009", "2026-11-03T07:30:00+00:00", "Trying the Pulse Watch 3 on a run along the Tagus in Lisbon ⌚🏃 #PulseWatch3", [img("watch.png")], author="run_lisboa"),
    post("1103-010", "2026-11-03T12:00:00+09:00", "Sofia Marin's Kyoto photo diary is up 📷🍁 https://wander.example/kyoto-autumn #travel", [img("temple.png")], author="sofiamarin_travels"),
    post("1103-011", "2026-11-03T13:00:00+00:00", "Ana Costa voltou aos treinos no Lisbon Falcons 💪 #futebol", [img("football.png")], author="bola_viva", lang="pt"),
    post("1103-012", "2026-11-03T14:00:00+01:00", "Sofia Marin vive en Valencia y hoy vuelve a casa desde Kyoto ✈️ #viajes", None, author="viajeros_es", lang="es"),
    # Keeps its text; ftp is not a supported scheme.
    post("1103-013", "2026-11-03T15:00:00+08:00", "Old photo from the Lantern Night Market 🏮 #throwback", [FTP_IMAGE], author="street_food_asia"),
    # Two images; the second path has '..' but stays inside the landing directory.
    post("1103-014", "2026-11-03T16:00:00+08:00", "Taipei by day and by night 🌆🏮 #Taipei", [img("city.png"), "images/../images/market.jpg"], author="street_food_asia"),
    post("1103-015", "2026-11-03T09:30:00+08:00", "Dana Whitfield and Grace Okafor, rival CEOs, share a coffee at ByteConf 2026 ☕ #ByteConf", None, author="techbeat"),
    post("1103-016", "2026-11-03T17:00:00+01:00", "Northwind Records releases a vinyl edition of Monsoon Letters by Priya Nair 💿 #vinyl", [img("vinyl.png")], author="vinyl_hoarder"),
    post("1103-017", "2026-11-03T18:00:00+01:00", "Alpine Rail Co. adds a Zurich–Vienna route to the Glacier Line 🚂 @AlpineRailCo", [img("train.jpg")], author="AlpineRailCo"),
    post("1103-018", "2026-11-03T19:00:00+01:00", "Lucas Moreau ran the Lyon half marathon in the rain 🌧️🏃 #Lyon", None, author="lucas_moreau"),
]
DAY3_BAD: dict[int, Bad] = {}
#: Day 3's posts.jsonl comes from Windows: CRLF line ends on these lines, and no newline after the last.
CRLF_LINES = {"1103-001", "1103-002", "1103-003"}

# more.ndjson.gz: gzip-compressed NDJSON, as some exporters write it.
DAY3_NDJSON_GZ = [
    post("1103-701", "2026-11-03T20:30:00+01:00", "The Glass Owls announce a winter tour starting in Oslo ❄️🦉 #TheGlassOwls", [img("stage.jpg")], author="indie_weekly"),
    post("1103-702", "2026-11-03T21:00:00+01:00", "Northwind Records opens a record shop in Bergen 💿 #vinyl", None, author="vinyl_hoarder"),
]
# legacy.parquet: an old export without the created_at column: every row is refused (missing_column).
DAY3_LEGACY_PARQUET = [
    {"id": "1103-801", "text": "Kofi Mensah training in Accra this morning 🏃🏾‍♂️", "author": "trackside"},
    {"id": "1103-802", "text": "Alpine Rail Co. timetable changes for December 🚂", "author": "AlpineRailCo"},
]

# extra.parquet: integer ids (accepted, converted to strings) and one unparseable timestamp.
DAY3_PARQUET = [
    (post(1103501, "2026-11-03T08:00:00+01:00", "Aurora Festival 2027 dates announced: Bergen, 18–20 August 🎶 #AuroraFest", [img("festival.jpg")], author="aurorafest"), None),
    (post(1103502, "2026-11-03T10:30:00+09:00", "Min Seo-yeon joins Jon Park at the Seoul Tigers 😱🏀 #SeoulTigers", [img("basketball.jpg")], author="courtside_kr"), None),
    (post(1103503, "2026-11-03T18:30:00+08:00", "Lantern Night Market returns to Taipei next weekend 🏮", [img("market.jpg")], author="street_food_asia"), None),
    (post(1103504, "2026-11-03T20:00:00-06:00", "Helix Dynamics teases the Pulse Watch 4 ⌚👀", None, author="wearable_world"), None),
    (post(1103505, "last Tuesday", "Jon Park and Min Seo-yeon: teammates now, rivals forever 🏀", None, author="courtside_kr"), "bad_created_at"),
]



# --- gold entities -------------------------------------------------------------------------------
# Every person, team, place, event, company and product the valid posts name, with the ontology type(s)
# that are right for it (ontology/ontology.yaml; a band or a team is an Organization, an album or a
# train service a Product) and every surface a post names it by: the name as written, hashtags and
# handles that stand for it. ``gold_entities.json`` lists, per valid post, the entities it names (a
# surface found in its text, whole words, longest first, invisible characters removed with
# ``mmkg.identity.without_invisible``); ``bench.demo_quality`` scores the demo's graph against it. Written
# once from what each post says, not from any run. Text in a script the models do not read (the Korean
# and Japanese posts) is not annotated: the pipeline abstains there by design (run report).


@dataclass(frozen=True)
class GoldEntity:
    name: str
    types: tuple[str, ...]  # right types, the first the most natural one
    kind: str  # person | team | place | event | organization | product
    surfaces: tuple[str, ...] = ()  # other ways a post names it (the name itself is always one)


SAMPLE_ENTITIES = [
    # people
    GoldEntity("Marta Silva", ("Person",), "person", ("@martasilva9",)),
    GoldEntity("Ana Costa", ("Person",), "person", ("@anacosta10",)),
    GoldEntity("Jon Park", ("Person",), "person", ("#JonPark",)),
    GoldEntity("Min Seo-yeon", ("Person",), "person"),
    GoldEntity("Kofi Mensah", ("Person",), "person", ("@kofi_runs",)),
    GoldEntity("Tom Adeyemi", ("Person",), "person"),
    GoldEntity("Priya Nair", ("Person",), "person", ("@priyanairmusic",)),
    GoldEntity("Tomas Reyes", ("Person",), "person", ("DJ Tomas Reyes",)),
    GoldEntity("Lena Vogt", ("Person",), "person"),
    GoldEntity("Dana Whitfield", ("Person",), "person"),
    GoldEntity("Raj Malhotra", ("Person",), "person"),
    GoldEntity("Sofia Marin", ("Person",), "person", ("@sofiamarin_travels",)),
    GoldEntity("Grace Okafor", ("Person",), "person"),
    GoldEntity("Lucas Moreau", ("Person",), "person"),
    # teams
    GoldEntity("Lisbon Falcons", ("Organization",), "team", ("#LisbonFalcons", "Falcons")),
    GoldEntity("Riverside Rovers", ("Organization",), "team", ("@RiversideRovers", "#RRFC")),
    GoldEntity("Seoul Tigers", ("Organization",), "team", ("#SeoulTigers",)),
    GoldEntity("Hanbit Comets", ("Organization",), "team", ("#HanbitComets",)),
    # bands, labels, companies, accounts of organisations
    GoldEntity("The Glass Owls", ("Organization",), "organization", ("#TheGlassOwls",)),
    GoldEntity("Northwind Records", ("Organization",), "organization"),
    GoldEntity("Corvid Labs", ("Organization",), "organization", ("#CorvidLabs",)),
    GoldEntity("Helix Dynamics", ("Organization",), "organization", ("#HelixDynamics",)),
    GoldEntity("Alpine Rail Co.", ("Organization",), "organization", ("@AlpineRailCo", "#AlpineRail")),
    GoldEntity("AtlanticCupHQ", ("Organization",), "organization", ("@AtlanticCupHQ",)),
    GoldEntity("gadgetdesk", ("Organization",), "organization", ("@gadgetdesk",)),
    # events
    GoldEntity("Aurora Festival", ("Event",), "event", ("#AuroraFest",)),
    GoldEntity("Coastline Games", ("Event",), "event", ("#CoastlineGames",)),
    GoldEntity("Atlantic Cup", ("Event",), "event", ("#AtlanticCup",)),
    GoldEntity("ByteConf 2026", ("Event",), "event", ("ByteConf", "#ByteConf")),
    GoldEntity("Lantern Night Market", ("Event", "Location"), "event"),
    # products and works
    GoldEntity("Nimbus X2", ("Product",), "product", ("#NimbusX2",)),
    GoldEntity("Pulse Watch 3", ("Product",), "product", ("#PulseWatch3",)),
    GoldEntity("Pulse Watch 4", ("Product",), "product"),
    GoldEntity("Monsoon Letters", ("Product",), "product", ("#MonsoonLetters",)),
    GoldEntity("Glacier Line", ("Product",), "product"),
    # places
    *(GoldEntity(name, ("Location",), "place", tuple(f"#{name}" for _ in range(tag))) for name, tag in (
        ("Lisbon", 0), ("Lisboa", 1), ("Busan", 0), ("Accra", 0), ("Durban", 0), ("Porto", 0), ("Manchester", 0),
        ("Bergen", 0), ("Berlin", 1), ("Oslo", 1), ("Daejeon", 0), ("Tallinn", 0), ("Austin", 0), ("TX", 0),
        ("Singapore", 0), ("Valencia", 0), ("Kyoto", 1), ("Osaka", 0), ("Kansai", 0), ("Taipei", 1),
        ("Zurich", 0), ("Milan", 0), ("Vienna", 0), ("Reykjavik", 0), ("Iceland", 1), ("Lagos", 0),
        ("Portugal", 0), ("Nigeria", 0), ("Chamonix", 0), ("Lyon", 1), ("Helsinki", 0), ("Nairobi", 0),
        ("Tagus", 0), ("Alps", 0), ("Algarve", 0))),
]
#: The facts each valid post states, as (head, relation, tail) over ``SAMPLE_ENTITIES`` names and the relations of
#: ontology/ontology.yaml (``peer`` is symmetric). What a careful reader takes from the post alone: a fact only
#: true elsewhere ("Jon Park member_of Seoul Tigers" in a post naming both only by hashtag), a future one
#: ("will open a lab in Nairobi") or a former one ("leaves Helix Dynamics") is not stated there.
SAMPLE_FACTS: dict[str, list[tuple[str, str, str]]] = {
    "1101-001": [("Marta Silva", "member_of", "Lisbon Falcons")],
    "1101-002": [("Marta Silva", "member_of", "Lisbon Falcons"), ("Ana Costa", "member_of", "Lisbon Falcons"),
                 ("Marta Silva", "peer", "Ana Costa")],
    "1101-003": [("Marta Silva", "member_of", "Lisbon Falcons")],
    "1101-004": [("Jon Park", "place_of_residence", "Busan"), ("Jon Park", "member_of", "Seoul Tigers")],
    "1101-005": [("Jon Park", "peer", "Min Seo-yeon")],
    "1101-007": [("Kofi Mensah", "place_of_residence", "Accra"), ("Kofi Mensah", "present_in", "Coastline Games"),
                 ("Coastline Games", "located_in", "Durban")],
    "1101-008": [("Kofi Mensah", "present_in", "Coastline Games"), ("Coastline Games", "located_in", "Durban")],
    "1101-009": [("Atlantic Cup", "located_in", "Porto")],
    "1101-010": [("Riverside Rovers", "located_in", "Manchester"), ("Tom Adeyemi", "member_of", "Riverside Rovers")],
    "1101-011": [("Aurora Festival", "located_in", "Bergen"), ("Priya Nair", "present_in", "Aurora Festival"),
                 ("Tomas Reyes", "present_in", "Aurora Festival")],
    "1101-012": [("Lena Vogt", "member_of", "The Glass Owls"), ("Lena Vogt", "place_of_residence", "Berlin")],
    "1101-013": [("Monsoon Letters", "created_by", "Priya Nair"), ("Monsoon Letters", "created_by", "Northwind Records")],
    "1101-014": [("Northwind Records", "located_in", "Oslo")],
    "1101-015": [("Tomas Reyes", "present_in", "Aurora Festival"), ("Aurora Festival", "located_in", "Bergen")],
    "1101-016": [("Tomas Reyes", "present_in", "Aurora Festival"), ("Aurora Festival", "located_in", "Bergen")],
    "1101-017": [("Monsoon Letters", "created_by", "Priya Nair")],
    "1101-018": [("Ana Costa", "member_of", "Lisbon Falcons")],
    "1101-020": [("Min Seo-yeon", "member_of", "Hanbit Comets"), ("Min Seo-yeon", "place_of_residence", "Daejeon")],
    "1101-021": [("Marta Silva", "member_of", "Lisbon Falcons"), ("Ana Costa", "member_of", "Lisbon Falcons"),
                 ("Marta Silva", "peer", "Ana Costa")],
    "1101-022": [("Aurora Festival", "located_in", "Bergen")],
    "1102-001": [("Nimbus X2", "created_by", "Corvid Labs")],
    "1102-002": [("Dana Whitfield", "member_of", "Corvid Labs"), ("Nimbus X2", "created_by", "Corvid Labs")],
    "1102-003": [("Nimbus X2", "created_by", "Corvid Labs")],
    "1102-004": [("Helix Dynamics", "located_in", "Austin"), ("Helix Dynamics", "located_in", "TX"),
                 ("Austin", "located_in", "TX"), ("Pulse Watch 3", "created_by", "Helix Dynamics")],
    "1102-005": [("Raj Malhotra", "member_of", "Corvid Labs")],
    "1102-006": [("ByteConf 2026", "located_in", "Singapore"), ("Dana Whitfield", "present_in", "ByteConf 2026"),
                 ("Raj Malhotra", "present_in", "ByteConf 2026")],
    "1102-007": [("Corvid Labs", "located_in", "Berlin"), ("Nimbus X2", "created_by", "Corvid Labs")],
    "1102-008": [("Sofia Marin", "place_of_residence", "Valencia")],
    "1102-010": [("Lantern Night Market", "located_in", "Taipei")],
    "1102-012": [("Alpine Rail Co.", "located_in", "Zurich"), ("Glacier Line", "created_by", "Alpine Rail Co.")],
    "1102-013": [("Reykjavik", "located_in", "Iceland")],
    "1102-014": [("Grace Okafor", "member_of", "Helix Dynamics"), ("Grace Okafor", "place_of_residence", "Austin")],
    "1102-015": [("Pulse Watch 3", "created_by", "Helix Dynamics")],
    "1102-018": [("Lagos", "located_in", "Portugal"), ("Lagos", "located_in", "Algarve")],
    "1102-019": [("Sofia Marin", "peer", "Lucas Moreau"), ("Chamonix", "located_in", "Alps")],
    "1102-020": [("Lucas Moreau", "place_of_residence", "Lyon"), ("Lantern Night Market", "located_in", "Taipei")],
    "1102-021": [("Raj Malhotra", "present_in", "ByteConf 2026"), ("ByteConf 2026", "located_in", "Singapore")],
    "1103-001": [("Marta Silva", "member_of", "Lisbon Falcons"), ("Atlantic Cup", "located_in", "Porto"),
                 ("Marta Silva", "present_in", "Atlantic Cup")],
    "1103-003": [("Aurora Festival", "located_in", "Bergen"), ("Lena Vogt", "member_of", "The Glass Owls"),
                 ("Lena Vogt", "present_in", "Aurora Festival")],
    "1103-004": [("Priya Nair", "present_in", "Aurora Festival"), ("Monsoon Letters", "created_by", "Priya Nair")],
    "1103-005": [("Jon Park", "member_of", "Seoul Tigers")],
    "1103-006": [("Kofi Mensah", "peer", "Tom Adeyemi"), ("Kofi Mensah", "present_in", "Coastline Games"),
                 ("Tom Adeyemi", "present_in", "Coastline Games")],
    "1103-007": [("Nimbus X2", "created_by", "Corvid Labs")],
    "1103-008": [("Grace Okafor", "member_of", "Helix Dynamics")],
    "1103-009": [("Tagus", "located_in", "Lisbon")],
    "1103-011": [("Ana Costa", "member_of", "Lisbon Falcons")],
    "1103-012": [("Sofia Marin", "place_of_residence", "Valencia")],
    "1103-015": [("Dana Whitfield", "present_in", "ByteConf 2026"), ("Grace Okafor", "present_in", "ByteConf 2026"),
                 ("Dana Whitfield", "peer", "Grace Okafor")],
    "1103-016": [("Monsoon Letters", "created_by", "Northwind Records"), ("Monsoon Letters", "created_by", "Priya Nair")],
    "1103-017": [("Glacier Line", "created_by", "Alpine Rail Co.")],
    "1103-702": [("Northwind Records", "located_in", "Bergen")],
    "1103501": [("Aurora Festival", "located_in", "Bergen")],
    "1103502": [("Min Seo-yeon", "member_of", "Seoul Tigers"), ("Jon Park", "member_of", "Seoul Tigers"),
                ("Min Seo-yeon", "peer", "Jon Park")],
    "1103503": [("Lantern Night Market", "located_in", "Taipei")],
    "1103504": [("Pulse Watch 4", "created_by", "Helix Dynamics")],
}
#: Surfaces matched case-insensitively only for these hashtags written in lower case by the posts.
_LOWERCASE_TAGS = {"#alps": "Alps", "#algarve": "Algarve"}


def gold_mentions(text: str) -> list[str]:
    """The names of the ``SAMPLE_ENTITIES`` a post's text names, in order of first appearance."""
    import re

    from mmkg.identity import without_invisible  # the characters the project's names drop

    visible = without_invisible(text)
    surfaces = [(s, e.name) for e in SAMPLE_ENTITIES for s in (e.name, *e.surfaces)]
    surfaces += [(tag, name) for tag, name in _LOWERCASE_TAGS.items()]
    taken: list[tuple[int, int, str]] = []
    for surface, name in sorted(surfaces, key=lambda x: -len(x[0])):
        for m in re.finditer(r"(?<![\w#@])" + re.escape(surface) + r"(?!\w)", visible):
            if not any(a < m.end() and m.start() < b for a, b, _ in taken):
                taken.append((m.start(), m.end(), name))
    return list(dict.fromkeys(name for _, _, name in sorted(taken)))


def gold_entities(valid_posts: list[dict]) -> dict:
    return {
        "description": "The entities each valid sample post names, with their right ontology types, and the facts "
        "(head, relation, tail) it states (sample_data/generate.py SAMPLE_ENTITIES, SAMPLE_FACTS; bench.demo_quality "
        "scores the demo graph against it). "
        "'names' are every surface of an entity normalised as mmkg.identity.normalize_name does.",
        "entities": [{"name": e.name, "types": list(e.types), "kind": e.kind, "surfaces": [e.name, *e.surfaces]}
                     for e in SAMPLE_ENTITIES],
        "posts": {str(p["id"]): {"lang": p.get("lang") or "en", "entities": gold_mentions(p["text"]),
                                 "facts": [list(f) for f in SAMPLE_FACTS.get(str(p["id"]), [])]}
                  for p in valid_posts},
    }


def _check_facts(gold: dict) -> None:
    """Every fact names entities its own post names (a typo here would silently score as a miss)."""
    for pid, facts in SAMPLE_FACTS.items():
        post = gold["posts"][pid]
        for head, _, tail in facts:
            if head not in post["entities"] or tail not in post["entities"]:
                raise ValueError(f"{pid}: fact {head!r} / {tail!r} names an entity the post does not name")

# --- writing and expectations -------------------------------------------------------------------


@dataclass
class DayExpectation:
    records: int = 0
    posts: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict] = field(default_factory=list)

    def add_valid(self, obj: dict, source: str) -> None:
        self.records += 1
        self.posts += 1
        for ref in obj["images"][:MAX_IMAGES_PER_POST]:
            status = BAD_IMAGES.get(ref, "ok")
            self.images[status] = self.images.get(status, 0) + 1
            if status != "ok":
                self.quarantine.append({"source": source, "reason": f"image_{status}", "post_id": str(obj["id"])})
        if len(obj["images"]) > MAX_IMAGES_PER_POST:
            self.quarantine.append({"source": source, "reason": "too_many_images", "post_id": str(obj["id"])})

    def add_bad(self, reason: str, post_id: str | None, source: str) -> None:
        self.records += 1
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.quarantine.append({"source": source, "reason": reason, "post_id": post_id})

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "posts": self.posts,
            "rejected": dict(sorted(self.rejected.items())),
            "images": dict(sorted(self.images.items())),
            "quarantine": self.quarantine,
        }


def write_jsonl(
    path: Path, valid: list[dict], bad_after: dict[int, Bad], exp: DayExpectation, *, final_newline: bool = True
) -> None:
    lines: list[bytes] = []
    for i, obj in enumerate(valid):
        line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        if obj["id"] in BOM_LINES:
            line = b"\xef\xbb\xbf" + line
        if obj["id"] in CRLF_LINES:
            line += b"\r"
        lines.append(line)
        exp.add_valid(obj, f"{path.parent.name}/{path.name}:{len(lines)}")
        if i in bad_after:
            b = bad_after[i]
            lines.append(b.line)
            if b.reason != "blank":
                exp.add_bad(b.reason, b.post_id, f"{path.parent.name}/{path.name}:{len(lines)}")
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime 0: the same bytes on every run
    path.write_bytes(data)


def write_parquet(path: Path, rows: list[tuple[dict, str | None]], exp: DayExpectation) -> None:
    schema = pa.schema([
        ("id", pa.int64()),
        ("text", pa.string()),
        ("created_at", pa.string()),
        ("author", pa.string()),
        ("lang", pa.string()),
        ("source", pa.string()),
        ("images", pa.list_(pa.string())),
        ("likes", pa.int64()),  # not in the contract: ignored by the reader
    ])
    table = [{**obj, "likes": 10 * number} for number, (obj, _) in enumerate(rows, start=1)]
    pq.write_table(pa.Table.from_pylist(table, schema=schema), path)
    for number, (obj, reason) in enumerate(rows, start=1):
        source = f"{path.parent.name}/{path.name}:{number}"
        if reason is None:
            exp.add_valid(obj, source)
        else:
            exp.add_bad(reason, str(obj["id"]), source)


def write_legacy_parquet(path: Path, rows: list[dict], exp: DayExpectation) -> None:
    """A file without the required created_at column: each row is refused, with its id."""
    pq.write_table(pa.Table.from_pylist(rows), path)
    for number, row in enumerate(rows, start=1):
        exp.add_bad("missing_column", row["id"], f"{path.parent.name}/{path.name}:{number}")


def generate(out: Path) -> dict:
    landing = out / "landing"
    if landing.exists():
        shutil.rmtree(landing)
    write_images(landing / "images")
    days: dict[str, DayExpectation] = {}
    for day, valid, bad_after in (
        ("2026-11-01", DAY1, DAY1_BAD),
        ("2026-11-02", DAY2, DAY2_BAD),
        ("2026-11-03", DAY3, DAY3_BAD),
    ):
        part = landing / f"dt={day}"
        part.mkdir()
        exp = days[day] = DayExpectation()
        if day == "2026-11-03":  # files are read in name order: extra, legacy, more, posts
            write_parquet(part / "extra.parquet", DAY3_PARQUET, exp)
            write_legacy_parquet(part / "legacy.parquet", DAY3_LEGACY_PARQUET, exp)
            write_jsonl(part / "more.ndjson.gz", DAY3_NDJSON_GZ, {}, exp)
        write_jsonl(part / "posts.jsonl", valid, bad_after, exp, final_newline=day != "2026-11-03")

    totals = DayExpectation()
    for exp in days.values():
        totals.records += exp.records
        totals.posts += exp.posts
        for k, v in exp.rejected.items():
            totals.rejected[k] = totals.rejected.get(k, 0) + v
        for k, v in exp.images.items():
            totals.images[k] = totals.images.get(k, 0) + v
    expected = {
        "description": "What extraction.posts.read_partition must return for each day of sample_data/landing "
        "(written by sample_data/generate.py). 'rejected' counts records by quarantine reason; "
        "'images' counts image references of valid posts by status; 'quarantine' lists every "
        "QuarantinedRecord (source, reason, post_id) in read order.",
        "days": {day: exp.as_dict() for day, exp in days.items()},
        "totals": {k: v for k, v in totals.as_dict().items() if k != "quarantine"},
    }
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    valid = DAY1 + DAY2 + DAY3 + DAY3_NDJSON_GZ + [obj for obj, reason in DAY3_PARQUET if reason is None]
    gold = gold_entities(valid)
    _check_facts(gold)
    (out / "gold_entities.json").write_text(json.dumps(gold, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for landing/ and expected.json")
    args = parser.parse_args()
    expected = generate(args.out)
    t = expected["totals"]
    print(f"wrote {args.out / 'landing'}: {t['posts']} valid posts of {t['records']} records; "
          f"rejected {t['rejected']}; images {t['images']}")


if __name__ == "__main__":
    main()

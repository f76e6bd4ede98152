"""Project settings: the one place where configuration is read from the environment.

Every setting has a documented default that makes the embedded demo work on a fresh machine
(local Neo4j on 127.0.0.1, data under ``MMKG_HOME``). Nothing here touches the network or
imports heavy libraries.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The embedded Neo4j's password file, under ``Neo4jSettings.home``: a random password that
#: ``neo4j_server`` generates at the first start (mode 0600) and every later reader takes from here.
NEO4J_PASSWORD_FILE = "password"


def neo4j_password_file(home: Path) -> Path:
    """Where the embedded server under ``home`` keeps its generated password."""
    return Path(home).expanduser() / NEO4J_PASSWORD_FILE


def read_neo4j_password(home: Path) -> str:
    """The generated password of the embedded server under ``home``; "" before its first start."""
    try:
        return neo4j_password_file(home).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def mmkg_home() -> Path:
    """Where mmkg keeps machine-local state (Neo4j data, launcher build, caches)."""
    return Path(_env("MMKG_HOME", str(Path.home() / ".cache" / "mmkg"))).expanduser()


@dataclass(frozen=True)
class Neo4jSettings:
    """How to reach Neo4j, and how to run the embedded local server."""

    uri: str
    user: str
    password: str
    database: str
    bolt_port: int
    http_port: int
    home: Path  # data, logs, pid file of the embedded server

    @classmethod
    def from_env(cls) -> "Neo4jSettings":
        """The password is ``MMKG_NEO4J_PASSWORD`` when set; else, when the URI is the embedded
        server's, the one it generated (:func:`read_neo4j_password`; "" before its first start,
        when ``neo4j_server`` generates it); else "" (your own Neo4j: set MMKG_NEO4J_PASSWORD).
        The local password file is never sent to another server."""
        bolt_port = int(_env("MMKG_NEO4J_BOLT_PORT", "7687"))
        local_uri = f"bolt://127.0.0.1:{bolt_port}"
        uri = _env("MMKG_NEO4J_URI", local_uri)
        home = Path(_env("MMKG_NEO4J_HOME", str(mmkg_home() / "neo4j"))).expanduser()
        password = _env("MMKG_NEO4J_PASSWORD", "")
        # The embedded server by either scheme: bolt:// (one server) or neo4j:// (routing, as clusters use).
        if not password and uri in (local_uri, f"neo4j://127.0.0.1:{bolt_port}"):
            password = read_neo4j_password(home)
        return cls(
            uri=uri,
            user=_env("MMKG_NEO4J_USER", "neo4j"),
            password=password,
            database=_env("MMKG_NEO4J_DATABASE", "neo4j"),
            bolt_port=bolt_port,
            http_port=int(_env("MMKG_NEO4J_HTTP_PORT", "7474")),
            home=home,
        )


#: The zero-shot extractor ingestion uses unless MMKG_EXTRACTOR says otherwise.
DEFAULT_EXTRACTOR = "mg-vmoe"


@dataclass(frozen=True)
class PipelineSettings:
    """Where ingestion reads posts, stages Parquet, and which label set it uses."""

    landing_dir: Path
    staging_dir: Path
    ontology_path: Path
    shard_size: int = 200
    #: rows per UNWIND transaction, and concurrent write transactions (kg_loader.writer)
    batch_size: int = field(default=1000)
    neo4j_writers: int = field(default=2)
    #: "mg-vmoe" (default: the committed checkpoints) or "label-similarity" (the untrained baseline)
    extractor: str = DEFAULT_EXTRACTOR
    #: checkpoint directories or published names (models.registry); empty = the committed ones
    entity_checkpoint: str = ""
    relation_checkpoint: str = ""
    #: the mention tagger's checkpoint directory (extraction.detection): empty = the committed one,
    #: "none" = no tagger (spaCy + rules); a directory that is absent also falls back to spaCy + rules
    mention_checkpoint: str = ""

    @classmethod
    def from_env(cls) -> "PipelineSettings":
        return cls(
            landing_dir=Path(_env("MMKG_LANDING_DIR", str(REPO_ROOT / "sample_data" / "landing"))),
            staging_dir=Path(_env("MMKG_STAGING_DIR", str(mmkg_home() / "staging"))),
            ontology_path=Path(_env("MMKG_ONTOLOGY", str(REPO_ROOT / "ontology" / "ontology.yaml"))),
            shard_size=int(_env("MMKG_SHARD_SIZE", "200")),
            batch_size=int(_env("MMKG_NEO4J_BATCH_SIZE", str(cls.batch_size))),
            neo4j_writers=int(_env("MMKG_NEO4J_WRITERS", str(cls.neo4j_writers))),
            extractor=_env("MMKG_EXTRACTOR", DEFAULT_EXTRACTOR),
            entity_checkpoint=_env("MMKG_ENTITY_CHECKPOINT", ""),
            relation_checkpoint=_env("MMKG_RELATION_CHECKPOINT", ""),
            mention_checkpoint=_env("MMKG_MENTION_CHECKPOINT", ""),
        )

    def label_set(self):
        """The label set at ``ontology_path``, read and validated (``mmkg.ontology.load_ontology``: an
        ``OntologyError`` says what is wrong)."""
        from mmkg.ontology import load_ontology

        return load_ontology(self.ontology_path)


# --- image fetching and image limits (extraction.images, extraction.posts, mmkg.images) ---------

#: Largest image accepted, in bytes (a local file's size or a downloaded body).
DEFAULT_IMAGE_MAX_BYTES = 10 * 1024 * 1024
#: Largest image accepted, in pixels (width x height), checked from the header before decoding. The
#: model sees 224 x 224; 25 Mpx (5000 x 5000) covers phone photos while a decoded RGBA image stays
#: under ~100 MB. Pillow's own decompression-bomb guard (~89 Mpx) is far above this.
DEFAULT_IMAGE_MAX_PIXELS = 25_000_000
#: Wall-clock limit for one download (DNS, connect, TLS, headers, body and redirects together), in s.
DEFAULT_IMAGE_FETCH_TIMEOUT_S = 5.0


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class ImageSettings:
    """How images are read and fetched. Remote images reach only public (globally routable)
    addresses unless a network or host is allow-listed here for an internal image store."""

    #: networks whose addresses may be fetched from although they are not public, e.g.
    #: ``10.20.0.0/16`` or ``127.0.0.1/32`` (MMKG_IMAGE_ALLOWED_NETWORKS, comma-separated)
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: host names (as written in the URL, case-insensitive) fetched from whatever they resolve to
    #: (MMKG_IMAGE_ALLOWED_HOSTS, comma-separated)
    allowed_hosts: frozenset[str] = frozenset()
    max_bytes: int = DEFAULT_IMAGE_MAX_BYTES
    max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS
    fetch_timeout_s: float = DEFAULT_IMAGE_FETCH_TIMEOUT_S
    #: redirects followed per download, each re-checked like the first URL; 0 = follow none
    max_redirects: int = 3
    #: images checked per post; the rest are dropped and quarantined (``too_many_images``)
    max_images_per_post: int = 16
    #: concurrent image checks (downloads) while one partition is read
    fetch_workers: int = 4

    @classmethod
    def from_env(cls) -> "ImageSettings":
        networks = []
        for item in _csv(_env("MMKG_IMAGE_ALLOWED_NETWORKS", "")):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"MMKG_IMAGE_ALLOWED_NETWORKS: {item!r} is not a network ({exc})") from None
        settings = cls(
            allowed_networks=tuple(networks),
            allowed_hosts=frozenset(h.lower().rstrip(".") for h in _csv(_env("MMKG_IMAGE_ALLOWED_HOSTS", ""))),
            max_bytes=int(_env("MMKG_IMAGE_MAX_BYTES", str(DEFAULT_IMAGE_MAX_BYTES))),
            max_pixels=int(_env("MMKG_IMAGE_MAX_PIXELS", str(DEFAULT_IMAGE_MAX_PIXELS))),
            fetch_timeout_s=float(_env("MMKG_IMAGE_FETCH_TIMEOUT_S", str(DEFAULT_IMAGE_FETCH_TIMEOUT_S))),
            max_redirects=int(_env("MMKG_IMAGE_MAX_REDIRECTS", str(cls.max_redirects))),
            max_images_per_post=int(_env("MMKG_MAX_IMAGES_PER_POST", str(cls.max_images_per_post))),
            fetch_workers=int(_env("MMKG_IMAGE_FETCH_WORKERS", str(cls.fetch_workers))),
        )
        for name in ("max_bytes", "max_pixels", "max_images_per_post", "fetch_workers"):
            if getattr(settings, name) < 1:
                raise ValueError(f"image setting {name} must be at least 1, got {getattr(settings, name)}")
        if settings.max_redirects < 0 or not settings.fetch_timeout_s > 0:
            raise ValueError("MMKG_IMAGE_MAX_REDIRECTS must be >= 0 and MMKG_IMAGE_FETCH_TIMEOUT_S > 0")
        return settings


def research_data_dir() -> Path | None:
    """The research data directory (MNRE, WNUT-16, Twitter-2017), or None when absent.

    Research data is never part of the project; tests and benchmarks that need it skip
    with a clear message when this returns None.
    """
    candidate = Path(_env("MMKG_DATA", str(REPO_ROOT.parent / "shared" / "data")))
    return candidate if candidate.is_dir() else None

"""Project settings: the one place where configuration is read from the environment.

Every setting has a documented default that makes the embedded demo work on a fresh machine
(local Neo4j on 127.0.0.1, data under ``MMKG_HOME``). Nothing here touches the network or
imports heavy libraries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Documented local default for the embedded Neo4j. Override with MMKG_NEO4J_PASSWORD.
DEFAULT_NEO4J_PASSWORD = "mmkg-local-dev"


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
        bolt_port = int(_env("MMKG_NEO4J_BOLT_PORT", "7687"))
        return cls(
            uri=_env("MMKG_NEO4J_URI", f"bolt://127.0.0.1:{bolt_port}"),
            user=_env("MMKG_NEO4J_USER", "neo4j"),
            password=_env("MMKG_NEO4J_PASSWORD", DEFAULT_NEO4J_PASSWORD),
            database=_env("MMKG_NEO4J_DATABASE", "neo4j"),
            bolt_port=bolt_port,
            http_port=int(_env("MMKG_NEO4J_HTTP_PORT", "7474")),
            home=Path(_env("MMKG_NEO4J_HOME", str(mmkg_home() / "neo4j"))).expanduser(),
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


def research_data_dir() -> Path | None:
    """The research data directory (MNRE, WNUT-16, Twitter-2017), or None when absent.

    Research data is never part of the project; tests and benchmarks that need it skip
    with a clear message when this returns None.
    """
    candidate = Path(_env("MMKG_DATA", str(REPO_ROOT.parent / "shared" / "data")))
    return candidate if candidate.is_dir() else None

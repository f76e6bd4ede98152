"""The loader's concurrency plan without a server: partitions, rounds, deadlock retries."""

from __future__ import annotations

import itertools

import pytest

from kg_loader import writer
from kg_loader.writer import LoadReport, _mention_rounds, _partition, _relation_rounds, _write_batch


@pytest.mark.parametrize("parts", [1, 2, 4, 6, 8])
def test_relation_rounds_cover_every_partition_pair_once_with_disjoint_jobs(parts):
    rounds = _relation_rounds(parts)
    jobs = [job for r in rounds for job in r]
    every_pair = set(itertools.combinations_with_replacement(range(parts), 2))
    assert sorted(jobs) == sorted(every_pair)  # each (head, tail) partition pair written exactly once
    for r in rounds:
        touched = [p for job in r for p in set(job)]
        assert len(touched) == len(set(touched)), f"round {r} shares a partition"


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_mention_rounds_are_latin_squares(parts):
    rounds = _mention_rounds(parts)
    assert sorted(job for r in rounds for job in r) == sorted(itertools.product(range(parts), repeat=2))
    for r in rounds:
        assert len({post for post, _ in r}) == len({entity for _, entity in r}) == len(r) == parts


def test_relation_rounds_refuse_odd_partition_counts():
    with pytest.raises(ValueError, match="even"):
        _relation_rounds(3)


def test_partition_is_stable_and_spread():
    ids = [f"{i:032x}" for i in range(4000)]
    assert [_partition(i, 4) for i in ids] == [_partition(i, 4) for i in ids]
    assert _partition("abc", 4) == 2  # crc32, not Python's per-process salted hash()
    counts = [sum(_partition(i, 4) == p for i in ids) for p in range(4)]
    assert min(counts) > 900


class _Counters:
    nodes_created = nodes_deleted = relationships_created = relationships_deleted = properties_set = labels_added = 0


class _Result:
    def __iter__(self):
        return iter(())

    def consume(self):
        return type("Summary", (), {"counters": _Counters()})()


def _neo4j_error(code: str):
    from neo4j.exceptions import Neo4jError

    return Neo4jError._hydrate_neo4j(code=code, message=f"{code} (raised by the test)")


class _Session:
    """Stands in for a driver session: the first ``failures`` explicit commits raise ``error``."""

    def __init__(self, failures: int, error):
        self.failures, self.error = failures, error
        self.commits = self.managed = 0

    def begin_transaction(self):
        session = self

        class _Tx:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def run(self, query, params):
                return _Result()

            def commit(self):
                session.commits += 1
                if session.commits <= session.failures:
                    raise session.error

        return _Tx()

    def execute_write(self, fn, *args):
        self.managed += 1
        return [], _Counters()


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(writer.time, "sleep", lambda s: None)


def test_a_deadlock_victim_is_rerun_at_once_and_counted(no_sleep):
    session, report = _Session(2, _neo4j_error(writer.DEADLOCK_CODE)), LoadReport()
    records, counters = _write_batch(session, "RETURN 1", {}, report)
    assert records == [] and isinstance(counters, _Counters)
    assert (session.commits, session.managed, report.deadlock_retries) == (3, 0, 2)


def test_a_batch_that_keeps_deadlocking_fails_loudly(no_sleep):
    session = _Session(writer.DEADLOCK_RETRIES, _neo4j_error(writer.DEADLOCK_CODE))
    with pytest.raises(RuntimeError, match="still deadlocks"):
        _write_batch(session, "RETURN 1", {}, LoadReport())
    assert session.commits == writer.DEADLOCK_RETRIES


def test_other_retryable_failures_go_to_the_drivers_managed_retry(no_sleep):
    from neo4j.exceptions import ServiceUnavailable

    for error in (ServiceUnavailable("connection lost"), _neo4j_error("Neo.TransientError.General.MemoryPoolOutOfMemoryError")):
        session, report = _Session(1, error), LoadReport()
        _write_batch(session, "RETURN 1", {}, report)
        assert (session.commits, session.managed, report.deadlock_retries) == (1, 1, 0)


def test_a_non_retryable_failure_is_raised(no_sleep):
    from neo4j.exceptions import ConstraintError

    session = _Session(1, _neo4j_error("Neo.ClientError.Schema.ConstraintValidationFailed"))
    with pytest.raises(ConstraintError):
        _write_batch(session, "RETURN 1", {}, LoadReport())
    assert session.managed == 0


def test_writers_must_be_positive():
    with pytest.raises(ValueError, match="writers"):
        writer.GraphWriter(driver=None, writers=0)


def test_the_ingestion_writer_takes_batch_size_and_writers_from_the_environment(monkeypatch):
    from kg_loader.load import writer_for
    from mmkg.ontology import load_ontology
    from mmkg.settings import REPO_ROOT

    ontology = load_ontology(REPO_ROOT / "ontology" / "ontology.yaml")
    default = writer_for(None, ontology)
    assert (default.batch_size, default.writers) == (writer.DEFAULT_BATCH_SIZE, writer.DEFAULT_WRITERS)
    monkeypatch.setenv("MMKG_NEO4J_BATCH_SIZE", "250")
    monkeypatch.setenv("MMKG_NEO4J_WRITERS", "1")
    configured = writer_for(None, ontology)
    assert (configured.batch_size, configured.writers) == (250, 1)
    assert "Person" in configured.allowed_entity_types


def test_loads_too_small_for_a_full_batch_per_job_are_not_split():
    two = writer.GraphWriter(driver=None, batch_size=1000, writers=2)
    assert two._partitions(600, 4, jobs=10) == 1  # a shard: one stream of transactions, as before
    assert two._partitions(9_999, 4, jobs=10) == 1
    assert two._partitions(10_000, 4, jobs=10) == 4
    assert writer.GraphWriter(driver=None, writers=1)._partitions(10**6, 2, jobs=4) == 1

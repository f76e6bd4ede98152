"""One surface form, one type, across the whole run (issue 10 item 2): ``extraction.pipeline.agree_run_types``.

A fake typer stands in for MG-VMoE (same interface: ``type_mentions_scored`` with the per-shard agreement of
``zero_shot.agree_on_types``, ``extract_relations``), so the scores are chosen here and the test is fast."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from extraction import pipeline, staging
from extraction.zero_shot import agree_on_types, least_sure_names, relation_candidates
from mmkg.identity import entity_id, entity_name, typing_keys
from mmkg.ontology import load_ontology
from mmkg.records import OTHER_TYPE, Mention, Post, RelationMention, TypedMention

ROOT = Path(__file__).resolve().parent.parent
ONTOLOGY = ROOT / "ontology" / "ontology.yaml"
TYPES = [e.name for e in load_ontology(ONTOLOGY).entity_types]  # Person, Location, Organization, Event, Product


def scores(**by_type: float) -> list[float]:
    return [by_type.get(t, -2.0) for t in TYPES]


class FakeTyper:
    """Raw scores looked up per (post id, surface); a relation for every allowed pair (its first relation)."""

    model_version = "fake/typer@1"
    min_type_score = 0.5
    type_min_gap = None

    def __init__(self, table: dict[tuple[str, str], list[float]]):
        self.table = table
        self.stats: Counter = Counter()
        self.relation_calls: list[list[str]] = []

    def type_mentions_scored(self, posts, mentions, ontology):
        raw = torch.tensor([self.table[(m.post_id, m.text)] for m in mentions]).reshape(len(mentions), len(TYPES))
        names = [entity_name(m, {m.post_id: posts[m.post_id].text}) for m in mentions]
        keys = typing_keys([m.post_id for m in mentions], names)  # as MGVMoEExtractor.type_mentions_scored
        agreed = agree_on_types(keys, raw, self.min_type_score, parents=ontology.parent_indices(),
                                min_gap=self.type_min_gap)
        names = [e.name for e in ontology.entity_types]
        typed = [TypedMention(m, OTHER_TYPE if k is None else names[k], float(r.softmax(-1)[k or 0]),
                              self.model_version, ontology.label_set_id) for m, r, k in zip(mentions, raw, agreed)]
        return typed, raw

    def type_mentions(self, posts, mentions, ontology):
        return self.type_mentions_scored(posts, mentions, ontology)[0]

    def forget_posts(self):
        pass

    def extract_relations(self, posts, typed, ontology):
        self.relation_calls.append(sorted(posts))
        return [RelationMention(h.mention.post_id, h, t, allowed[0].name, 0.9, self.model_version, ontology.label_set_id)
                for h, t, allowed in relation_candidates(posts, typed, ontology)]


def _mention(post: Post, surface: str) -> Mention:
    start = post.text.index(surface)
    return Mention(post.id, start, start + len(surface), surface, "test")


@pytest.fixture
def run(tmp_path, monkeypatch, staging_dir):
    """A run of two shards staged by hand: shard 0 holds one 'Seoul Tigers' that alone reads as a place,
    shard 1 two that read as a team; 'Porto' is a homonym (two strong city mentions, two strong club ones)."""
    posts = [
        [Post("a1", "Jon Park dropped 31 for the Seoul Tigers tonight", "2026-11-01T00:00:00+00:00"),
         Post("a2", "Porto is lovely in spring, Porto old town", "2026-11-01T00:00:00+00:00")],
        [Post("b1", "Seoul Tigers win again", "2026-11-01T00:00:00+00:00"),
         Post("b2", "Jon Park signs with the Seoul Tigers", "2026-11-01T00:00:00+00:00"),
         Post("b3", "Porto beat Benfica, Porto top of the league", "2026-11-01T00:00:00+00:00")],
    ]
    table = {
        ("a1", "Jon Park"): scores(Person=3.0), ("a1", "Seoul Tigers"): scores(Location=2.9, Organization=2.4),
        ("a2", "Porto"): scores(Location=4.0, Organization=1.0),
        ("b1", "Seoul Tigers"): scores(Location=1.9, Organization=2.5),
        ("b2", "Jon Park"): scores(Person=3.0), ("b2", "Seoul Tigers"): scores(Location=1.9, Organization=2.5),
        ("b3", "Porto"): scores(Location=1.0, Organization=4.0),
    }
    def second_porto(p: Post) -> list[Mention]:  # "Porto ... Porto": the second mention of the post too
        if p.text.count("Porto") != 2:
            return []
        start = p.text.rindex("Porto")
        return [Mention(p.id, start, start + 5, "Porto", "test")]

    return _typed_run(staging_dir, monkeypatch, posts, table, ("Jon Park", "Seoul Tigers", "Porto"), second_porto)


def _typed_run(staging_dir, monkeypatch, posts, table, surfaces, more=lambda post: []):
    """A run of one shard per chunk of ``posts``, staged by hand and typed by a ``FakeTyper`` over ``table``: each
    post's mentions are the ``surfaces`` it holds (their first occurrence) and ``more(post)``."""
    plan = pipeline.IntervalPlan("2026-11-01", ("2026-11-01",), "run-1", str(ONTOLOGY),
                                 load_ontology(ONTOLOGY).label_set_id, str(staging_dir))
    typer = FakeTyper(table)
    monkeypatch.setattr(pipeline, "extractor_for", lambda *a, **k: typer)
    shards = []
    for number, chunk in enumerate(posts):
        shard = {"staging_dir": str(staging_dir), "interval_key": plan.interval_key, "run_dir": str(plan.run_dir),
                 "shard": number, "posts": len(chunk), "partition": "2026-11-01"}
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        staging.write_posts(staging.shard_file(shard, "posts"), chunk)
        mentions = [_mention(p, s) for p in chunk for s in surfaces if s in p.text] + [m for p in chunk for m in more(p)]
        staging.write_records(staging.shard_file(shard, "mentions"), mentions, Mention)
        shards.append(pipeline.type_shard({**shard, "mentions": len(mentions)}, plan))
    return plan, shards, typer


def _entities(shards) -> dict[str, set[str]]:
    """Surface name -> entity ids its mentions get, over the run's staged typed mentions."""
    out: dict[str, set[str]] = {}
    for shard in shards:
        posts = {p.id: p.text for p in staging.read_posts(staging.shard_file(shard, "posts"))}
        for tm in staging.read_typed_mentions(staging.shard_file(shard, "typed_mentions")):
            name = entity_name(tm.mention, posts)
            out.setdefault(name, set()).add(entity_id(name, tm.entity_type))
    return out


def test_one_surface_form_typed_differently_in_two_shards_ends_as_one_entity(run):
    plan, shards, typer = run
    before = _entities(shards)
    assert len(before["seoul tigers"]) == 2  # per shard: Location in shard 0, Organization in shard 1

    agreed = pipeline.agree_run_types(plan, shards)

    after = _entities(agreed)
    assert after["seoul tigers"] == {entity_id("seoul tigers", "Organization")}
    assert after["jon park"] == {entity_id("jon park", "Person")}
    # The homonym keeps both readings: two strong city mentions, two strong club mentions.
    assert after["porto"] == {entity_id("porto", "Location"), entity_id("porto", "Organization")}
    # Only the post with the retyped mention had its relations extracted again; they follow the new type.
    assert typer.relation_calls[-1] == ["a1"]
    rels = staging.read_relations(staging.shard_file(agreed[0], "relations"))
    assert [(r.head.mention.text, r.tail.mention.text, r.relation) for r in rels if r.post_id == "a1"] == [
        ("Jon Park", "Seoul Tigers", "member_of")]
    assert [s["mentions_retyped_in_run"] for s in agreed] == [1, 0]
    assert agreed[0]["typed_mentions"] == shards[0]["typed_mentions"]
    summary = (plan.run_dir / "type_agreement.json").read_text()
    assert '"from": "Location"' in summary and '"to": "Organization"' in summary


def test_run_agreement_is_idempotent_and_a_one_shard_run_changes_nothing(run):
    plan, shards, _ = run
    first = pipeline.agree_run_types(plan, shards)
    snapshot = {(s["shard"], k): staging.shard_file(s, k).read_bytes() for s in shards for k in ("typed_mentions", "relations")}
    second = pipeline.agree_run_types(plan, shards)  # a retried task
    assert second == first
    assert {(s["shard"], k): staging.shard_file(s, k).read_bytes() for s in shards
            for k in ("typed_mentions", "relations")} == snapshot

    one = pipeline.agree_run_types(plan, shards[1:])  # shard 1 alone: its own decision stands
    assert one[0]["mentions_retyped_in_run"] == 0


def test_type_scores_round_trip_and_refuse_another_kind(tmp_path):
    ts = staging.TypeScores(("Person", "Location"), 0.5, "abc", ("p1",), ((0, 4),), ("kofi",), ("Person",),
                            ((1.5, -0.25),))
    path = staging.write_type_scores(tmp_path / "type_scores-00000.parquet", ts)
    assert staging.read_type_scores(path) == ts
    staging.write_records(tmp_path / "m.parquet", [], Mention)
    with pytest.raises(staging.StagingSchemaError):
        staging.read_type_scores(tmp_path / "m.parquet")


@pytest.mark.slow
def test_with_the_shipped_typer_a_sample_day_cut_in_small_shards_is_typed_as_one_shard(tmp_path, monkeypatch):
    """The real MG-VMoE typer on a sample day: cut into shards of 4 posts, after ``agree_run_types`` every
    mention has the type the whole day typed as one shard gives it (the agreement does not depend on the
    shard size), where the small shards on their own disagree with it."""
    from datetime import UTC, datetime, timedelta

    from mmkg.settings import PipelineSettings

    day = "2026-11-03"
    monkeypatch.setenv("MMKG_EXTRACTOR", "mg-vmoe")
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)

    def run_day(size: int, name: str):
        settings = PipelineSettings(landing_dir=ROOT / "sample_data" / "landing", staging_dir=tmp_path / name,
                                    ontology_path=ONTOLOGY, shard_size=size)
        plan = pipeline.plan_interval(name, start, start + timedelta(days=1), settings=settings)
        shards, _ = pipeline.stage_posts(plan, settings)
        typed = [pipeline.type_shard(pipeline.detect_shard(s), plan) for s in shards]
        before = _types(typed)
        return before, _types(pipeline.agree_run_types(plan, typed)), len(shards)

    _, whole, one = run_day(200, "one-shard")
    small_before, small_after, many = run_day(4, "small-shards")
    assert one == 1 and many >= 5
    assert small_after == whole
    assert small_before != whole  # without the run's agreement the small shards type some names otherwise


def _types(shards) -> dict[tuple[str, int, int], str]:
    return {(t.mention.post_id, t.mention.start, t.mention.end): t.entity_type for s in shards
            for t in staging.read_typed_mentions(staging.shard_file(s, "typed_mentions"))}


def test_a_type_a_person_set_beats_the_scores_and_its_relations_are_read_again(run, caplog):
    """``mmkg entities set-type`` decisions travel in the plan: the run types those names so, even a homonym
    and even a one-shard run, and extracts the relations of their posts again."""
    plan, shards, typer = run
    decided = plan.with_type_decisions({"seoul tigers": "Location", "porto": "Location", "x": "Stadium"})
    assert decided.type_decisions == {"porto": "Location", "seoul tigers": "Location"}  # not a type of the label set
    assert "not in the label set: {'x': 'Stadium'}" in caplog.text
    assert pipeline.IntervalPlan.from_dict(decided.to_dict()) == decided  # through XCom
    assert pipeline.IntervalPlan.from_dict({k: v for k, v in plan.to_dict().items() if k != "type_decisions"}) == plan

    agreed = pipeline.agree_run_types(decided, shards[1:])  # one shard: only the person's word changes it
    after = _entities(agreed)
    assert after["seoul tigers"] == {entity_id("seoul tigers", "Location")}
    assert after["porto"] == {entity_id("porto", "Location")}  # the homonym's club reading too: the person said so
    assert typer.relation_calls[-1] == ["b1", "b2", "b3"]
    summary = json.loads((plan.run_dir / "type_agreement.json").read_text())
    assert summary["names_typed_by_a_person"] == ["porto", "seoul tigers"]


def test_a_handle_spelling_a_name_of_its_post_is_typed_with_that_name_in_every_post():
    posts = ["p1", "p1", "p1", "p2", "p3", "p3", "p4", "p4", "p4", "p5", "p5", "p5"]
    names = ["marta silva", "martasilva9", "lisbon falcons",  # the handle spells her name
             "martasilva9",  # the same handle alone in another post: still hers
             "kofi mensah", "kofi_runs",  # a word of the name is not the name (resolution proposes it, typing does not)
             "ladygaga", "lady gaga", "porto",  # equal once compacted
             "anasilvano1", "ana silva", "ana silvano"]  # spells two names of its post: neither
    assert typing_keys(posts, names) == [
        "marta silva", "marta silva", "lisbon falcons", "marta silva", "kofi mensah", "kofi_runs",
        "lady gaga", "lady gaga", "porto", "anasilvano1", "ana silva", "ana silvano"]


def test_run_types_a_handle_as_the_name_it_spells_so_it_is_not_split_from_her(tmp_path, monkeypatch, staging_dir):
    """Its letters alone read as a club; beside "Marta Silva" it is typed as she is, in its own shard and, by the
    run's agreement, in a shard where she is not named (its two mentions prefer the club by less than
    ``HOMONYM_MARGIN`` on average, so they are not a homonym of her name)."""
    posts = [[Post("a1", "Marta Silva signs for Lisbon Falcons @martasilva9", "2026-11-01T00:00:00+00:00")],
             [Post("b1", "Training done @martasilva9", "2026-11-01T00:00:00+00:00")]]
    table = {("a1", "Marta Silva"): scores(Person=3.0), ("a1", "Lisbon Falcons"): scores(Organization=3.0),
             ("a1", "martasilva9"): scores(Person=1.0, Organization=2.0),
             ("b1", "martasilva9"): scores(Person=1.5, Organization=2.0)}
    plan, shards, _ = _typed_run(staging_dir, monkeypatch, posts, table, ("Marta Silva", "Lisbon Falcons", "martasilva9"))

    assert _types(shards) == {("a1", 0, 11): "Person", ("a1", 22, 36): "Organization", ("a1", 38, 49): "Person",
                              ("b1", 15, 26): "Organization"}  # shard 1 alone: the handle's own scores
    agreed = pipeline.agree_run_types(plan, shards)
    assert _types(agreed)[("b1", 15, 26)] == "Person"
    assert _entities(agreed)["martasilva9"] == {entity_id("martasilva9", "Person")}  # one entity, typed as she is


def test_the_run_lists_the_names_it_abstained_on_and_a_person_can_type_them(tmp_path, monkeypatch, staging_dir):
    """A name the typer abstains on is not in the graph; the run says which, the most mentioned first, with its two
    best types and why (``type_agreement.json``, the run report), and a type a person then sets brings it in."""
    monkeypatch.setattr(FakeTyper, "type_min_gap", 1.0)
    posts = [[Post("c1", "Corvid Labs unveils the Nimbus X2", "2026-11-02T00:00:00+00:00"),
              Post("k1", "Sofia's guide to the Kansai rail pass", "2026-11-02T00:00:00+00:00")],
             [Post("c2", "Corvid Labs stock up 4%, says Jon Park", "2026-11-02T00:00:00+00:00")]]
    table = {("c1", "Corvid Labs"): scores(Organization=0.9, Product=0.8),  # two readings, 0.3 apart on the mean
             ("c2", "Corvid Labs"): scores(Organization=1.2, Product=0.7),
             ("k1", "Kansai"): scores(Product=0.25, Location=0.2),  # nothing scores min_type_score
             ("c2", "Jon Park"): scores(Person=3.0)}
    plan, shards, _ = _typed_run(staging_dir, monkeypatch, posts, table, ("Corvid Labs", "Kansai", "Jon Park"))

    agreed = pipeline.agree_run_types(plan, shards)
    assert sorted(_types(agreed).values()) == [OTHER_TYPE, OTHER_TYPE, OTHER_TYPE, "Person"]  # only Jon Park is written
    summary = json.loads((plan.run_dir / "type_agreement.json").read_text())
    assert summary["names_abstained"] == 2
    assert summary["abstained"] == [
        {"name": "corvid labs", "mentions": 2, "reason": "ambiguous", "types": [["Organization", 1.05], ["Product", 0.75]],
         "gap": 0.3, "posts": ["c1", "c2"]},
        {"name": "kansai", "mentions": 1, "reason": "below_min_score", "types": [["Product", 0.25], ["Location", 0.2]],
         "posts": ["k1"]}]
    report = pipeline.run_report(plan, {"records": 3, "posts": 3}, agreed)
    assert report["names_abstained"] == 2
    assert report["names_abstained_most_mentioned"] == [
        "corvid labs (2): Organization 1.05 / Product 0.75, gap 0.3 - ambiguous [posts c1, c2]",
        "kansai (1): Product 0.25 / Location 0.2 - below_min_score [posts k1]"]

    decided = plan.with_type_decisions({"corvid labs": "Organization"})  # `mmkg entities set-type`, then a re-run
    after = _entities(pipeline.agree_run_types(decided, shards))
    assert after["corvid labs"] == {entity_id("corvid labs", "Organization")}
    summary = json.loads((plan.run_dir / "type_agreement.json").read_text())
    assert [a["name"] for a in summary["abstained"]] == ["kansai"] and summary["names_abstained"] == 1


def test_the_run_lists_the_names_it_typed_by_the_narrowest_margin_and_not_those_a_person_typed(run):
    """"Seoul Tigers" reads as a team by 0.23 on the mean of its three mentions: written so, and listed for a person
    to check (``type_agreement.json``, the run report); the homonym "Porto" (each reading by 3) and "Jon Park" are
    not. Once a person types the name it is no longer listed."""
    plan, shards, _ = run
    agreed = pipeline.agree_run_types(plan, shards)
    assert _entities(agreed)["seoul tigers"] == {entity_id("seoul tigers", "Organization")}
    summary = json.loads((plan.run_dir / "type_agreement.json").read_text())
    assert summary["names_typed_least_sure"] == 1
    assert summary["least_sure"] == [{"name": "seoul tigers", "mentions": 3, "gap": 0.23,
                                      "types": [["Organization", 2.47], ["Location", 2.23]], "posts": ["a1", "b1", "b2"]}]
    report = pipeline.run_report(plan, {"records": 5, "posts": 5}, agreed)
    assert report["names_typed_least_sure"] == 1
    assert report["names_typed_least_sure_listed"] == [
        "seoul tigers (3): Organization 2.47 / Location 2.23, gap 0.23 [posts a1, b1, b2]"]

    pipeline.agree_run_types(plan.with_type_decisions({"seoul tigers": "Organization"}), shards)
    summary = json.loads((plan.run_dir / "type_agreement.json").read_text())
    assert (summary["names_typed_least_sure"], summary["least_sure"]) == (0, [])


def test_least_sure_names_read_the_margin_outside_the_types_lineage_narrowest_first():
    names, parents = ["Organization", "SportsTeam", "Location"], [None, 0, None]
    raw = torch.tensor([[2.0, 2.9, 2.5],   # a team: its parent Organization is no rival, Location is (by 0.4)
                        [0.0, 0.0, 1.0],   # a place by 1.0: not under the review gap
                        [1.0, 0.0, 0.9],   # abstained: never listed
                        [0.0, 1.8, 1.7], [0.0, 1.9, 1.7]])  # another team, by 0.15 on its two mentions' mean
    keys, decided = ["tigers", "oslo", "x", "comets", "comets"], [1, 2, None, 1, 1]
    count, listed = least_sure_names(keys, raw, decided, names, parents)
    assert count == 2
    assert listed == [{"name": "comets", "mentions": 2, "gap": 0.15, "types": [["SportsTeam", 1.85], ["Location", 1.7]]},
                      {"name": "tigers", "mentions": 1, "gap": 0.4, "types": [["SportsTeam", 2.9], ["Location", 2.5]]}]
    assert least_sure_names(keys, raw, decided, names, parents, below=0.3)[0] == 1
    assert least_sure_names(keys, raw, decided, names, parents, listed=1)[1] == listed[:1]


def test_a_listed_name_names_the_first_posts_that_mention_it():
    entries = [{"name": "porto", "mentions": 5}, {"name": "kansai", "mentions": 1}]
    keys = ["porto", "kansai", "porto", "porto", "porto", "porto"]
    posts = ["p1", "k1", "p1", "p2", "p3", "p4"]  # p1 twice: named once
    listed = pipeline._with_posts(entries, keys, posts)
    assert [e["posts"] for e in listed] == [["p1", "p2", "p3"], ["k1"]] and pipeline.POSTS_SHOWN == 3
    assert entries[0] == {"name": "porto", "mentions": 5}  # the input is not changed

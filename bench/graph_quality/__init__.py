"""End-to-end graph-quality benchmark: what a data team sees in its first Cypher query.

    MMKG_DATA=/work/shared/data python -m bench.graph_quality [--systems ...] [--limit N] [--out DIR]

Real tweets go through the project's real stages - ``extraction.detection.EntityDetector`` for
mentions, ``extraction.pipeline.extractor_for(name)`` for typing and relations, and
``kg_loader.load.load_extraction`` into a throw-away Neo4j 5.26 (free 127.0.0.1 ports, temporary
data, cleared between systems) - and every number is computed from Cypher query results over the
loaded graph (``graph.py``); the scoring itself is pure Python (``scoring.py``, unit-tested).
Writes ``graph_quality.{json,md,png}`` to ``bench/results`` (or ``--out``). Skips, exit status 0,
with a message when the research data is absent.

**MNRE test (relations).** ``mnre/mnre_test.txt``; lines sharing a text (tokens joined with single
spaces) are one post (id from the text's hash); gold = every annotated (head span, tail span,
relation) of the post, ``None`` pairs kept. Relations: the seed-0 split's 7 unseen test relations
(``models.data.mnre_relation_split(files, 0)[2]``), described by ``MNRE_DESCRIPTIONS``, named snake_case,
over the shipped entity types, in two ontologies, both run on the same posts, the same detected mentions
and one typing pass per system (they share the entity types; only relation extraction, load and scoring
repeat):

- **(b) typed as a user writes it (headline, the product as configured)**: allowed (head, tail) types from
  the relation name's argument types, ``per``->Person, ``org``->Organization, ``loc``->Location, ``misc``->
  any of Event, Product, Location, Organization (``/per/loc/place_of_birth`` -> ``[[Person, Location]]``;
  ``scoring.typed_allowed``);
- **(a) any types**: every relation allowed between any two entity types.

The symmetric relations (peer, siblings, couple, neighbor, alumi) are declared ``symmetric: true`` in both.
Leakage: posts whose text is the text of a sample of a seed-0 *train* relation (any of the three files;
the shipped ``mre-mnre`` was trained on them) are left out of the run and counted. Scored pairs: those with
a test-relation annotation, and ``None`` pairs; pairs annotated only with relations the ontology cannot
express are reported apart ("out-of-ontology").

- *Matching a gold entity* (``scoring.MATCH_MODES``). **name** (headline): the gold entity of a post is the
  graph entity of that post (the post ``MENTIONS`` it) whose ``name`` equals
  ``mmkg.identity.normalize_name`` of the gold surface (the gold token span's text): the same entity in
  that post, as the graph keys entities (``normalize_name`` of the mention with its ``#``/``@`` sign,
  ``mmkg.identity.identity_surface``), so gold ``@Titans`` is the entity ``titans`` whose mention span is
  ``Titans``. Secondary: **exact** (a mention's character span equals the gold span; MNRE gold spans keep the
  sign of handles and hashtags, the detector's spans never do, so those are never matched) and **overlap**
  (lenient: they share a character).
- *Triple instance*: a relationship ``(h)-[r]->(t)`` and one post of ``r.post_ids``; under ``name`` it reads
  as (``h.name``, ``t.name``), under ``exact``/``overlap`` as the mention spans of ``h`` and ``t`` in that post
  (``MENTIONS.start/end``), and lands on a gold pair when its head and tail match the pair's two entities
  (in either order).
- *Triple precision on annotated pairs*: of the instances landing on a scored pair, the share with
  the annotated relation in the annotated direction (either order for the symmetric relations); a relation
  on a ``None`` pair is wrong. Instances on no annotated pair are counted (``on unannotated pairs``), not
  scored.
- *Micro P/R/F1/F0.5*: P = triple precision; R = share of gold non-None test-relation annotations
  that some instance of the post states with the right relation and direction.
- Also: triples and evidence per post, self-loops, entity pairs written in both directions, and
  precision over instances of triples with evidence from >= 2 posts.

**Other MNRE parts** (``--mnre-part``, ``run.MNRE_PARTS``): ``dev`` (the val file's posts against the seed-0
validation relations: where the relation stage's decision rule is chosen, ``decision_rules.py``), ``val``,
``dev-wide``, and ``product`` (the test file's posts against the 5 MNRE relations of the shipped ontology's kinds:
what a user of the default ontology gets; not zero-shot). A zero-shot part refuses a relation checkpoint whose
card says it trained on a relation the part scores (``checkpoints.py``).

**Twitter-2017 test (typed entities).** Posts built as written (``bench.entity_detection.build_example``,
form ``tweet``); shipped ontology; types mapped Person->PER, Location->LOC, Organization->ORG, any
other->MISC. Typed P/R/F1 (exact span + type), span P/R/F1, F1 per type, and mentions abstained
(typed ``Other``, never written), all from the graph's ``MENTIONS``.

**Systems.** ``mg-vmoe`` (shipped checkpoints), ``label-similarity``; ``spacy`` (entities only: plain
``en_core_web_sm`` NER as the project loads it, on the raw text, labels of ``DEFAULT_LABELS``, written
as typed mentions of the mapped ontology type); ``<extractor>+keep-all`` (relations only: the same
typing, relation abstention off, so every candidate pair keeps its best allowed relation).
"""

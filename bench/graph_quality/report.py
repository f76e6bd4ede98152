"""Tables (Markdown) and the plot of a graph-quality results dict."""

from __future__ import annotations

from pathlib import Path

from bench.graph_quality.scoring import COARSE_TYPES


def _f(x, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _relation_checkpoint_line(c: dict) -> str:
    """Which relation checkpoint MG-VMoE measured, and what it trained on."""
    return (f"**Relation checkpoint measured**: `{c['path']}` (split `{c['split']}`, weights {c['weights_sha256_12']}), "
            f"trained on {len(c['trained_relations'])} relations: {', '.join(c['trained_relations'])}.")


def _ontology_title(key: str, mnre: dict, headline: str) -> str:
    names = {"typed": "(b) typed as a user writes it", "any": "(a) any types"}
    return names.get(key, key) + (" — **headline**" if key == headline else "")


def _mode_title(mode: str, res: dict) -> str:
    return res.get("match_modes", {}).get(mode, mode)


def headline_table(mnre: dict, res: dict) -> str:
    """Both ontologies, every relation system, at the headline match."""
    mode, headline = res["headline_match"], res["headline_ontology"]
    rows = []
    for key, o in _ontologies_in_order(mnre, headline):
        for name, r in o["systems"].items():
            e, m = r[mode], r[mode]["micro"]
            rows.append(["**(b) typed — headline**" if key == headline and key == "typed" else
                         _ontology_title(key, mnre, headline).replace(" — **headline**", " — headline"), name,
                         r["graph"]["triples"], e["on_annotated_pairs"], e["correct"],
                         f"**{_f(e['triple_precision'])}**", f"{e['gold_recovered']}/{e['gold_relations']}",
                         m["precision"], m["recall"], m["f1"], f"**{_f(m['f0_5'])}**"])
    return (f"**Relations at a glance** (match: {_mode_title(mode, res)}; headline row group: ontology "
            f"{_ontology_title(headline, mnre, headline).replace(' — **headline**', '')})\n\n" + _table(
                ["ontology", "system", "triples", "instances on annotated pairs", "correct", "triple precision",
                 "gold recovered", "micro P", "micro R", "micro F1", "micro F0.5"], rows))


def _ontologies_in_order(mnre: dict, headline: str) -> list[tuple[str, dict]]:
    onts = mnre["ontologies"]
    return [(k, onts[k]) for k in sorted(onts, key=lambda k: k != headline)]


def relation_tables(systems: dict, res: dict) -> list[str]:
    """The tables of one ontology's relation systems."""
    out = []
    shape_rows = []
    for name, r in systems.items():
        g, s = r["graph"], r["stage"]
        dropped = r["load"].get("dropped", {})
        shape_rows.append([name, g["posts"], s["mentions_in"], s["abstained_mentions"], g["mentions"], s["candidate_pairs"],
                           s["relations_returned"], sum(dropped.values()), g["triples"], g["triples_per_post"],
                           g["evidence_per_post"], g["self_loops"], g["both_direction_pairs"],
                           g["both_direction_same_type_pairs"]])
    out.append("**Graph shape** (from Cypher over the loaded graph; stage counts from the stage's output; "
               "dropped by the loader: self-loops and reverse readings in one post)\n\n" + _table(
        ["system", "posts", "mentions in", "abstained (Other)", "MENTIONS", "candidate pairs", "relations returned",
         "dropped by loader", "triples", "triples/post", "evidence/post", "self-loops", "pairs both directions",
         "… same type"],
        shape_rows))
    modes = [m for m in res.get("match_modes", {"exact": "", "overlap": ""}) if all(m in r for r in systems.values())]
    for mode in modes:
        rows = []
        for name, r in systems.items():
            e = r[mode]
            m = e["micro"]
            mp = e["multi_post"]
            rows.append([name, e["instances"], e["on_annotated_pairs"], e["correct"], e["wrong_relation"],
                         e["wrong_direction"], e["relation_on_none_pair"], f"**{_f(e['triple_precision'])}**",
                         f"{_f(mp['precision'])} ({mp['correct']}/{mp['on_annotated_pairs']})",
                         e["on_out_of_ontology_pairs"], e["on_unannotated_pairs"],
                         f"{e['gold_recovered']}/{e['gold_relations']}", m["precision"], m["recall"], m["f1"],
                         f"**{_f(m['f0_5'])}**", e["ambiguous_instances"]])
        out.append(f"**Relations, match: {_mode_title(mode, res)}**\n\n" + _table(
            ["system", "triple instances", "on annotated pairs", "correct", "wrong relation", "wrong direction",
             "relation on None pair", "triple precision", "precision, ≥2 posts (correct/n)", "on out-of-ontology pairs",
             "on unannotated pairs", "gold recovered", "micro P", "micro R", "micro F1", "micro F0.5", "ambiguous"],
            rows))
    rels = list(next(iter(systems.values()))[modes[0]]["per_relation"]) if systems else []
    mode = res["headline_match"]
    per_rows = []
    for rel in rels:
        gold = next(iter(systems.values()))[mode]["per_relation"].get(rel, {}).get("gold", 0)
        row = [f"`{rel}`", gold]
        for name, r in systems.items():
            pr = r[mode]["per_relation"].get(rel, {})
            row.append(f"{pr.get('recovered', 0)} / {pr.get('correct', 0)}:{pr.get('predicted_on_annotated', 0)}")
        per_rows.append(row)
    out.append(f"**Per test relation, match: {mode}** (recovered gold / correct:instances on annotated pairs)\n\n"
               + _table(["relation", "gold"] + list(systems), per_rows))
    return out


def coverage_table(mnre: dict, res: dict) -> list[str]:
    """Gold entities the graph's mentions reach, per match mode; one table when every ontology's graph
    reaches the same (they share the mentions), else one per ontology."""
    headline = res["headline_ontology"]
    onts = _ontologies_in_order(mnre, headline)
    modes = list(res.get("match_modes", {"exact": "", "overlap": ""}))

    def rows(systems: dict) -> list[list]:
        out = []
        for name, r in systems.items():
            row = [name]
            for mode in modes:
                c = r[mode]["entity_coverage"]
                row += [f"{c['gold_entities_matched']}/{c['gold_entities']}",
                        f"{c['gold_test_pairs_both_matched']}/{c['gold_test_pairs']}"]
            out.append(row)
        return out

    header = ["system"] + [h for m in modes for h in (f"gold entities matched ({m})", f"test pairs, both ends ({m})")]
    all_rows = [rows(o["systems"]) for _, o in onts]
    intro = ("**Gold entities the graph has in their post** (scored pairs' entities; a relation can only be right "
             "where both ends are matched)")
    if all(r == all_rows[0] for r in all_rows):
        return [intro + "; the same for both ontologies (same mentions, same typing)\n\n" + _table(header, all_rows[0])]
    return [intro + f", ontology {_ontology_title(k, mnre, headline)}\n\n" + _table(header, r)
            for (k, _), r in zip(onts, all_rows)]


def entity_tables(tw: dict) -> list[str]:
    rows = []
    for name, r in tw["systems"].items():
        t, u = r["typed"], r["untyped"]
        rows.append([name, r["mentions_in"], r["abstained"], r["mentions_in_graph"], t["precision"], t["recall"],
                     f"**{_f(t['f1'])}**", u["precision"], u["recall"], u["f1"]]
                    + [r["per_type"][k]["f1"] for k in COARSE_TYPES])
    return ["**Typed entities** (graph MENTIONS: exact character span + mapped type)\n\n" + _table(
        ["system", "mentions in", "abstained (Other, not written)", "MENTIONS in graph", "typed P", "typed R", "typed F1",
         "span P", "span R", "span F1"] + [f"F1 {k}" for k in COARSE_TYPES], rows)]


DEFINITIONS = """**Definitions.** A *triple instance* is one relationship `(h)-[r]->(t)` with one post of `r.post_ids`.
*Matching a gold entity* (headline, `name`): the gold entity of a post is the graph entity of that post (the
post `MENTIONS` it) whose `name` equals `mmkg.identity.normalize_name` of the gold surface (the gold token
span's text) — the same entity in that post, as the graph keys entities (gold `@Titans` is the entity `titans`,
whose mention span is `Titans`). Secondary: `exact` (a `MENTIONS` span equals the gold character span; gold
spans keep the `@`/`#` sign, detector spans never do) and `overlap` (lenient: the spans share a character).
*On annotated pairs*: the head and the tail match the two entities of a gold pair of that post annotated with a
test relation or `None`. *Triple
precision* = correct / on annotated pairs, correct = the annotated relation in the annotated direction
(either order for symmetric relations); a relation on a `None` pair is wrong. *Micro P* = triple precision,
*micro R* = gold test-relation annotations stated by some instance / all of them. *Out-of-ontology pairs*:
annotated only with relations the ontology cannot express (not scored). *Ambiguous*: instances landing on more
than one scored pair. Twitter-2017 entities: exact character span (+ mapped type for *typed*) of the graph's
`MENTIONS` against gold."""


def identical_notes(systems: dict, modes) -> list[str]:
    """A line for each ``X+keep-all`` whose every score equals ``X``'s (measured, not assumed)."""
    out = []
    for name, r in systems.items():
        base = name.split("+", 1)[0]
        if name.endswith("+keep-all") and base in systems:
            same = all(r[m] == systems[base][m] for m in modes) and r["graph"] == systems[base]["graph"]
            if same:
                out.append(f"`{name}` gives exactly the numbers of `{base}` (same graph shape, same scores): "
                           f"`{base}`'s relation abstention removed no pair on these posts "
                           f"({systems[base]['stage']['relations_returned']} relations returned from "
                           f"{systems[base]['stage']['candidate_pairs']} ordered candidate pairs, both times).")
    return out


def markdown(res: dict) -> str:
    parts = [
        "# Graph quality: real tweets → stages → Neo4j → Cypher vs gold",
        f"`{res['command']}` — {res['started_at']}, commit `{(res['git']['commit'] or '?')[:12]}`"
        f"{' (uncommitted changes)' if res['git']['dirty'] else ''}, wall {res['wall_s']} s, "
        f"{res['machine']['cpu']} ({res['machine']['logical_cpus']} CPUs), torch threads {res['torch_threads']}, "
        f"load average (1/5/15 min) at the start {', '.join(f'{x:.2f}' for x in res['load_average_at_start'])}, "
        f"at the end {', '.join(f'{x:.2f}' for x in res['machine']['load_average'])} (the machine is shared).",
        "Every number is computed from Cypher query results over a throw-away Neo4j 5.26 loaded by "
        "`kg_loader.load.load_extraction`; the graph is cleared between systems. Definitions: "
        "`bench/graph_quality/__init__.py`."
        + (f" Mentions: `extraction.detection.EntityDetector`, mode `{res['detector']['mode']}`, rules "
           f"{', '.join(res['detector']['rules']) or '–'}." if res.get("detector") else ""),
    ]
    dirty = res["git"].get("uncommitted_stage_sources") or []
    if dirty:
        parts.append("Measured with uncommitted changes to " + ", ".join(f"`{d}`" for d in dirty)
                     + " (content hashes in the JSON, `git.stage_sources_sha256_12`).")
    changed = res["git"].get("stage_sources_changed_during_run") or []
    if changed:
        parts.append("**Changed while the benchmark ran** (other work in the tree): " + ", ".join(f"`{c}`" for c in changed)
                     + f"; commit at the start `{(res['git']['commit'] or '?')[:12]}`, at the end "
                     f"`{(res['git'].get('commit_at_end') or '?')[:12]}`. The checkpoints measured are the ones each "
                     "extractor loaded (`git.checkpoints_sha256_12_at_extractor_load`); a source file counts as it "
                     "was when first imported.")
    loaded = res["git"].get("checkpoints_sha256_12_at_extractor_load") or {}
    if loaded:
        first = next(iter(loaded.values()))
        same = all(v == first for v in loaded.values())
        parts.append("Checkpoints as loaded" + ("" if same else " (differ between extractors: see the JSON)") + ": "
                     + ", ".join(f"`{k.removeprefix('models/checkpoints/')}` {v}" for k, v in first.items()) + ".")
    parts.append(DEFINITIONS)
    mnre = res.get("mnre")
    if mnre:
        ex = mnre["excluded"]
        g = mnre["gold"]
        headline = res["headline_ontology"]
        signed = g.get("entities_whose_surface_has_a_sign", {})
        one_name = g.get("pairs_whose_two_spans_are_one_name_by_scope", {})
        parts += [
            f"## MNRE {mnre['file'].split('_')[-1].removesuffix('.txt')} — relations"
            + (" (dev protocol: validation relations)" if str(mnre.get("part")).startswith("dev") else ""),
            *([f"**Part `{mnre['part']}`**: {mnre['part_description']}. Below, \"test relation\" reads "
               "\"validation relation\": the relations this run scores."] if str(mnre.get("part")).startswith("dev") else []),
            *([f"**Part `{mnre['part']}`**: {mnre['part_description']}. Below, \"test relation\" reads \"scored "
               "relation\": the relations this run scores."] if mnre.get("part") == "product" else []),
            *([_relation_checkpoint_line(mnre["relation_checkpoint"])] if mnre.get("relation_checkpoint") else []),
            f"{mnre['lines']} lines → {mnre['posts_distinct_texts']} posts (lines sharing a text are one post). "
            f"**Excluded** {ex['posts']} posts ({ex['lines']} lines, {ex['annotations']} annotations; their pairs by scope "
            f"{ex['pairs_by_scope']}, {ex['test_relation_annotations']} test-relation annotations): {ex['reason']}. "
            f"Scored: {mnre['scored_posts']} posts ({mnre['scored_posts_with_image']} with an obtainable image), "
            f"gold pairs test/None/out-of-ontology = {g['pairs_by_scope']['test']}/{g['pairs_by_scope']['none']}/"
            f"{g['pairs_by_scope']['other']}, {g['test_relation_annotations']} test-relation annotations. "
            f"{mnre['scored_posts_whose_text_is_a_val_relation_sample']} scored posts share their text with a "
            "validation-relation sample (used by the checkpoint for early stopping and calibration, not for "
            "gradient steps; kept)."
            + (f" Of the {signed['of']} gold entities of scored pairs, {signed['@']} are handles (`@…`) and "
               f"{signed['#']} hashtags (`#…`) by their gold span: `exact` can never match those." if signed else "")
            + (f" Gold pairs whose two spans are one entity by name (e.g. `#NYC` and `NYC`), by scope: {one_name}."
               if one_name else ""),
            "**Ontologies.** Both use the shipped entity types and the "
            + (f"{len(mnre['split']['test_relations'])} MNRE relations of the shipped ontology's kinds "
               if mnre.get("part") == "product" else f"7 seed-0 {mnre.get('scored_relations', 'test')} relations ")
            + f"({', '.join(next(iter(mnre['ontologies'].values()))['relation_types'])}), both run on the same posts, "
            f"the same detected mentions and the same typing ({mnre.get('typing', '')}). "
            + " ".join(f"{_ontology_title(k, mnre, headline)}: {o['description']}."
                       for k, o in _ontologies_in_order(mnre, headline))
            + f" **The headline is {_ontology_title(headline, mnre, headline).replace(' — **headline**', '')}: "
              "the product as configured** (a user writes each relation with its argument types); (a) shows what the "
              "relation stage does unconstrained by types."
            + _symmetric_note(next(iter(mnre["ontologies"].values()))),
            headline_table(mnre, res),
        ]
        parts += coverage_table(mnre, res)
        for key, o in _ontologies_in_order(mnre, headline):
            parts.append(f"### Ontology {_ontology_title(key, mnre, headline)}")
            if key == "typed":
                parts.append("Allowed (head, tail): " + "; ".join(
                    f"`{r}` {' '.join('(' + h + ', ' + t + ')' for h, t in pairs)}" for r, pairs in o["allowed"].items()))
            parts += relation_tables(o["systems"], res)
            parts += identical_notes(o["systems"], list(res.get("match_modes", ("exact", "overlap"))))
    tw = res.get("twitter2017")
    if tw:
        parts += [
            f"## Twitter-2017 {tw['file'].split('/')[-1].removesuffix('.txt')} — typed entities",
            f"{tw['tweets']} tweets as written (`@`/`#` glued), {tw['gold_mentions']} gold mentions {tw['gold_by_type']}. "
            f"Ontology: `ontology/ontology.yaml`; {tw['ontology']['type_map']}.",
            *entity_tables(tw),
        ]
    t = res["timings_s"]
    parts += ["## Wall times (s)", _table(["step", "s"], [[k, v] for k, v in t.items() if not isinstance(v, dict)])]
    return "\n\n".join(parts) + "\n"


def _symmetric_note(o: dict) -> str:
    if not o.get("declared_symmetric"):
        return ""
    return (f" {', '.join(o['declared_symmetric'])} declared `symmetric: true`"
            + ("" if o.get("symmetric_flag_supported") else " (flag not supported by mmkg.ontology: ignored)") + ".")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mnre, tw = res.get("mnre"), res.get("twitter2017")
    mode, headline = res["headline_match"], res["headline_ontology"]
    mnre_panels = [(k, o) for k, o in _ontologies_in_order(mnre, headline) if o["systems"]] if mnre else []
    n = len(mnre_panels) + bool(tw and tw["systems"])
    fig, axes = plt.subplots(1, max(n, 1), figsize=(6.5 * max(n, 1), 4.4), squeeze=False)
    k = 0
    for key, o in mnre_panels:
        ax = axes[0][k]
        k += 1
        names = list(o["systems"])
        bars = [(f"triple precision ({mode})", [o["systems"][s][mode]["triple_precision"] or 0 for s in names]),
                (f"relation micro F0.5 ({mode})", [o["systems"][s][mode]["micro"]["f0_5"] for s in names]),
                (f"relation micro R ({mode})", [o["systems"][s][mode]["micro"]["recall"] for s in names])]
        title = {"typed": "(b) typed ontology — headline", "any": "(a) any-types ontology"}.get(key, key)
        part = mnre["file"].split("_")[-1].removesuffix(".txt")
        _bars(ax, names, bars, f"MNRE {part} relations, {title} ({mnre['scored_posts']} posts)")
    if tw and tw["systems"]:
        ax = axes[0][k]
        names = list(tw["systems"])
        bars = [("typed F1", [tw["systems"][s]["typed"]["f1"] for s in names]),
                ("span F1 (untyped)", [tw["systems"][s]["untyped"]["f1"] for s in names])]
        _bars(ax, names, bars, f"Twitter-2017 {tw['file'].split('/')[-1].removesuffix('.txt')} entities "
                               f"({tw['tweets']} tweets)")
    fig.suptitle("Graph quality, scored with Cypher over the loaded graph", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(ax, names: list[str], bars: list[tuple[str, list[float]]], title: str) -> None:
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(names))]
        rects = ax.bar(xs, values, width, label=label)
        ax.bar_label(rects, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("+", "\n+") for n in names], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 106)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")

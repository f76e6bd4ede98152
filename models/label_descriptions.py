"""Short natural-language descriptions of the benchmark classes, and the readable form of raw names.

Written once from the datasets' published label definitions (MNRE relation names, WNUT-16 type
names), before any result was seen, and never tuned on test classes. The benchmark reports both
``label_text="name"`` (the reference) and ``"description"``.
"""

from __future__ import annotations

import re

MNRE_DESCRIPTIONS: dict[str, str] = {
    "/per/per/parent": "the head person is a parent, mother or father of the tail person",
    "/per/per/siblings": "the head person is a brother or sister of the tail person",
    "/per/per/couple": "the head person is married to or dating the tail person, a romantic couple",
    "/per/per/neighbor": "the head person lives next to or near the tail person, neighbours",
    "/per/per/peer": "the head person is a colleague, teammate or peer of the tail person",
    "/per/per/charges": "the head person is in charge of, coaches or manages the tail person",
    "/per/per/alumi": "the head person went to the same school or university as the tail person",
    "/per/per/alternate_names": "the head person is also known by the tail name, a nickname or alias",
    "/per/org/member_of": "the head person is a member, player or employee of the tail organization",
    "/per/loc/place_of_residence": "the head person lives in the tail location",
    "/per/loc/place_of_birth": "the head person was born in the tail location",
    "/per/misc/nationality": "the head person has the nationality or citizenship of the tail country",
    "/per/misc/religion": "the head person follows the tail religion or faith",
    "/per/misc/race": "the head person belongs to the tail race or ethnic group",
    "/per/misc/awarded": "the head person won or received the tail award or prize",
    "/per/misc/present_in": "the head person is present at or takes part in the tail event",
    "/org/org/subsidiary": "the head organization is a subsidiary or part of the tail organization",
    "/org/org/alternate_names": "the head organization is also known by the tail name or abbreviation",
    "/org/loc/locate_at": "the head organization is located or based in the tail location",
    "/loc/loc/contain": "the head location contains the tail location, which lies inside it",
    "/misc/loc/held_on": "the head event was held or takes place in the tail location",
    "/misc/misc/part_of": "the head thing is a part, member or episode of the tail thing",
}

WNUT_DESCRIPTIONS: dict[str, str] = {
    "person": "a person, a named human being",
    "geo-loc": "a geographic location such as a city, country, state or region",
    "company": "a company, business or brand",
    "facility": "a facility or building such as a stadium, airport, school, restaurant or venue",
    "product": "a product, device, software or other manufactured thing",
    "musicartist": "a music artist, singer, rapper or band",
    "movie": "a movie or film title",
    "sportsteam": "a sports team or club",
    "tvshow": "a television show or series",
    "other": "any other named thing",
    # tweets-all-types+events only: WNUT-16 "other" mentions two readers labelled Event (models/annotations)
    "event": "an event, a named happening such as a festival, holiday, sports competition, conference or concert",
}

#: Twitter-2017's four CoNLL-style types (Zhang et al. 2018, following the CoNLL-2003 guidelines), written
#: from those definitions before any result; used only to train the shipped typer (``tweets-all-types``).
TWITTER2017_DESCRIPTIONS: dict[str, str] = {
    "PER": "a person, a named human being or a fictional character",
    "LOC": "a location such as a city, country, region, landmark or building",
    "ORG": "an organization such as a company, sports team, band, university, party or government body",
    "MISC": "another named thing such as an event, a product, a work of art, an award or a nationality",
    # tweets-all-types+events only: MISC split by two readers' labels (models/annotations), written from their
    # guideline before any result
    "EVENT": "a named event, a happening at a time such as a festival, holiday, sports competition, conference, "
             "ceremony, concert or election",
    "PRODUCT": "a named product or creative work such as a device, app, video game, film, TV show, song, album or book",
    "MISC-OTHER": "another named thing such as a nationality, a group of people, a language, an award or a slogan",
}

_SHORT = {"per": "person", "org": "organization", "loc": "location", "misc": "miscellaneous"}

#: What each argument type of an MNRE relation name (``/per/loc/...``: head person, tail location) is, in
#: words: the relation's argument types as the label set gives them, for the argument-type prior
#: (``MGVMoEConfig.argument_prior``). Written once, before any result; the pipeline uses the ontology's own
#: entity-type descriptions instead.
ARGUMENT_TEXT = {
    "per": "a person",
    "loc": "a location, a place such as a city or country",
    "org": "an organization such as a company, team or band",
    "misc": "a thing, an event, an award or a group",
}


def argument_texts(label: str) -> tuple[str, str]:
    """Head and tail argument types of an MNRE relation name, in words: ``/per/loc/x`` -> person, location."""
    parts = label.strip("/").split("/")
    if len(parts) != 3 or parts[0] not in ARGUMENT_TEXT or parts[1] not in ARGUMENT_TEXT:
        raise KeyError(f"no argument types in relation name {label!r}")
    return ARGUMENT_TEXT[parts[0]], ARGUMENT_TEXT[parts[1]]


def label_name_text(label: str) -> str:
    """The raw label name as words: ``/per/per/place_of_birth`` -> ``per per place of birth``.

    Only punctuation is removed (the reference encodes the raw name); no words are added.
    """
    return re.sub(r"[/_\-]+", " ", label).strip()


def label_text(label: str, mode: str) -> str:
    """Text that represents a class for the scorer: its name (reference) or its description."""
    if mode == "name":
        return label_name_text(label)
    if mode == "description":
        for table in (MNRE_DESCRIPTIONS, WNUT_DESCRIPTIONS, TWITTER2017_DESCRIPTIONS):
            if label in table:
                return table[label]
        raise KeyError(f"no description written for label {label!r}")
    raise ValueError(f"label text mode must be name|description, got {mode!r}")

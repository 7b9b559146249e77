"""Address: street number, street (abbreviations and typos), address line 2, suburb, postcode and state.

A plug-in modality (docs/extending.md) used by the built-in `person` profile. Each part is its own
comparison feature with Fellegi-Sunter levels (`Feature.levels`), because the parts fail independently:
a typo in the street leaves the number and postcode intact, a move changes all of them together. Among
non-matches they agree together (people sharing a home), so they form one `Feature.joint` group: the fit
weighs a whole shared address by what the file says it is worth (`consumer.learn.joint`). Street
types are folded to one spelling first ("st" / "str" -> "street", "rd" -> "road", "cres" -> "crescent"),
so an abbreviation is no difference at all; typos are left to the field comparison (one edit apart, or
trigram overlap). A part missing on either side is NaN: no evidence, never disagreement.

The encoder also adds an address vector (hashed character trigrams of number, street, suburb and
postcode) to the candidate index, so two records whose names were both mistyped still meet when they
share an address.

Roles (profile.roles): street_number, address_1, address_2, suburb, postcode, state; any may be unmapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import (
    Columns,
    Contribution,
    Feature,
    IndexVector,
    KeyedHasher,
    Score,
    nanmean_weighted,
    normed_counts,
)
from consumer.encoders.fields import FIELD_LEVELS, FieldCodec, field_columns, field_similarity
from consumer.engine.normalize import city_canonical, fold
from consumer.engine.records import Record

__all__ = ["AddressEncoder", "street_canonical"]

ROLES = ("street_number", "address_1", "address_2", "suburb", "postcode", "state")
#: feature -> (role, Fellegi-Sunter levels). Number, postcode and state are codes: equal, one typo, else.
PARTS: dict[str, tuple[str, tuple[float, ...]]] = {
    "addr_number": ("street_number", (1.0, 0.88)),
    "addr_street": ("address_1", FIELD_LEVELS),
    "addr_line2": ("address_2", FIELD_LEVELS),
    "addr_suburb": ("suburb", FIELD_LEVELS),
    "addr_postcode": ("postcode", (1.0, 0.88)),
    "addr_state": ("state", (1.0,)),
}
CODES = ("addr_number", "addr_postcode", "addr_state")
ADDR_VEC = 64

#: Street-type and direction abbreviations (Australia Post, USPS and Royal Mail forms) -> one spelling.
STREET_WORDS: dict[str, str] = {
    "st": "street", "str": "street", "rd": "road", "ave": "avenue", "av": "avenue", "avn": "avenue",
    "cres": "crescent", "cr": "crescent", "cresc": "crescent", "pl": "place", "dr": "drive", "drv": "drive",
    "ct": "court", "crt": "court", "cct": "circuit", "cir": "circuit", "hwy": "highway", "pde": "parade",
    "tce": "terrace", "ter": "terrace", "cl": "close", "gr": "grove", "gve": "grove", "ln": "lane",
    "la": "lane", "blvd": "boulevard", "bvd": "boulevard", "sq": "square", "esp": "esplanade",
    "wy": "way", "pkwy": "parkway", "pwy": "parkway", "plz": "plaza", "cnr": "corner", "gdns": "gardens",
    "hts": "heights", "mews": "mews", "rdg": "ridge", "rise": "rise", "view": "view", "vw": "view",
    "n": "north", "nth": "north", "s": "south", "sth": "south", "e": "east", "w": "west",
    "apt": "apartment", "unit": "unit", "u": "unit", "fl": "floor", "lvl": "level",
}
#: A leading "st" / "mt" is a saint or a mount ("st kilda road"), not a street type.
LEADING_WORDS = {"st": "saint", "mt": "mount", "ft": "fort"}


def street_canonical(text: str) -> str:
    """Folded street with its abbreviations expanded: "42 Main St." -> "42 main street"."""
    tokens = fold(text).replace(",", " ").split()
    return " ".join(LEADING_WORDS.get(t, t) if i == 0 and len(tokens) > 1 else STREET_WORDS.get(t, t)
                    for i, t in enumerate(tokens))


def _code(text: str) -> str:
    return fold(text).replace(" ", "").replace(",", "")


#: The parts the address vector reads, in order (`AddressEncoder._vectors`).
VECTOR_ROLES = ("street_number", "address_1", "address_2", "suburb", "postcode")
NORMALISE = {"street_number": _code, "address_1": street_canonical, "address_2": street_canonical,
             "suburb": city_canonical, "postcode": _code, "state": _code}


class AddressEncoder:
    name = "address"

    def __init__(self, hash_key: str):
        self._hash = KeyedHasher(hash_key)
        self._fields = FieldCodec(self._hash)
        self._part = lru_cache(maxsize=100_000)(self._part_uncached)

    @classmethod
    def from_settings(cls, settings: Settings, artifacts: Mapping[str, Any]) -> AddressEncoder:
        return cls(settings.encoders.hash_key)

    @property
    def contribution(self) -> Contribution:
        return Contribution(
            roles=ROLES,
            columns=(*[c for f in PARTS for c in field_columns(f)], "addr_vec"),
            features=tuple(Feature(f, levels=levels, joint="address") for f, (_, levels) in PARTS.items()),
            scores=(Score("address"),),
            index=(IndexVector("addr_vec", ADDR_VEC, 1.0),),
            index_only=("addr_vec",),
            # Two of postcode, street number and street name together are a household-level identity that
            # survives a rewrite of both names (consumer/engine/keys.py); any two, so one typo'd part
            # still leaves a key.
            keys=(("addr_postcode_h", "addr_number_h"), ("addr_postcode_h", "addr_street_h"),
                  ("addr_number_h", "addr_street_h")),
            coefficients={"address.weight": 0.35, "address.number": 0.2, "address.street": 0.3,
                          "address.line2": 0.1, "address.suburb": 0.2, "address.postcode": 0.2})

    def encode(self, records: Sequence[Record]) -> Columns:
        cols: Columns = {}
        for feature, (role, _) in PARTS.items():
            values = [r.role(role) for r in records]
            cols.update(self._fields.encode(values, feature, NORMALISE[role]))
        cols["addr_vec"] = self._vectors([tuple(r.role(role) for role in VECTOR_ROLES) for r in records]
                                         ).astype(np.float16)
        return cols

    def _vectors(self, keys: Sequence[tuple[str, ...]]) -> np.ndarray:
        """Per record, the hashed character-trigram counts of its address (number, streets, suburb, postcode:
        the stated parts, normalised, joined by spaces, padded "  text "), L2-normed; zeros without one.
        Counted part by part: each part's own trigrams (" part ", cached per value: suburbs, postcodes and
        street names repeat), the text's first one and those across two parts' boundary: the same counts as
        the joined text's."""
        h = self._hash.get
        owner: list[int] = []
        slots: list[np.ndarray] = []
        for i, key in enumerate(keys):
            parts = [p for p in (self._part(role, raw) for role, raw in zip(VECTOR_ROLES, key) if raw) if p[0]]
            if not parts:
                continue
            edges = [h("av:  " + parts[0][0][0])] + [h("av:" + a[-1] + " " + b[0])
                                                     for (a, _), (b, _) in zip(parts, parts[1:])]
            for own in (np.array(edges, np.int64) % ADDR_VEC, *(own for _, own in parts)):
                slots.append(own)
                owner.append(i)
        if not slots:
            return np.zeros((len(keys), ADDR_VEC), np.float32)
        return normed_counts(len(keys), np.repeat(np.array(owner, np.int64), [len(s) for s in slots]),
                             np.concatenate(slots), ADDR_VEC)

    def _part_uncached(self, role: str, raw: str) -> tuple[str, np.ndarray]:
        """One address part normalised, and the vector slots of its own trigrams (those of " part ")."""
        text = NORMALISE[role](raw) if raw else ""
        padded, h = f" {text} ", self._hash.get
        return text, np.array([h("av:" + padded[j: j + 3]) for j in range(len(padded) - 2)], np.int64) % ADDR_VEC

    def compare(self, a: Columns, b: Columns) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for feature in PARTS:
            out[feature] = field_similarity(a, b, feature, code=feature in CODES)
        return out

    def scores(self, feats: Mapping[str, np.ndarray], coef: Mapping[str, float]) -> dict[str, np.ndarray]:
        parts = [(feats["addr_number"], coef["address.number"]), (feats["addr_street"], coef["address.street"]),
                 (feats["addr_line2"], coef["address.line2"]), (feats["addr_suburb"], coef["address.suburb"]),
                 (feats["addr_postcode"], coef["address.postcode"])]
        return {"address": nanmean_weighted(parts).astype(np.float32)}

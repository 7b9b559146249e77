"""Variant slots learned from the file: the words that stand in one another's place in otherwise identical titles.

"Harbor Linen Duvet Cover - Sand" and "Harbor Linen Duvet Cover - Navy" are two products; the built-in tables
(`consumer.engine.titles`) know "navy" as a colour but not "sand", so the pair compared as one product
(issue 20: another team's listings lost their precision to Navy/Sand, Warm/Cool White, Black/Brass). A
catalogue shows its own variant vocabulary: a family's listings share a base title and differ in one word,
and the same words keep alternating across many families. So, over the file's titles (word sets):

- a *substitution* of w: a base (a title's words without w, at least two words) that another title completes
  with a different word v, v not a spelling of w (a typo, an abbreviation or a prefix: "marble"/"marlbe",
  "pro"/"professional", which are one product written two ways);
- an *insertion* of w: its base is itself a title (w is optional: a shop's tag line, "sale", "bestseller");
- a *variant word*: substituted in at least `MIN_SUBSTITUTIONS` bases and at least `INSERTION_RATIO` times as
  often substituted as inserted (tags that differ between two copies of a listing are mostly inserted);
- a *slot*: variant words connected by substitutions (finishes, sizes, product lines, languages, editions
  come out as separate slots: measured on Amazon-Google and a foreign listing generator).

Two titles conflict on a slot when each carries a word of it the other lacks ("... Sand" / "... Navy";
"Warm White" / "Cool White"); a title that leaves the slot out ("... Matte Black" / "... Black") does not.
`consumer.encoders.title` reads a conflict as a disagreeing attribute. Pure: titles in, slots out; the
words leave this module only as keyed hashes (`slot_keys`), like every other stored value.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from itertools import repeat
from typing import TYPE_CHECKING, Any

from consumer.encoders.base import KeyedHasher
from consumer.engine.titles import NOISE, WORD_KEYING, colour_of, title_words, word_token

if TYPE_CHECKING:
    from consumer.config import Settings
    from consumer.engine.records import Record

__all__ = ["WORD_KEYING", "MIN_SUBSTITUTIONS", "INSERTION_RATIO", "join_groups", "learn_variant_slots", "slot_keys",
           "slots_meta", "spellings", "variant_slots_of"]

#: Bases a word must be substituted in: once is a coincidence (or a typo), twice a pattern.
MIN_SUBSTITUTIONS = 2
#: Substitutions per insertion a variant word needs at least (an optional word is not a slot).
INSERTION_RATIO = 2
#: Shortest base, in words: "sand" vs "navy" after one word says nothing.
MIN_BASE_WORDS = 2
#: Bases two variant words must alternate in to share a slot: one coincidence joined "windows" to the
#: editions of Amazon-Google (standard, professional...), two keep platforms, editions and languages apart.
MIN_PAIR_BASES = 2
#: A base completed by more distinct words than this is a generic prefix ("sony"), not a family.
MAX_ALTERNATES = 20
#: Titles read at most (the fit's sample is smaller; a guard for direct callers).
MAX_TITLES = 200_000


def spellings(a: str, b: str) -> bool:
    """Whether two words are likely one word written two ways (prefix, abbreviation, typo): never a slot."""
    if a.startswith(b) or b.startswith(a):
        return True
    return SequenceMatcher(None, a, b).ratio() >= 0.75


def _candidate(word: str) -> bool:
    return word.isalpha() and len(word) >= 3 and word not in NOISE


def learn_variant_slots(titles: Iterable[str], sources: Iterable[str] | None = None) -> dict[str, int]:
    """Variant word -> slot number (0, 1, ...; slots numbered by their first word in sorted order) over
    `titles`; {} when the titles show no repeated substitution. `sources` (one per title, for a file that
    joins sources): substitutions count within a source only, where two listings are two products; across
    sources a substitution is often two shops' wording of one ("dvd-rom (mac)" / "aspyr ... mac")."""
    sets: set[tuple[str, frozenset[str]]] = set()
    for i, (source, title) in enumerate(zip(sources if sources is not None else repeat(""), titles)):
        if i >= MAX_TITLES:
            break
        words = frozenset(title_words(title))
        if len(words) > MIN_BASE_WORDS:
            sets.add((source, words))
    alternates: dict[tuple[str, frozenset[str]], set[str]] = defaultdict(set)
    for source, words in sets:
        for w in words:
            if _candidate(w):
                alternates[source, words - {w}].add(w)
    subs: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    edges: Counter[tuple[str, str]] = Counter()
    for base, alts in alternates.items():
        if base in sets:
            ins.update(alts)
        if not 2 <= len(alts) <= MAX_ALTERNATES:
            continue
        ordered = sorted(alts)
        for w in ordered:
            others = [v for v in ordered if v != w and not spellings(w, v)]
            if others:
                subs[w] += 1
                edges.update((w, v) for v in others if v > w)  # a pair of bases: counted once per base
    words = {w for w, n in subs.items() if n >= MIN_SUBSTITUTIONS and n >= INSERTION_RATIO * ins[w]}
    parent = {w: w for w in words}

    def root(w: str) -> str:
        while parent[w] != w:
            parent[w] = parent[parent[w]]
            w = parent[w]
        return w

    for (a, b), n in edges.items():
        if n >= MIN_PAIR_BASES and a in words and b in words:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for w in words:
        groups[root(w)].append(w)
    ordered_groups = sorted((sorted(g) for g in groups.values() if len(g) >= 2), key=lambda g: g[0])
    return {w: n for n, group in enumerate(ordered_groups) for w in group}


def join_groups(group: dict, a: object, b: object) -> bool:
    """Put `b`'s spelling group into `a`'s (`group`: item -> group number, changed in place); whether they
    were apart."""
    old, new = group[b], group[a]
    if old == new:
        return False
    for item, g in group.items():
        if g == old:
            group[item] = new
    return True


def slot_keys(slots: Mapping[str, int], hasher: object) -> list[list[int]]:
    """[[keyed hash of the title word, slot, spelling], ...] sorted by hash: the form a model file stores (no
    word in clear) and `TitleEncoder` reads; `hasher` is the encoders' `KeyedHasher` (words hashed as title
    words). `spelling` numbers the words of a slot that are one word written two ways ("pro" /
    "professional", joined into one slot by other words) or one colour in two languages ("blau" / "blue",
    by the built-in table): those never conflict with each other."""
    words = sorted(slots)
    group = {w: i for i, w in enumerate(words)}
    for i, a in enumerate(words):
        for b in words[i + 1:]:
            if slots[a] == slots[b] and (spellings(a, b) or colour_of(a) is not None and colour_of(a) == colour_of(b)):
                join_groups(group, a, b)
    return sorted([[int(hasher(word_token(w))), int(slots[w]), group[w]] for w in words])  # type: ignore[operator]


def slots_meta(slots: list[list[int]]) -> dict[str, Any]:
    """What a model's meta carries for the file's variant words: the words and how they were keyed. Why both,
    always together: a model holding the words without the keying has them left out as keyed by an earlier
    version (`consumer.engine.pipeline`), so every model the words are handed to (the shipped one deciding a
    file like its training data, too) needs the stamp beside them."""
    return {"variant_slots": slots, "variant_keying": WORD_KEYING, "variant_words": len(slots)} if slots else {}


def variant_slots_of(records: Sequence[Record], settings: Settings) -> list[list[int]]:
    """The variant words of the records' titles (`consumer.learn.variants`) as keyed hashes with their slots,
    for a model file; [] when the profile has no title or `fusion.learn_variants` is off."""
    if not settings.fusion.learn_variants or "title" not in settings.profile.roles:
        return []
    titled = [r for r in records if r.role("title")]
    sources = [r.role("source") for r in titled] if settings.profile.source_field else None
    slots = learn_variant_slots([r.role("title") for r in titled], sources)
    return slot_keys(slots, KeyedHasher(settings.encoders.hash_key)) if slots else []

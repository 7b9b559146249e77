"""Colour words a file's photos show to be one colour: learned variant-slot words that stop conflicting (issue 37).

Why: a file's variant slots (`consumer.learn.variants`) hold every word that stands in another's place in
otherwise identical titles. A marketplace's colour slot holds the base colours *and* the shades sellers
write for them ("Flamingo", "Blush" beside "Pink"; "Tangerine" beside "Orange"), so a seller's copy of a
"Pink" listing that says "Flamingo" is kept from it as another variant. No table knows every shade, but
where the file's photos tell colours apart (`consumer.learn.photo_cut`: a colour bar was learned), the
photos say which words name one colour: two listings whose titles differ only by "Flamingo" / "Pink" and
whose photos share as much colour as one product's own photos do are one colour, again and again.

So, over the fit's candidate pairs whose titles clash on one slot word each side: a pair whose photos share
at least `bar` of their colours (no more than `MATCH_LOSS` of the pairs whose titles name two colours of the
built-in table reach it) votes that the two words name one colour; one under the colour bar votes against.
Two words with at least `MIN_VOTES` votes for and `RATIO` times more for than against join one spelling
group of their slot (no conflict between them, as "pro" / "professional"), where at least one of them is a
colour of the built-in table: product lines ("Drift" / "Glide") in one colour are two products whatever the
photos say. The photos say which shade names which colour, never that two basic colour terms are one
(`consumer.engine.titles.BASIC_COLOURS`: a photo signature may not tell pink from red, while every seller
does): the best-shown pairs join first, and a join that would put two basic colours in one group is not
made. A shade of the table joined to its basic colour ("Charcoal" / "Black") is read as that colour by the
title encoder too (`consumer.encoders.title.colour_aliases`). Pure: records and features in, slot rows out;
words leave it only as keyed hashes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.encoders.base import KeyedHasher
from consumer.encoders.title import colour_keys
from consumer.engine.records import Record
from consumer.engine.replay import CandidateLog
from consumer.engine.titles import BASIC_COLOURS, title_words, word_token
from consumer.learn.fellegi_sunter import FellegiSunterModel
from consumer.learn.photo_cut import learned_matches, photo_info
from consumer.learn.tier_cut import tier_cut
from consumer.learn.variants import join_groups

__all__ = ["MIN_VOTES", "RATIO", "photo_evidence", "photo_slots", "photo_spellings"]

#: Pairs of listings that must show two words to be one colour (once is a coincidence).
MIN_VOTES = 2
#: Votes for per vote against a merge needs.
RATIO = 3


def photo_spellings(slots: Sequence[Sequence[int]], records: Sequence[Record], left: np.ndarray, right: np.ndarray,
                    share: np.ndarray, bar: float, cut: float, hasher: KeyedHasher) -> tuple[list[list[int]], int]:
    """(the slot rows with the words the photos show to be one colour in one spelling group, how many word
    pairs were joined). `slots`: [[keyed hash, slot, spelling], ...] (`consumer.learn.variants.slot_keys`);
    `left`/`right`: the candidate pairs as indices into `records`; `share`: their photos' shared colours
    (`image_colour`, NaN without photos); `bar`: from it two photos show one colour; `cut`: under it two."""
    rows = {int(h): (int(s), int(g)) for h, s, g in slots}
    if not rows:
        return [list(map(int, r)) for r in slots], 0
    words: dict[int, set[int]] = {}

    def slot_words(i: int) -> set[int]:
        """The slot words (keyed hashes) of record `i`'s title."""
        if i not in words:
            keys = (int(hasher.get(word_token(w))) for w in title_words(records[i].role("title")))
            words[i] = {h for h in keys if h in rows}
        return words[i]

    votes: Counter[tuple[int, int]] = Counter()
    against: Counter[tuple[int, int]] = Counter()
    colour = colour_keys(hasher)  # slot word -> the table's colour, for every word of the table
    with np.errstate(invalid="ignore"):
        judged = np.flatnonzero((share >= bar) | (share < cut))
    for k in judged.tolist():
        a, b = slot_words(int(left[k])), slot_words(int(right[k]))
        only_a, only_b = a - b, b - a
        if len(only_a) != 1 or len(only_b) != 1:
            continue
        (ha,), (hb,) = only_a, only_b
        if rows[ha][0] != rows[hb][0] or rows[ha][1] == rows[hb][1]:
            continue
        (votes if share[k] >= bar else against)[(min(ha, hb), max(ha, hb))] += 1
    group = {h: g for h, (_, g) in rows.items()}
    joined = 0
    for (ha, hb), n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):  # the most shown first
        if n < MIN_VOTES or n < RATIO * against[(ha, hb)] or not (ha in colour or hb in colour):
            continue
        # The photos may say which shade names which colour, not that two basic colours are one: a colour
        # signature that cannot tell pink from red (photo-offers: 535 of 997 such pairs over the bar) would
        # otherwise put every red and pink word in one group.
        members = [h for h, g in group.items() if g in (group[ha], group[hb])]
        if len({colour[h] for h in members if colour.get(h) in BASIC_COLOURS}) <= 1:
            joined += join_groups(group, ha, hb)
    return sorted([h, rows[h][0], group[h]] for h in rows), joined


def photo_slots(slots: list[list[int]], records: Sequence[Record], vec: Any, info: dict, settings: Settings,
                log: CandidateLog | None = None) -> list[list[int]]:
    """The fit's slot rows, refined by `photo_spellings` where the fit learned a colour bar. `vec`: the fit
    pass's candidate pairs (`left`, `right` into `records`, `all_x`, `features`); `info`: the fit's, with
    `colour_cut` and the `colours` figures (the number of word pairs joined goes there too); `log`: the
    pass's log for the run to replay, whose comparisons were made with the slots before (dropped when any
    word pair is joined: the run compares again, with the slots it decides with)."""
    cut, same = info.get("colour_cut"), info.get("colours", {}).get("same")
    if not slots or cut is None or same is None or "image_colour" not in vec.features:
        return slots
    left, right = vec.left, vec.right
    if len(left) and max(int(left.max()), int(right.max())) >= len(records):
        return slots  # the pass's rows are not the records (not expected: the fit adds every record in order)
    share = vec.all_x[:, list(vec.features).index("image_colour")].astype(np.float64)
    out, joined = photo_spellings(slots, records, left, right, share, max(float(same), float(cut)), float(cut),
                                  KeyedHasher(settings.encoders.hash_key))
    info["colours"]["joined"] = joined
    if joined and log is not None:
        log.pairs = {}
    return out


def photo_evidence(fs: FellegiSunterModel, slots: list[list[int]], records: Sequence[Record], vec: Any,
                   settings: Settings, log: CandidateLog | None = None) -> list[list[int]]:
    """What a file's photos and prices add to a reciprocal-best fit `fs`: the photo and colour bars
    (`consumer.learn.photo_cut`) and the editions' (`consumer.learn.tier_cut`) into its info, and the slot
    rows refined by the colour words its photos join."""
    positive = learned_matches(fs, vec.cand_x, vec.left, vec.right)
    fs.info.update(photo_info(vec.all_x, vec.features, positive, vec.conflict))
    fs.info.update(tier_cut(vec.all_x, vec.features, positive))
    return photo_slots(slots, records, vec, fs.info, settings, log)

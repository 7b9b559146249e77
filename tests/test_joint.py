"""Parts of one thing that agree together among non-matches (an address shared by a household) are weighed by
what the file says a whole agreement is worth, not as independent evidence (`consumer.learn.joint`)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.learn.fellegi_sunter import Comparison
from consumer.learn.fs_fit import FIT_FALLBACK, fit_fellegi_sunter
from consumer.learn.joint import all_agree, fit_joint

NAMES = ("given", "surname", "dob")
PARTS = ("number", "street", "postcode")
COMPS = [Comparison(n, (1.0, 0.88)) for n in NAMES] + [Comparison(n, (1.0,)) for n in PARTS]
JOINT = {"address": list(PARTS)}


def _draw(rng: np.random.Generator, p_top: float, n: int, levels: int) -> np.ndarray:
    """Values at the top level with probability `p_top`, else at the bottom ("else")."""
    top = rng.random(n) < p_top
    return np.where(top, 1.0, 0.0) if levels else np.zeros(n)


def simulate(households: int, seed: int = 3, records: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate pairs, random pairs, which candidates are matches): matches agree on every field at 0.9,
    household members share surname and whole address but not given name or date of birth, and strangers
    the name index proposes share a given name or surname; among random pairs each part agrees at 0.02."""
    rng = np.random.default_rng(seed)
    n_match = records // 2
    match = np.stack([_draw(rng, 0.9, n_match, 1) for _ in COMPS], 1)
    house = np.stack([_draw(rng, 0.02, households, 1), _draw(rng, 0.95, households, 1),
                      _draw(rng, 0.01, households, 1), *(np.ones(households) for _ in PARTS)], 1)
    n_strange = 20 * records
    strange = np.stack([_draw(rng, 0.5, n_strange, 1), _draw(rng, 0.5, n_strange, 1), _draw(rng, 0.01, n_strange, 1),
                        *(_draw(rng, 0.02, n_strange, 1) for _ in PARTS)], 1)
    cand = np.concatenate([match, house, strange])
    is_match = np.zeros(len(cand), bool)
    is_match[:n_match] = True
    random = np.stack([_draw(rng, 0.02, 200_000, 1) for _ in COMPS], 1)
    return cand, random, is_match


def test_a_whole_shared_address_is_worth_what_the_file_says_when_households_share_it() -> None:
    # Enough households that the fit's check sees them (its refit from a strict rule is taken, as on a
    # 50,000-person file of households); fewer, and EM reads them as matches, which no cap undoes.
    cand, random, is_match = simulate(households=800)
    plain = fit_fellegi_sunter(cand, random, COMPS, records=4000)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=JOINT)
    assert fs.info["fit"] != FIT_FALLBACK and not plain.joint
    report = fs.info["joint"]["address"]
    assert report["cap_bits"] < report["parts_bits"] - 3  # the three parts as independent overstate it
    house = np.zeros(len(cand), bool)
    house[len(cand) - 20 * 4000 - 800: len(cand) - 20 * 4000] = True
    said, said_plain = fs.predict_proba(cand)[:, 1] >= 0.5, plain.predict_proba(cand)[:, 1] >= 0.5
    assert said_plain[house].mean() > 0.5 > 0.05 > said[house].mean()  # households were matches, now are not
    whole = is_match & all_agree(fs_levels(cand), [3, 4, 5]) & (cand[:, 0] == 1) & (cand[:, 2] == 1)
    assert said[whole].all()  # a match agreeing on its names and date keeps its link
    assert (said & is_match).sum() / said.sum() > (said_plain & is_match).sum() / said_plain.sum()


def test_where_non_matches_never_share_a_whole_address_no_weight_changes() -> None:
    cand, random, _ = simulate(households=0)
    plain = fit_fellegi_sunter(cand, random, COMPS, records=4000)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=JOINT)
    report = fs.info["joint"]["address"]
    assert report["non_matches"] < 1.0 and report["cap_bits"] is None and not fs.joint  # no dependence shown
    assert np.allclose(fs.match_weight(cand), plain.match_weight(cand))


def test_the_pattern_needs_every_stated_part_agreeing_and_two_stated() -> None:
    g = np.array([[0, 0, 0], [0, -1, 0], [0, -1, -1], [0, 1, 0], [-1, -1, -1]])
    assert all_agree(g, [0, 1, 2]).tolist() == [True, True, False, False, False]
    m = [np.array([0.9, 0.1])] * 3
    u = [np.array([0.01, 0.99])] * 3
    caps, report = fit_joint(g, ["a", "b", "c"], m, u, 1e-3, 1e6, {"address": ["a", "b", "c"], "one": ["a"]})
    assert caps == {} and report == {}  # too few pairs at the pattern; a group of one is no group


def fs_levels(cand: np.ndarray) -> np.ndarray:
    from consumer.learn.fellegi_sunter import gamma

    return gamma(cand, COMPS)


def test_explain_model_says_what_a_whole_agreement_is_capped_at() -> None:
    from consumer.engine.fusion import LearnedModel
    from consumer.learn.unsupervised import explain_model

    cand, random, _ = simulate(households=800)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=JOINT)
    cap = fs.joint["address"][1]
    text = explain_model(LearnedModel(fs, tuple(fs.inputs), {}))
    assert f"address: where every stated part of number, street, postcode agrees, their weights sum to at most " \
           f"{cap:.2f} bits" in text


def test_a_household_is_a_surname_with_the_address_and_needs_the_address() -> None:
    from consumer.learn.joint import expand_groups

    groups = expand_groups({"address": ["number", "street"], "household": ["surname"]})
    assert groups == {"address": ["number", "street"], "household": ["surname", "number", "street"]}
    assert expand_groups({"household": ["surname"]}) == {}  # no address in the file: no household


def test_a_pair_is_capped_by_the_largest_group_all_of_it_agrees_on() -> None:
    from consumer.learn.fellegi_sunter import joint_patterns

    # comparisons: surname, number, street; levels 0 = exact
    g = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    household, address = joint_patterns(g, [[0, 1, 2], [1, 2]])
    assert household.tolist() == [True, False, False]
    assert address.tolist() == [False, True, False]  # the first pair is the household's, not the home's too


def test_a_household_sharing_surname_and_home_is_weighed_once_not_twice() -> None:
    """Household members share their surname and their whole address; summed as independent of the address
    cap, the surname added its own bits on top of a home's worth. As one group, a pair of two people of one
    household weighs what the file says a shared surname and home are worth, and a match that agrees on its
    given name and date of birth as well keeps its link."""
    cand, random, is_match = simulate(households=800)
    home = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=JOINT)
    both = fit_fellegi_sunter(cand, random, COMPS, records=4000,
                              joint={**JOINT, "household": ["surname", *PARTS]})
    report = both.info["joint"]["household"]
    assert report["cap_bits"] < report["parts_bits"] - 3
    g = fs_levels(cand)
    house = np.zeros(len(cand), bool)
    house[len(cand) - 20 * 4000 - 800: len(cand) - 20 * 4000] = True
    same_name = house & all_agree(g, [1, 3, 4, 5])  # surname and every part of the address
    assert same_name.sum() > 500
    assert (both.match_weight(cand)[same_name] < home.match_weight(cand)[same_name] - 1.0).all()
    whole = is_match & all_agree(g, [0, 1, 2, 3, 4, 5])
    assert (both.predict_proba(cand)[whole, 1] >= 0.5).all()


def test_em_weighs_pairs_as_the_model_scores_them_so_households_leave_its_match_class(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """EM over level patterns weighs a shared home as independent parts, so households sit in its match class
    and their other dates of birth look like what matches do (m of "another date" 0.25 where matches differ
    on it one time in ten). Its last rounds weigh each pair as the model will (caps, rarity): m comes back
    near the truth, and the household pairs score lower."""
    import consumer.learn.fs_fit as fs_fit

    cand, random, _ = simulate(households=300)
    joint = {**JOINT, "household": ["surname", *PARTS]}
    monkeypatch.setattr(fs_fit, "SCORED_ROUNDS", 0)
    patterns_only = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=joint)
    monkeypatch.undo()
    scored = fit_fellegi_sunter(cand, random, COMPS, records=4000, joint=joint)
    assert patterns_only.info["fit"] == scored.info["fit"] == "ok"
    other_date = NAMES.index("dob")
    assert patterns_only.m[other_date][-1] > 0.2 > 0.15 > scored.m[other_date][-1]  # matches: 0.1
    house = np.zeros(len(cand), bool)
    house[len(cand) - 20 * 4000 - 300: len(cand) - 20 * 4000] = True
    assert scored.predict_proba(cand)[house, 1].mean() < patterns_only.predict_proba(cand)[house, 1].mean()


def test_a_partial_agreement_is_never_worth_more_than_the_whole_one() -> None:
    """The cap is read where every part agrees exactly, and bounds every pair whose parts all agree at a level
    that weighs for a match: a street one typo apart must not make a home worth more than the same home
    written alike (summed as independent parts it was, 22 bits against a cap of 12)."""
    from consumer.learn.fellegi_sunter import FellegiSunterModel

    comps = (Comparison("number", (1.0,)), Comparison("street", (1.0, 0.88)), Comparison("dob", (1.0,)))
    m = [np.array([0.9, 0.1]), np.array([0.8, 0.15, 0.05]), np.array([0.9, 0.1])]
    u = [np.array([0.01, 0.99]), np.array([0.01, 0.01, 0.98]), np.array([0.01, 0.99])]
    model = FellegiSunterModel(comps, m, u, 1e-4, joint={"address": (("number", "street"), 5.0)})
    x = np.array([[1.0, 1.0, 0.0],     # the whole address exactly
                  [1.0, 0.9, 0.0],     # the street one typo apart
                  [1.0, 0.0, 0.0],     # another street: not an agreement, not capped
                  [1.0, np.nan, 0.0]])  # one part stated: no pattern
    prior, dob_else = np.log2(1e-4 / (1 - 1e-4)), np.log2(0.1 / 0.99)
    w = model.match_weight(x) - prior - dob_else
    assert np.allclose(w[:2], 5.0)
    assert np.isclose(w[2], np.log2(0.9 / 0.01) + np.log2(0.05 / 0.98))
    assert np.isclose(w[3], np.log2(0.9 / 0.01))

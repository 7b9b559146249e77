"""Fellegi-Sunter fitting without labels: EM over all record pairs, and the guards against a wrong fit.

The comparison vectors are simulated as a file would give them: every record pair is a match, a household
pair (same surname, address and phone; another given name and date of birth) or two strangers; the
"blocking" proposes the pairs whose given name or surname agrees at least nearly (a name index), and u
comes from random record pairs. Households break the model's assumption (comparisons independent among
non-matches), which is what makes plain EM find the wrong split.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from consumer.learn.fellegi_sunter import Comparison, FellegiSunterModel, default_m, level_probs
from consumer.learn.fs_fit import (
    DEFAULT_MATCHES_PER_RECORD,
    FIT_FALLBACK,
    FIT_OK,
    FIT_REFIT,
    check_fit,
    fit_fellegi_sunter,
    fit_near_count,
    matches_removed,
    rule_m_without,
    rule_matches,
)
from consumer.learn.unsupervised import FIT_FLOOR, fit_sample_size

VALUES = np.array([1.0, 0.9, 0.0])  # exact, one typo, else
U = np.array([0.01, 0.01, 0.98])
M = np.array([0.85, 0.10, 0.05])
COMPS = [Comparison(name, (1.0, 0.88)) for name in ("given", "surname", "address", "phone", "dob")]


def _draw(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    return VALUES[rng.choice(3, n, p=p)]


def simulate(records: int, matches_per_record: float, households_per_record: float = 0.0, seed: int = 1
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate pair vectors, random pair vectors, which candidates are matches) of a simulated file."""
    rng = np.random.default_rng(seed)
    n_match, n_house = int(matches_per_record * records), int(households_per_record * records)
    match = np.stack([_draw(rng, M, n_match) for _ in COMPS], 1)
    house = np.stack([_draw(rng, U, n_house), *(_draw(rng, M, n_house) for _ in range(3)), _draw(rng, U, n_house)], 1)
    # Strangers the name index proposes: a given name or surname at least nearly equal.
    n_strangers = int(records * (records - 1) / 2 * (1 - U[2] ** 2))
    strangers = np.zeros((0, len(COMPS)))
    while len(strangers) < n_strangers:
        more = np.stack([_draw(rng, U, n_strangers) for _ in COMPS], 1)
        strangers = np.concatenate([strangers, more[(more[:, 0] > 0) | (more[:, 1] > 0)]])
    blocked = [x[(x[:, 0] > 0) | (x[:, 1] > 0)] for x in (match, house)]
    cand = np.concatenate([*blocked, strangers[:n_strangers]])
    is_match = np.zeros(len(cand), bool)
    is_match[: len(blocked[0])] = True
    random = np.stack([_draw(rng, U, 100_000) for _ in COMPS], 1)
    return cand, random, is_match


def _precision(fs: FellegiSunterModel, cand: np.ndarray, is_match: np.ndarray) -> float:
    said = fs.predict_proba(cand)[:, 1] >= 0.5
    return float((said & is_match).sum() / max(said.sum(), 1))


def test_em_recovers_known_parameters() -> None:
    """No labels: lambda (matches among all pairs) and m of a comparison the blocking did not use."""
    cand, random, is_match = simulate(3000, 0.5)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_OK and fs.info["reasons"] == []
    assert fs.info["matches_per_record"] == pytest.approx(0.5, abs=0.03)
    assert np.allclose(fs.m[4], M, atol=0.03) and np.allclose(fs.u[4], U, atol=0.01)
    said = fs.predict_proba(cand)[:, 1] >= 0.5
    assert (said == is_match).mean() > 0.999 and _precision(fs, cand, is_match) > 0.98


@pytest.mark.parametrize("matches_per_record", [0.005, 0.1, 0.5])
def test_clean_files_pass_the_guards(matches_per_record: float) -> None:
    """Few duplicates or many: a file that fits the model's assumptions is fitted by EM ("ok")."""
    cand, random, is_match = simulate(3000, matches_per_record, seed=2)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_OK, fs.info["reasons"]
    assert _precision(fs, cand, is_match) > 0.9


def test_the_rldata_collapse_fails_the_guards() -> None:
    """The weights the old candidate-pair fit gave RLdata10000 (explain-model, 319,472 candidate pairs,
    lambda 0.37): surname agreement weighed -11.3 bits and 12 matching pairs per record were claimed."""
    comps = [Comparison("given_name", (1.0, 0.88, 0.6)), Comparison("surname", (1.0, 0.88, 0.6))]
    m = [np.array([0.8548, 0.0305, 0.1139, 0.0008]), np.array([0.0003, 0.0368, 0.0070, 0.9559])]
    u = [np.array([0.04557, 0.01749, 0.01781, 0.91913]), np.array([0.78029, 0.02857, 0.01573, 0.17542])]
    reasons = check_fit(comps, m, u, claimed=0.37 * 319_472, records=10_000, rule=970)
    assert any("per record, more than the plausible" in r for r in reasons)
    assert any(r.startswith("surname: agreeing weighs -11.3 bits") for r in reasons)
    assert any(r.startswith("surname: disagreeing weighs +2.4 bits") for r in reasons)
    assert not any(r.startswith("given_name") for r in reasons)
    # The same numbers from a sane fit pass.
    sane_m = [np.array([0.62, 0.37, 0.005, 0.005])] * 2
    assert check_fit(comps, sane_m, u, claimed=990, records=10_000, rule=970) == []


def test_households_make_em_fail_and_the_rule_refit_is_taken() -> None:
    """0.3 household pairs per record: plain EM takes households for matches (they agree on three of five
    comparisons) and claims several times the pairs the deterministic rule finds; the refit (m and lambda
    from the rule) is used instead, and its matches are matches."""
    cand, random, is_match = simulate(3000, 0.1, households_per_record=0.3)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_REFIT
    assert any("that agree on nearly every comparison" in r for r in fs.info["reasons"])
    # lambda is read from the file with m held at the rule's: the households stay out (plain EM claimed
    # 0.38 pairs per record), though a little of their probability mass counts (0.15 here, truth 0.1).
    assert 0.07 <= fs.info["matches_per_record"] <= 0.19
    assert _precision(fs, cand, is_match) > 0.8


def test_the_refit_reads_lambda_from_the_file_not_the_rule_count() -> None:
    """Matches that the rule misses (a corrupted field off its top levels) still count in the refit's lambda:
    the rule's count is a floor. Here households make EM fail, and a third of the matches disagree entirely
    on the given name: the refit's lambda is above the rule's count, and its clusters find more of the
    matches than the same weights at the rule's count, as precisely."""
    cand, random, is_match = simulate(3000, 0.3, households_per_record=0.3, seed=3)
    cand[np.flatnonzero(is_match)[::3], 0] = 0.0
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_REFIT
    assert fs.info["matches_per_record"] > fs.info["rule_matches"] / 3000
    at_rule = dataclasses.replace(fs, lam=fs.info["rule_matches"] / (3000 * 2999 / 2))

    def recall(model: FellegiSunterModel) -> float:
        return float(((model.predict_proba(cand)[:, 1] >= 0.5) & is_match).sum() / is_match.sum())

    assert recall(fs) > recall(at_rule) + 0.01
    assert _precision(fs, cand, is_match) >= _precision(at_rule, cand, is_match) - 0.01


def test_the_refit_reads_each_comparisons_m_from_pairs_the_others_call_matches() -> None:
    """Matches where one comparison of five disagrees (a married name, a moved address): the rule accepts a
    pair with one disagreement, which is always on *another* comparison than the one whose m is read from
    the rule's pairs, so each m says a match disagrees less often than it does (60 of 600 pairs, 0.10).
    Read from the pairs the other four call a match (none of them disagreeing), it is 60 of 360 (0.17); too
    few such pairs give no estimate."""
    patterns = np.array([[0, 0, 0, 0, 0]] + [[2 if k == j else 0 for k in range(5)] for j in range(5)], np.int8)
    counts = np.array([300.0] + [60.0] * 5)
    by_rule = level_probs(patterns[:, 0], counts * rule_matches(patterns, COMPS), 3)
    without = rule_m_without(patterns, counts, COMPS)
    assert by_rule[-1] == pytest.approx(60 / 600, abs=0.005)
    assert all(m is not None and m[-1] == pytest.approx(60 / 360, abs=0.005) for m in without)
    assert all(m is None for m in rule_m_without(patterns, np.ones(len(counts)), COMPS))  # under MIN_SELECTED


def test_corruption_in_every_field_keeps_the_em_fit() -> None:
    """Every field of a match corrupted at random (typed, swapped, dropped: fake-1000, a third-party person
    generator): the rule finds a fraction of the matches and EM claims well over 1.5 times its count, yet
    EM's split is right, since its matches agree less than the rule's on every comparison alike. The fit is
    EM's, not the refit, and it finds more of the matches than the refit would."""
    rng = np.random.default_rng(5)
    cand, random, is_match = simulate(3000, 0.5, seed=5)
    idx = np.flatnonzero(is_match)
    corrupted = rng.random((len(idx), len(COMPS))) < 0.35
    corrupted[:, 1] &= ~corrupted[:, 0]  # one name kept, so the name index still proposes the pair
    block = cand[idx]
    block[corrupted] = 0.0
    cand[idx] = block
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["expected_matches"] > 1.5 * fs.info["rule_matches"]
    assert fs.info["fit"] == FIT_OK, fs.info["reasons"]
    assert _precision(fs, cand, is_match) > 0.9
    recall = ((fs.predict_proba(cand)[:, 1] >= 0.5) & is_match).sum() / is_match.sum()
    assert recall > 0.6  # the refit it was given before claimed 833 pairs of the 1,494 (recall 0.54)


def test_a_file_of_large_groups_keeps_its_fit() -> None:
    """Groups of 3-20 records (a registry merged from many sources) hold over three matching pairs per
    record; a plausible fit of such a file is EM's, not the fallback."""
    cand, random, is_match = simulate(3000, 3.3, seed=4)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_OK, fs.info["reasons"]
    assert fs.info["matches_per_record"] == pytest.approx(3.3, rel=0.1)


def test_a_fit_the_refit_cannot_save_falls_back_to_default_weights() -> None:
    """One household pair per record: the refit's weights still claim the households, so the stated
    default weights are used (and say so), and households are not merged."""
    cand, random, is_match = simulate(3000, 0.1, households_per_record=1.0)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=3000)
    assert fs.info["fit"] == FIT_FALLBACK
    assert any(r.startswith("after the refit:") for r in fs.info["reasons"])
    assert fs.info["matches_per_record"] == pytest.approx(DEFAULT_MATCHES_PER_RECORD)
    assert all(np.allclose(m, default_m(c.n_levels)) for m, c in zip(fs.m, COMPS))
    assert _precision(fs, cand, is_match) > 0.6


def test_term_frequency_weighs_a_common_value_less() -> None:
    """Exact agreement on a value shared by 1,000 of 10,000 records weighs less than on one shared by 2;
    the share is read at the scale of the running population when one is bound."""
    comp = Comparison("surname", (1.0, 0.88), tf="surname_rarity")
    fs = FellegiSunterModel((comp,), [np.array([0.9, 0.05, 0.05])], [np.array([0.01, 0.01, 0.98])], 1e-4,
                            records=10_000)
    others = np.array([1.0, 999.0])
    x = np.stack([np.ones(2), np.log1p(others)], 1)
    rare, common = fs.match_weight(x)
    assert rare > fs.match_weight(np.array([[1.0, np.nan]]))[0] > common  # no rarity: the average u
    base = fs.match_weight(np.array([[1.0, np.nan]]))[0]
    assert rare - base == pytest.approx(4.0)  # 2 in 10,000 against u 0.01: +5.6 bits, bounded to +4
    assert common - base == pytest.approx(np.log2(0.01 / 0.1))  # 1,000 in 10,000

    class Table:
        records = 100_000

    fs.bind(Table())  # 1,000 others among 100,000 records is a tenth as common as among 10,000
    assert fs.match_weight(x)[1] == pytest.approx(common + np.log2(10))


def test_fit_sample_scales_with_the_file() -> None:
    assert fit_sample_size(5_000) == 5_000 and fit_sample_size(FIT_FLOOR) == FIT_FLOOR
    assert fit_sample_size(40_000) == FIT_FLOOR
    assert fit_sample_size(100_000) == 15_000
    assert fit_sample_size(10_000_000) == 50_000


def test_two_common_names_one_edit_apart_weigh_less_than_a_typo() -> None:
    """At the one-edit level a pair is weighed by how many records hold its rarer value against the likely
    matches' typical count: a typo (a value held once) keeps about the fitted weight, two common names one
    edit apart (Schmitt / Schmidt) lose up to `TF_CLIP` bits; the exact level is adjusted as before, and a
    model fitted before the adjustment existed (no `near_count`) weighs the one-edit level alone."""
    comp = Comparison("surname", (1.0, 0.88), tf="surname_rarity", tf_near="surname_rarer")
    fs = FellegiSunterModel((comp,), [np.array([0.7, 0.25, 0.05])], [np.array([0.01, 0.005, 0.985])], 0.02,
                            records=10_000)
    assert fs.inputs == ("surname", "surname_rarity", "surname_rarer")
    once, common = np.log(1.0), np.log(100.0)  # the rarer value: held by its own record only / by 100
    x = np.array([[0.9, np.nan, once], [0.9, np.nan, common], [1.0, np.log1p(99.0), common]])
    old = fs.match_weight(x)
    assert old[0] == old[1]  # no typical count: the level's weight whatever the names
    pairs = np.array([[0.9, np.nan, once]] * 8 + [[0.9, np.nan, common]] * 2 + [[0.5, np.nan, common]] * 5)
    fs.near_count = fit_near_count(fs, pairs)
    assert 1.0 < fs.near_count["surname"] < 3.0  # mostly typos: about one record
    new = fs.match_weight(x)
    assert 0 <= new[0] - old[0] < 1.5  # a typo like most of the pairs': about the fitted weight
    assert new[1] == pytest.approx(old[1] - 4.0)  # 100 records against ~2.5: -5.3 bits, bounded to -4
    assert new[2] == pytest.approx(old[2])  # the exact level: unchanged


def test_u_is_read_from_the_random_pairs_non_matches() -> None:
    """In a small file with many duplicates the random pairs hold matches at the rate lambda (here 0.0033,
    a third of the strangers' exact-agreement rate): u read from them directly overstates every top level
    (~0.0128 against the strangers' 0.01) and so understates its evidence. The fit removes them; the random
    pairs' own shares stay in `u_random` (what `drift_notes` compares a new file's random pairs with)."""
    rng = np.random.default_rng(5)
    cand, random, _ = simulate(300, 0.5, seed=5)
    lam = 150 / (300 * 299 / 2)
    matches = rng.random(len(random)) < lam
    random[matches] = np.stack([_draw(rng, M, int(matches.sum())) for _ in COMPS], 1)
    fs = fit_fellegi_sunter(cand, random, COMPS, records=300)
    assert fs.info["fit"] == FIT_OK
    assert fs.info["matches_per_record"] == pytest.approx(0.5, abs=0.05)
    for j in range(len(COMPS)):
        assert fs.u_random[j][0] > 0.0118  # the raw share, matches included
        assert fs.u[j][0] == pytest.approx(U[0], abs=0.0012)


def test_matches_removed_inverts_the_mixture_and_keeps_a_floor() -> None:
    u_true, m = np.array([0.01, 0.02, 0.97]), np.array([0.9, 0.08, 0.02])
    lam = 0.004
    mixed = (1 - lam) * u_true + lam * m
    (back,) = matches_removed([mixed], [m], lam, random_pairs=100_000)
    assert np.allclose(back, u_true, atol=1e-9)
    (floored,) = matches_removed([np.array([0.001, 0.0, 0.999])], [np.array([0.9, 0.05, 0.05])], 0.01, 1000)
    assert floored.min() > 0 and floored.sum() == pytest.approx(1.0)

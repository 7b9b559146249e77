"""The real-data benchmark skips what is absent and scores final clusters (no Splink needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import real_data  # noqa: E402
from peers import tfidf_clusters  # noqa: E402


def test_missing_files_are_skipped_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = real_data.main(["--data-dir", str(tmp_path), "--files", "abt-buy,amazon-google,rldata10000"])
    out = capsys.readouterr().out
    assert rc == 0
    assert sum(line.startswith("skipped ") for line in out.splitlines()) == 3
    assert "nothing measured" in out


def test_score_counts_pairs_of_final_clusters() -> None:
    truth = {"a": "1", "b": "1", "c": "1", "d": "2"}
    clusters = {"a": "x", "b": "x", "c": "y", "d": "y"}  # finds a-b, wrongly links c-d
    s = real_data.score(clusters, truth)
    assert (s.precision, round(s.recall, 4), s.largest_cluster) == (0.5, 0.3333, 2)
    assert real_data.score({}, truth).predicted_pairs == 0  # records left out count as singletons


def test_tfidf_baseline_links_near_identical_texts_only() -> None:
    got = tfidf_clusters(["1", "2", "3"], ["sony turntable pslx350h", "Sony Turntable PSLX350H", "bose speaker"])
    assert got["1"] == got["2"] != got["3"]


def test_learning_curve_skips_what_is_absent_and_tabulates(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import learning_curve

    assert learning_curve.main(["--data-dir", str(tmp_path), "--files", "abt-buy,rldata10000"]) == 0
    assert sum(line.startswith("skipped ") for line in capsys.readouterr().out.splitlines()) == 2
    rows = [{"file": "f", "labels": 0, "f1": 0.5}, {"file": "f", "labels": 25, "f1": 0.75}]
    assert learning_curve.markdown(rows).splitlines()[2] == "| f | 0.5000 | 0.7500 |"
    # several question orders: the mean and the range
    rows += [{"file": "f", "labels": 0, "f1": 0.5}, {"file": "f", "labels": 25, "f1": 0.65}]
    assert learning_curve.markdown(rows).splitlines()[2] == "| f | 0.5000 (0.5000-0.5000) | 0.7000 (0.6500-0.7500) |"


def test_learning_curve_shuffles_rows_not_records(tmp_path: Path) -> None:
    """`--shuffle SEED` reorders a file's rows (a stream interleaves the shops a benchmark file lists in turn);
    every record is kept, with its fields, and no seed means the file as it is."""
    import csv

    import learning_curve

    src = tmp_path / "listings.csv"
    rows = [{"listing_id": f"{'a' if i < 10 else 'b'}_{i}", "title": f"t{i}, with a comma"} for i in range(20)]
    with src.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["listing_id", "title"])
        w.writeheader()
        w.writerows(rows)
    assert learning_curve.shuffled(src, None) == src
    out = learning_curve.shuffled(src, 7)
    got = list(csv.DictReader(out.open(newline="")))
    assert got != rows and sorted(got, key=lambda r: int(r["listing_id"][2:])) == rows
    assert learning_curve.shuffled(src, 7).read_text() == out.read_text()  # the same seed, the same order


def test_large_group_recall_counts_pairs_inside_groups_of_five_or_more() -> None:
    truth = {**{c: "big" for c in "abcde"}, "f": "pair", "g": "pair"}
    # the group of five cut into a pair, a pair and a singleton: 2 of its 10 pairs; the pair is not counted
    got = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z", "f": "p", "g": "q"}
    assert real_data.large_group_recall(got, truth) == 0.2
    assert real_data.large_group_recall(got, {"f": "pair", "g": "pair"}) is None


def test_the_suite_keeps_a_change_only_when_the_mean_rises_and_no_file_falls() -> None:
    from suite_verdict import compare, summary_line

    def rows(**f1: float) -> list[dict]:
        return [{"file": f, "method": "dedup-stream", "f1": v} for f, v in f1.items()] + [
            {"file": "x", "method": "tf-idf baseline", "f1": 0.99}]  # peers never count

    base = rows(a=0.5, b=0.9, c=0.7)
    assert summary_line(base) == "suite: 3 files, mean F1 0.7000, worst a 0.5000"
    assert compare(rows(a=0.6, b=0.895, c=0.7), base)[1]          # up, b falls by 0.005: kept
    assert not compare(rows(a=0.8, b=0.85, c=0.7), base)[1]       # up, but b falls by 0.05
    assert not compare(rows(a=0.5, b=0.9, c=0.7), base)[1]        # no rise
    lines, keep = compare(rows(a=0.6, b=0.9), base)               # c not measured: named, not scored
    assert keep and any(line.startswith("c ") and "base only" in line for line in lines)


def test_leave_one_out_reports_each_file_at_the_value_chosen_without_it() -> None:
    from loo_sweep import loo

    table = {"0.8": {"a": 0.9, "b": 0.5, "c": 0.6}, "0.4": {"a": 0.7, "b": 0.8, "c": 0.9}}
    chosen, overall = loo(table)
    # without a: 0.55 vs 0.85 on b, c; without b: 0.75 vs 0.80; without c: 0.70 vs 0.75: 0.4 each time
    assert chosen == {"a": ("0.4", 0.7), "b": ("0.4", 0.8), "c": ("0.4", 0.9)} and overall == "0.4"


def test_pair_outcomes_sorts_true_pairs_by_what_stopped_them(tmp_path: Path) -> None:
    """Every true pair is either found or missed under one label, and a true pair whose titles name two colours
    is counted as a false conflict of the feature that says so (`benchmarks/pair_outcomes.py`)."""
    import csv

    import pair_outcomes

    rows = [("l1", "Acme Widget X100 Pro Kettle Red 1.7 L"), ("l2", "Acme Widget X100 Pro Kettle Red 1.7 L"),
            ("l3", "Zeta Blender Z900 Blue 600 W"), ("l4", "Zeta Blender Z900 Green 600 W"),
            ("l5", "Nordic Desk Lamp Oak"), ("l6", "Trail Running Shoe Mesh")]
    src = tmp_path / "listings.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["listing_id", "title"])
        w.writerows(rows)
    truth = {"l1": "a", "l2": "a", "l3": "b", "l4": "b", "l5": "c", "l6": "d"}
    got = pair_outcomes.outcomes(src, real_data.CONFIGS["listing"], truth, tmp_path)
    assert got["true_pairs"] == 2
    assert got["found"] + sum(got["missed_by_label"].values()) == 2
    assert got["found"] == sum(got["found_by_label"].values()) >= 1
    assert got["false_conflicts"] >= 1  # Blue / Green: the comparisons call them two products
    assert got["false_conflicts_by_feature"]["variant_agree"] >= 1
    assert got["false_pairs"] == sum(got["false_pairs_by_label"].values())


def test_pair_outcomes_reads_a_file_outside_the_suite_by_level_pattern(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A person file named by path (not a suite file) is run as the suite would run its kind, and every kind of
    pair is counted by its level pattern over the fitted model's comparisons, with each comparison's fitted m
    beside its level shares over the true pairs (`benchmarks/pair_outcomes.py --records/--truth/--kind`)."""
    import csv
    import json

    import group_people
    import pair_outcomes

    rows, truth = group_people.generate(600, 5)
    src, truth_csv = tmp_path / "people.csv", tmp_path / "truth.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with truth_csv.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("id", "entity"), *truth.items()])
    out_json = tmp_path / "out.json"
    assert pair_outcomes.main(["--records", str(src), "--truth", str(truth_csv), "--kind", "person",
                               "--json", str(out_json)]) == 0
    got = json.loads(out_json.read_text())["people"]
    columns = got["pattern_columns"]
    assert {"given_name", "surname", "dob"} <= set(columns)
    found = got["patterns"]["found"]
    assert found and all(len(p) == len(columns) and set(p) <= set("=~x-") for p, _ in found)
    assert sum(n for _, n in found) <= got["found"]  # the most common patterns only
    for name in columns:
        assert len(got["m_fitted"][name]) == len(got["m_truth"][name])
        assert abs(sum(got["m_truth"][name]) - 1) < 0.01
    prior = got["prior"]  # the matches a record the fit's lambda expects beside the truth's pairs a record
    assert prior["true_pairs_per_record"] == round(got["true_pairs"] / len(rows), 3)
    assert 0 < prior["matches_per_record_expected"] < 10 * prior["true_pairs_per_record"]
    printed = capsys.readouterr().out
    assert "level patterns over" in printed and "true pairs a record" in printed
    with pytest.raises(SystemExit):  # a file needs its truth and kind
        pair_outcomes.main(["--records", str(src)])

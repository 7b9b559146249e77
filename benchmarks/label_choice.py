"""How long a labelling session takes to choose the next pair, on a large file.

    dedup generate /tmp/x.csv -n 100000 --seed 3
    python benchmarks/label_choice.py /tmp/x.csv --answers 30

The file is run once (`build_pool`, the one-off cost before the first question); then an oracle (the
generator's truth file next to the input, `X.truth.csv`, else random answers) answers `--answers`
questions through the session's own path (`Session.progress`: the fit of the answers so far over the
pairs questions come from, the contenders, and the choice among them), and each step is timed, with the
terminal's "a yes would change N decisions" line (`impact`, two refits counted over the same pairs).
Acceptance (issue 21): choosing the next pair < 200 ms on a 100k-record file after the first fit. Prints
milliseconds and the CPU model. `--all-pairs` times the earlier path (every candidate pair predicted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_data import cpu_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--answers", type=int, default=30)
    ap.add_argument("--all-pairs", action="store_true", help="predict and choose over every candidate pair")
    ap.add_argument("--always-apply", action="store_true",
                    help="apply the correction whatever its held-out gain (the slowest path: every pair "
                         "of the questions predicted again at each answer)")
    args = ap.parse_args(argv)
    import tempfile

    import consumer.learn.label_session as label_session

    if args.always_apply:
        label_session.MIN_GAIN = -float("inf")

    import numpy as np

    from consumer.config import load_settings
    from consumer.io.labels import read_oracle
    from consumer.learn.label_session import Session, build_pool, fit_labels
    from consumer.learn.labelling import NO, UNSURE, YES, choose_next, impact

    env = dict(os.environ)
    if args.profile:
        env["DEDUP_PROFILE__NAME"] = args.profile
    settings = load_settings(None, env=env)
    t0 = time.perf_counter()
    pool = build_pool(args.input, settings)
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} cores; {len(pool.ids)} records, {len(pool.left)} candidate "
          f"pairs ({int(pool.contenders.sum())} contenders); first run of the engine {time.perf_counter() - t0:.1f} s")
    truth = Path(args.input).with_suffix(".truth.csv")
    entity = read_oracle(truth, pool.ids) if truth.is_file() else None
    rng = np.random.default_rng(0)
    fit_ms, impact_ms = [], []
    applied = 0
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(pool, Path(tmp) / "labels.csv")
        for step in range(args.answers):
            t1 = time.perf_counter()
            if args.all_pairs:
                labels = session.labels
                fit = fit_labels(pool, labels, validate=False)
                asked = {pool.pair(lab) for lab in labels}
                shown = {r for i in asked for r in (int(pool.left[i]), int(pool.right[i]))}
                yes = sum(lab.answer == YES for lab in labels)
                nxt = choose_next(fit.p, pool.base_p, pool.left, pool.right, asked, shown, step, 0,
                                  (yes, len(labels) - yes), pool.contenders)
            else:
                prog = session.progress()
                fit, nxt = prog.fit, prog.pair
            t2 = time.perf_counter()
            if nxt is None:
                break
            labelled = {pool.pair(lab): int(lab.answer == YES) for lab in session.labels if lab.answer != UNSURE}
            impact(pool.base_logit, pool.x, labelled, nxt, pool.mean, pool.scale, fit.p, design=pool.design,
                   over=fit.rows)
            t3 = time.perf_counter()
            if step:  # after the first fit
                fit_ms.append(1000 * (t2 - t1))
                impact_ms.append(1000 * (t3 - t2))
                applied += bool(fit.report["applied"])
            a, b = pool.ids[int(pool.left[nxt])], pool.ids[int(pool.right[nxt])]
            if entity is not None:
                answer = YES if entity.get(a, a) == entity.get(b, b) else NO
            else:  # no truth file: a random answer (the timing does not depend on it)
                answer = YES if rng.random() < 0.5 else NO
            session.answer(nxt, answer)
        last = fit_labels(pool, session.labels, validate=False).report
    print(f"# steps timed: {len(fit_ms)}, with the correction applied: {applied}; at the end {last['yes']} yes, "
          f"{last['no']} no, held-out gain {last['held_out_gain']} nats per answer")
    for name, ms in (("next pair (fit + choice)", fit_ms), ("terminal's impact line", impact_ms)):
        if ms:
            print(f"{name:26s} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   "
                  f"({len(ms)} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

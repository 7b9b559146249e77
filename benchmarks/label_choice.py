"""How long a labelling session takes to choose the next pair, on a large file.

    dedup generate /tmp/x.csv -n 100000 --seed 3
    python benchmarks/label_choice.py /tmp/x.csv --answers 30

The file is run once (`build_pool`, the one-off cost before the first question); then an oracle (the
generator's truth file next to the input, `X.truth.csv`, else random answers) answers `--answers`
questions, and each step is timed: the fit of the answers so far over every candidate pair (`fit_labels`)
and the choice of the next pair (`choose_next`), and the terminal's "a yes would change N decisions" line
(`impact`, two refits over every pair). Acceptance (issue 21): choosing the next pair < 200 ms
on a 100k-record file after the first fit. Prints milliseconds and the CPU model.
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
    args = ap.parse_args(argv)
    import numpy as np

    from consumer.config import load_settings
    from consumer.io.labels import Label, read_oracle
    from consumer.learn.label_session import build_pool, fit_labels
    from consumer.learn.labelling import NO, YES, choose_next, impact

    env = dict(os.environ)
    if args.profile:
        env["DEDUP_PROFILE__NAME"] = args.profile
    settings = load_settings(None, env=env)
    t0 = time.perf_counter()
    pool = build_pool(args.input, settings)
    print(f"# CPU: {cpu_model()}, {os.cpu_count()} cores; {len(pool.ids)} records, {len(pool.left)} candidate "
          f"pairs; first run of the engine {time.perf_counter() - t0:.1f} s")
    truth = Path(args.input).with_suffix(".truth.csv")
    entity = read_oracle(truth, pool.ids) if truth.is_file() else None
    rng = np.random.default_rng(0)
    labels: list[Label] = []
    fit_ms, choose_ms, impact_ms = [], [], []
    applied = 0
    for step in range(args.answers):
        t1 = time.perf_counter()
        fit = fit_labels(pool, labels, validate=False)
        t2 = time.perf_counter()
        asked = {pool.pair(lab) for lab in labels}
        shown = {r for i in asked for r in (int(pool.left[i]), int(pool.right[i]))}
        yes = sum(lab.answer == YES for lab in labels)
        nxt = choose_next(fit.p, pool.base_p, pool.left, pool.right, asked, shown, step, 0,
                          (yes, len(labels) - yes))
        t3 = time.perf_counter()
        if nxt is None:
            break
        labelled = {pool.pair(lab): int(lab.answer == YES) for lab in labels}
        impact(pool.base_logit, pool.x, labelled, nxt, pool.mean, pool.scale, fit.p, design=pool.design)
        t4 = time.perf_counter()
        if step:  # after the first fit
            fit_ms.append(1000 * (t2 - t1))
            choose_ms.append(1000 * (t3 - t2))
            impact_ms.append(1000 * (t4 - t3))
            applied += bool(fit.report["applied"])
        a, b = pool.ids[int(pool.left[nxt])], pool.ids[int(pool.right[nxt])]
        if entity is not None:
            answer = YES if entity.get(a, a) == entity.get(b, b) else NO
        else:  # no truth file: a random answer (the timing does not depend on it)
            answer = YES if rng.random() < 0.5 else NO
        labels.append(Label(a, b, answer))
    print(f"# steps timed: {len(fit_ms)}, with the correction applied (answers of both kinds): {applied}")
    for name, ms in (("fit_labels", fit_ms), ("choose_next", choose_ms),
                     ("next pair (fit + choose)", [a + b for a, b in zip(fit_ms, choose_ms)]),
                     ("terminal's impact line", impact_ms)):
        if ms:
            print(f"{name:26s} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   "
                  f"({len(ms)} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

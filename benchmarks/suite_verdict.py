"""The suite's summary and the rule a quality change is kept by (issue 37).

Why a rule in code: a change that raised the files in view lowered files out of sight, because nothing
judged it on the whole suite. So one line says where the suite stands (mean F1 of dedup-stream over every
file, and the worst), and a comparison with a kept run says whether a change may stay: **the mean rises and
no file falls by more than `MAX_DROP`**. Only the `dedup-stream` rows count (the linked run of a two-shop
file; its one-pool row is reference); peers are shown beside the files, never averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MAX_DROP", "ours", "summary_line", "compare"]

#: The largest fall of one file a kept change may cause.
MAX_DROP = 0.01
METHOD = "dedup-stream"


def ours(rows: Sequence[dict]) -> dict[str, float]:
    """file -> F1 of dedup-stream (files where it failed are left out, and said so by `summary_line`)."""
    return {r["file"]: float(r["f1"]) for r in rows if r.get("method") == METHOD and "f1" in r}


def summary_line(rows: Sequence[dict]) -> str:
    f1 = ours(rows)
    failed = [r["file"] for r in rows if r.get("method") == METHOD and "error" in r]
    if not f1:
        return "suite: nothing measured"
    worst = min(f1, key=f1.__getitem__)
    line = (f"suite: {len(f1)} files, mean F1 {sum(f1.values()) / len(f1):.4f}, "
            f"worst {worst} {f1[worst]:.4f}")
    return line + (f"; failed: {', '.join(failed)}" if failed else "")


def compare(rows: Sequence[dict], base: Sequence[dict]) -> tuple[list[str], bool]:
    """(lines, keep): each file's change against `base` over the files both measured, the means over
    those files, and whether the rule keeps the change. A file only one run measured is named, not scored."""
    now, then = ours(rows), ours(base)
    common = [f for f in now if f in then]
    lines = [f"{'file':24s} {'base':>7s} {'head':>7s} {'delta':>8s}"]
    worst_drop = 0.0
    for f in common:
        d = now[f] - then[f]
        worst_drop = min(worst_drop, d)
        flag = "  FALLS" if d < -MAX_DROP else ""
        lines.append(f"{f:24s} {then[f]:7.4f} {now[f]:7.4f} {d:+8.4f}{flag}")
    for f in sorted(set(now) ^ set(then)):
        lines.append(f"{f:24s} measured in {'head' if f in now else 'base'} only: not compared")
    if not common:
        return lines + ["verdict: no file in common"], False
    mean_now = sum(now[f] for f in common) / len(common)
    mean_then = sum(then[f] for f in common) / len(common)
    keep = mean_now > mean_then and worst_drop >= -MAX_DROP
    lines.append(f"mean over {len(common)} files: {mean_then:.4f} -> {mean_now:.4f} ({mean_now - mean_then:+.4f}); "
                 f"largest fall {worst_drop:+.4f}")
    lines.append("verdict: " + ("keep (the mean rises, no file falls by more than "
                                f"{MAX_DROP})" if keep else "do not keep"))
    return lines, keep

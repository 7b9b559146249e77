"""`dedup eval`: run the four methods on one labelled file and tabulate them.

Methods: the paper's string baseline, a replica of the paper's multimodal method, and this engine with
`rule` and with `learned` fusion. For the engine it also reports candidate recall (true pairs that
reached scoring) and the largest cluster (the chaining symptom), and can plot precision/recall against
the match threshold from the scored candidate pairs.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from consumer.config import Settings
from consumer.engine.pipeline import Pipeline
from consumer.engine.records import Record
from consumer.evaluation.evaluate import Scores, cluster_scores, load_truth, pair_scores, true_pairs
from consumer.io.artifacts import build_pipeline, load_text_encoder
from consumer.io.batch import iter_records
from consumer.learn.train import candidate_recall

__all__ = ["evaluate_file", "run_engine"]


def run_engine(records: list[Record], settings: Settings, text_encoder: Any = None,
               log_pairs: bool = False, model: Any = None, stream: bool = False) -> tuple[Pipeline, float]:
    """Records through the engine in arrival order, micro-batch by micro-batch. `stream`: the threaded path
    of `dedup batch` (encoding, HNSW inserts and the next batch's search beside the deciding thread; the
    same decisions, tests/test_pipeline.py), so a large evaluation runs at the batch runner's speed."""
    pipe = build_pipeline(settings, text_encoder=text_encoder, model=model, encode_in_background=stream)
    if log_pairs:
        pipe.pair_log = []
    t0 = time.perf_counter()
    batches = (records[start: start + settings.batch_size] for start in range(0, len(records), settings.batch_size))
    if stream:
        for _ in pipe.process_stream(batches):
            pass
    else:
        for batch in batches:
            pipe.process(batch)
    return pipe, time.perf_counter() - t0


def _table(rows: list[tuple[str, Scores]]) -> str:
    head = ("| method | precision | recall | F1 | B-cubed P | B-cubed R | B-cubed F1 | pred. pairs | "
            "largest cluster |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {name} | {s.precision:.4f} | {s.recall:.4f} | **{s.f1:.4f}** | {s.bcubed_precision:.4f} | "
        f"{s.bcubed_recall:.4f} | {s.bcubed_f1:.4f} | {s.predicted_pairs} | {s.largest_cluster} |\n"
        for name, s in rows)
    return head + body


def evaluate_file(input_path: str | Path, truth_path: str | Path, settings: Settings,
                  model_path: str | None = None, plot: str | None = None, baselines: bool = True,
                  fmt: str | None = None) -> dict[str, Any]:
    records = [r for _, r in iter_records(input_path, settings, fmt) if isinstance(r, Record)]
    truth = load_truth(truth_path, settings.profile.id_field)
    truth = {r.record_id: truth[r.record_id] for r in records if r.record_id in truth}
    records = [r for r in records if r.record_id in truth]
    text = load_text_encoder(settings)  # loaded once, handed to every pipeline below
    rows: list[tuple[str, Scores]] = []
    out: dict[str, Any] = {"records": len(records), "true_pairs": len(true_pairs(truth))}
    ids = [r.record_id for r in records]
    if baselines:
        from consumer.evaluation.baselines import paper_multimodal, string_baseline

        rows.append(("string baseline (SequenceMatcher >= 0.85)", pair_scores(string_baseline(records), ids,
                                                                                truth)))
        rows.append(("paper multimodal replica (0.4/0.35/0.25 > 0.75)",
                     pair_scores(paper_multimodal(records, text), ids, truth)))
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for mode in ("rule", "learned"):
        fusion = dataclasses.replace(settings.fusion, mode=mode,
                                     learned_model=model_path or settings.fusion.learned_model)
        fitted = _fit_without_labels(records, dataclasses.replace(settings, fusion=fusion), text, out)
        pipe, seconds = run_engine(records, dataclasses.replace(settings, fusion=fusion), text, log_pairs=True,
                                   model=fitted)
        label = f"dedup-stream, {mode} fusion" + (" (Fellegi-Sunter fitted without labels)" if fitted else "")
        rows.append((label, cluster_scores(pipe.assignments(), truth)))
        recall, hit, total = candidate_recall(pipe, truth)
        out[f"{mode}_seconds"] = round(seconds, 2)
        out["candidate_recall"] = round(recall, 5)
        out["candidate_pairs_reached"] = [hit, total]
        out[f"{mode}_fusion_version"] = pipe.model_version
        if plot:
            curves[mode] = (*_pair_scores(pipe, truth), pipe.fuser.match_threshold)
    out["methods"] = {name: s.row() for name, s in rows}
    out["table"] = _table(rows) + (f"\ncandidate recall (true pairs reaching scoring): {out['candidate_recall']:.4f}"
                                   f" ({out['candidate_pairs_reached'][0]}/{out['candidate_pairs_reached'][1]}),"
                                   f" k={settings.index.k}, ef={settings.index.ef}\n")
    out["table"] += out.pop("explain", "")
    if plot:
        _plot(curves, out["true_pairs"], plot)
        out["plot"] = plot
    return out


def _fit_without_labels(records: list[Record], settings: Settings, text: Any, out: dict[str, Any]) -> Any:
    """Learned fusion on a profile the shipped model does not fit (person): fit Fellegi-Sunter weights to
    the records as `dedup batch` would (the truth is not used), and add what it learned to the report."""
    from consumer.learn.unsupervised import explain_model, fit_unsupervised, needs_fit

    if not needs_fit(settings, text):
        return None
    model = fit_unsupervised(records, settings, text, source="evaluated file, no labels")
    out["explain"] = "\n" + explain_model(model) + "\n"
    out["fitted_model"] = {k: v for k, v in model.meta.items() if k != "used_features"}
    return model


def _pair_scores(pipe: Pipeline, truth: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Fused score and truth label of every scored candidate pair (for threshold curves)."""
    assert pipe.pair_log is not None
    ids = pipe.store.record_ids
    scores, labels = [], []
    for row, cands, feats in pipe.pair_log:
        if len(cands):
            with pipe.fuser.thread_limits():
                fused, _ = pipe.fuser.score(feats)
            scores.append(fused)
            labels.append(np.array([truth[ids[row]] == truth[ids[int(c)]] for c in cands]))
    return np.concatenate(scores), np.concatenate(labels)


def _plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], n_true: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), squeeze=False)
    for ax, (mode, (scores, labels, thr)) in zip(axes[0], curves.items()):
        grid = np.linspace(0.0, 1.0, 101)
        prec = np.array([labels[scores >= t].mean() if (scores >= t).any() else 1.0 for t in grid])
        rec = np.array([labels[scores >= t].sum() / max(n_true, 1) for t in grid])
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-9), 0)
        ax.plot(grid, prec, label="precision")
        ax.plot(grid, rec, label="recall")
        ax.plot(grid, f1, label="F1", linestyle="--")
        ax.axvline(thr, color="grey", linestyle=":", label=f"default threshold {thr}")
        ax.set_title(f"{mode} fusion: pairwise metrics of scored pairs")
        ax.set_xlabel("match threshold")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

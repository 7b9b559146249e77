"""`dedup label`, and the `--labels` of `dedup train` and `dedup batch`: a model fitted to the user's file
from their answers (`consumer.learn.labelling`, `consumer.learn.label_session`).

    dedup label IN --labels labels.csv                      # answer at the terminal (resumable)
    dedup label IN --labels labels.csv --oracle truth.csv --budget 100   # answers from a truth file
    dedup train IN --labels labels.csv --model-out model.pkl           # the model, for `dedup run --model`
    dedup batch IN --labels labels.csv --out decisions.jsonl --clusters clusters.csv   # fit and run
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from consumer.cli.common import common_flags, given_flags, settings_from_args
from consumer.config import Settings

__all__ = ["add_commands", "cmd_label", "train_from_labels", "pipeline_with_labels"]


def _pool(args: argparse.Namespace, s: Settings) -> Any:
    from consumer.io.columns import check_file
    from consumer.learn.label_session import build_pool

    check_file(args.input, args.format, s.profile)
    print(f"finding candidate pairs in {Path(args.input).name} (one run of the engine) ...", file=sys.stderr)
    return build_pool(args.input, s, args.format)


def cmd_label(args: argparse.Namespace) -> int:
    from consumer.learn.label_session import fit_labels, run_oracle

    s = settings_from_args(args)
    if args.oracle is None and not sys.stdin.isatty():
        from consumer.io.files import InputError

        raise InputError("dedup label asks questions at a terminal and stdin is not one; to label from a truth "
                         "file instead, use --oracle TRUTH --budget N")
    pool = _pool(args, s)
    if args.oracle is not None:
        labels = run_oracle(pool, args.labels, args.oracle, args.budget, args.seed)
        report = fit_labels(pool, labels).report
    else:
        from consumer.cli.label_terminal import rows_by_id, run_terminal

        rows = rows_by_id(args.input, s.profile.id_field, args.format, s.limits.max_record_bytes,
                          s.profile.encoding)
        report = run_terminal(pool, args.labels, rows, seed=args.seed)
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps({"labels": args.labels, **report}))
    nxt = ["dedup", "batch", args.input, *given_flags(args), "--labels", args.labels, "--out", "decisions.jsonl",
           "--clusters", "clusters.csv"]
    print("next: " + shlex.join(nxt), file=sys.stderr)
    return 0


def train_from_labels(args: argparse.Namespace, s: Settings, out: str) -> int:
    """`dedup train IN --labels L --model-out M`."""
    from consumer.engine.fusion import manifest_path
    from consumer.learn.label_session import fit_labels, load_labels_for

    pool = _pool(args, s)
    fit = fit_labels(pool, load_labels_for(pool, args.labels))
    for warning in fit.report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    digest = fit.model.save(out)
    print(json.dumps({"model": out, "manifest": str(manifest_path(out)), "sha256": digest, **fit.report}))
    return 0


def pipeline_with_labels(input_path: str, s: Settings, fmt: str | None, labels_path: str
                         ) -> tuple[Any, dict[str, Any]]:
    """`dedup batch IN --labels L`: the pipeline of the model the labels make, and the summary's model entry."""
    from consumer.encoders import needs_image_model, needs_text_model
    from consumer.io.artifacts import build_pipeline, load_image_encoder, load_text_encoder
    from consumer.learn.label_session import build_pool, fit_labels, load_labels_for

    pool = build_pool(input_path, s, fmt)
    fit = fit_labels(pool, load_labels_for(pool, labels_path))
    for warning in fit.report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    text = load_text_encoder(s, encode_in_background=True) if needs_text_model(s) else None
    image = load_image_encoder(s, encode_in_background=True) if needs_image_model(s) else None
    pipe = build_pipeline(s, text_encoder=text, model=fit.model, image_encoder=image, encode_in_background=True,
                          hold_index_only=False)  # a batch run: see `Pipeline`
    from consumer.learn.unsupervised import bind_population

    bind_population(pipe)
    info = {"fusion": "corrected by labels", "labels": fit.report, "without_labels": pool.model_info,
            "fit_seconds": round(pool.seconds, 3)}
    return pipe, info


def add_commands(sub: Any) -> None:
    """Register `dedup label` (with the shared flags of `consumer.cli.common`)."""
    p = sub.add_parser("label", help="answer a few dozen questions about record pairs; a model for this file "
                                     "from the answers (resumable; --oracle answers from a truth file)")
    p.add_argument("input")
    p.add_argument("--labels", required=True, help="label file: created, or resumed when it exists")
    p.add_argument("--oracle", help="truth file (id,entity per record, or one left_id,right_id row per "
                                    "matching pair) that answers instead of a person")
    p.add_argument("--budget", type=int, default=100, help="with --oracle: answers in the label file at the end")
    p.add_argument("--seed", type=int, default=0)
    common_flags(p)
    p.set_defaults(func=cmd_label)

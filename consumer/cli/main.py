"""`dedup` command line: thin wrappers over the modules, one subcommand per job.

Errors a user can fix (missing file, bad config, missing model) print one line and exit 2; they never
surface as a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from consumer.cli.common import common_flags as _common
from consumer.cli.common import settings_from_args
from consumer.config import DEFAULT_HASH_KEY, ConfigError, Settings
from consumer.engine.fusion import ModelError
from consumer.generate.variants import VARIANTS
from consumer.io.files import InputError

log = logging.getLogger("dedup")


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    truth = Path(args.truth) if args.truth else out.with_suffix(".truth.csv")
    if args.profile == "listing":  # photos are written beside the CSV, in <stem>-images/
        from consumer.generate.listings import write_listings

        write_listings(out, truth, args.n_records, args.seed)
    else:
        from consumer.generate import write_crm

        write_crm(out, truth, args.n_records, args.seed, args.variant)
    print(json.dumps({"records": str(out), "truth": str(truth), "n_records": args.n_records,
                      "seed": args.seed, "variant": args.variant}))
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from consumer.io.batch import run_batch

    s = settings_from_args(args)
    pipeline, labelled = None, None
    if args.labels:
        from consumer.cli.label import pipeline_with_labels
        from consumer.io.columns import check_file

        if args.model or args.save_model:
            raise InputError("--labels fits its own model to INPUT: leave out --model and --save-model "
                             "(`dedup train INPUT --labels L --model-out M` writes it)")
        check_file(args.input, args.format, s.profile)
        pipeline, labelled = pipeline_with_labels(args.input, s, args.format, args.labels)
    summary, _ = run_batch(args.input, args.out, s, rejects_path=args.rejects, fmt=args.format,
                           progress=not args.quiet, save_model=args.save_model, clusters_path=args.clusters,
                           pipeline=pipeline)
    if labelled is not None:
        summary.model = labelled
    if s.encoders.hash_key == DEFAULT_HASH_KEY:  # after the run: an error stays the first (and only) line
        print("warning: encoders.hash_key is the public default; outputs are not protected by a secret "
              "key (set DEDUP_ENCODERS__HASH_KEY, see docs/security.md)", file=sys.stderr)
    undecoded = summary.reject_reasons.get("bad_encoding", 0)
    if undecoded:
        print(f"warning: {undecoded} rows are not valid {s.profile.encoding} (rejected: bad_encoding); if the file "
              "was saved in another encoding (by Excel on Windows: cp1252), pass --encoding", file=sys.stderr)
    # With --out - the decisions own stdout; the summary must not end up among them.
    print(json.dumps(summary.as_dict()), file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from consumer.engine.records import Record
    from consumer.evaluation.evaluate import load_truth
    from consumer.io.batch import iter_records
    from consumer.learn.train import collect_pairs, fit_model

    s = settings_from_args(args)
    out = args.out or args.model_out
    if not out:
        raise InputError("dedup train needs --out (or --model-out): the model file to write")
    if args.labels:
        from consumer.cli.label import train_from_labels

        if args.truth:
            raise InputError("give either a truth file or --labels, not both")
        return train_from_labels(args, s, out)
    if not args.truth:
        raise InputError("dedup train needs a truth file (id column + entity_id) or --labels labels.csv")
    records = [r for _, r in iter_records(args.input, s, args.format) if isinstance(r, Record)]
    truth = load_truth(args.truth, s.profile.id_field)
    x, y, pipe = collect_pairs(records, truth, s)
    model = fit_model(x, y, pipe.comparator.features, pipe.comparator.monotone, seed=args.seed,
                      source=Path(args.input).name)
    digest = model.save(out)
    from consumer.engine.fusion import manifest_path

    print(json.dumps({"model": out, "manifest": str(manifest_path(out)), "sha256": digest,
                      **model.meta}))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit match weights to a file without labels (Fellegi-Sunter by EM) and write them as a model file."""
    from consumer.encoders import needs_image_model, needs_text_model
    from consumer.engine.fusion import manifest_path
    from consumer.engine.records import Record
    from consumer.io.artifacts import load_image_encoder, load_text_encoder
    from consumer.io.batch import iter_records
    from consumer.learn.unsupervised import explain_model, fit_sample, fit_unsupervised

    s = settings_from_args(args)
    text = load_text_encoder(s) if needs_text_model(s) else None
    from consumer.io.columns import check_file

    check_file(args.input, args.format, s.profile)
    records, _ = fit_sample((r for _, r in iter_records(args.input, s, args.format) if isinstance(r, Record)),
                            s, args.sample, args.seed)
    image = load_image_encoder(s) if needs_image_model(s) else None
    model = fit_unsupervised(records, s, text, sample=args.sample, seed=args.seed, source=Path(args.input).name,
                             image_encoder=image)
    digest = model.save(args.out)
    print(explain_model(model), file=sys.stderr)
    print(json.dumps({"model": args.out, "manifest": str(manifest_path(args.out)), "sha256": digest,
                      **{k: v for k, v in model.meta.items() if k not in ("used_features", "variant_slots")}}))
    return 0


def cmd_explain_model(args: argparse.Namespace) -> int:
    """What a model file learned: match weights per comparison level (Fellegi-Sunter), like Splink's chart."""
    from consumer.engine.fusion import LearnedModel
    from consumer.learn.unsupervised import explain_model

    model = LearnedModel.load(args.model)
    if args.json:
        est = model.estimator
        rows = est.explain() if hasattr(est, "explain") else []
        print(json.dumps({"meta": model.meta, "levels": rows}, indent=2))
    else:
        print(explain_model(model))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from consumer.evaluation.report import evaluate_file

    s = settings_from_args(args)
    if args.sizes:
        return _eval_sizes(args, s)
    if not (args.input and args.truth):
        raise ValueError("eval needs INPUT and TRUTH, or --sizes to generate files of several sizes")
    result = evaluate_file(args.input, args.truth, s, model_path=args.model, plot=args.plot,
                           baselines=not args.no_baselines, fmt=args.format)
    print(result["table"])
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    return 0


def _eval_sizes(args: argparse.Namespace, s: Settings) -> int:
    """`dedup eval --sizes 10k,100k`: generated files of each size, final clusters scored
    (consumer.evaluation.scale_eval)."""
    import dataclasses

    from consumer.evaluation.scale_eval import evaluate_sizes, parse_sizes, plot_sizes, write_rows

    sizes = parse_sizes(args.sizes)
    if args.model:
        s = dataclasses.replace(s, fusion=dataclasses.replace(s.fusion, learned_model=args.model))
    rows = evaluate_sizes(sizes, s, seed=args.seed, variant=args.variant, workdir=args.workdir,
                          candidate_recall=not args.no_candidate_recall)
    if args.csv:
        write_rows(args.csv, rows)
    if args.plot and not plot_sizes(rows, args.plot):
        print("warning: matplotlib is not installed; no plot written", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a labelled sample, deduplicate it, and show what came out and how good it is."""
    from consumer.cli.demo import show_demo
    from consumer.evaluation.evaluate import cluster_scores, load_truth
    from consumer.generate import write_crm
    from consumer.io.batch import run_batch

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    data, truth_path = out / "signups.csv", out / "signups.truth.csv"
    print(f"1/3 generating {args.n_records} synthetic CRM signups with ground truth -> {data}")
    write_crm(data, truth_path, args.n_records, args.seed)
    print(f"2/3 deduplicating in arrival order (embedded runner, no Kafka/Redis) -> {out / 'clusters.jsonl'}")
    s = settings_from_args(args)
    summary, pipe = run_batch(data, out / "clusters.jsonl", s, progress=True)
    scores = cluster_scores(pipe.assignments(), load_truth(truth_path))
    print("3/3 results")
    show_demo(data, out / "clusters.jsonl", summary.as_dict(), scores, threshold=pipe.fuser.match_threshold)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dedup", description="Streaming, privacy-preserving duplicate detection.")
    ap.add_argument("--log-level", default="WARNING")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write synthetic CRM signups (or listings) plus a ground-truth file")
    p.add_argument("out", help="output CSV")
    p.add_argument("--profile", choices=["crm-signup", "listing"], default="crm-signup",
                   help="what to generate: CRM signups, or product listings with photos (in <OUT stem>-images/)")
    p.add_argument("--truth", help="truth CSV (default: OUT with .truth.csv)")
    p.add_argument("-n", "--n-records", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="default",
                   help="generator variation: 'heldout' draws other name/city tables, more households and "
                        "namesakes; use it to measure, never to train or tune")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="try it: generate a sample, deduplicate it, show clusters and accuracy")
    p.add_argument("--dir", default="demo", help="where to write the sample and the results")
    p.add_argument("-n", "--n-records", type=int, default=5000)
    p.add_argument("--seed", type=int, default=7)
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("batch", help="deduplicate a CSV/JSONL file in arrival order (no Kafka/Redis)")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="decisions, one JSON line per record ('-' = stdout)")
    p.add_argument("--rejects", help="rejected rows with reasons (default: OUT.rejects.jsonl; rejects.jsonl "
                                     "where OUT is - or a device such as /dev/null)")
    p.add_argument("--clusters", help="also write the final clusters (every merge applied) as CSV: "
                   "record_id,cluster_id,canonical_id")
    p.add_argument("--model", help="learned fusion model file (default: the shipped one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--save-model", help="where match weights fitted to INPUT without labels are kept (profiles "
                                        "the shipped model does not fit, e.g. person)")
    p.add_argument("--labels", help="label file from `dedup label`: fit the model to INPUT corrected by these "
                                    "answers, then run with it")
    _common(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("fit", help="fit match weights to a file without labels (Fellegi-Sunter, EM)")
    p.add_argument("input", help="records of the profile (a sample of the stream, for the service)")
    p.add_argument("--out", required=True, help="model file to write (with its sha256 manifest)")
    p.add_argument("--sample", type=int, default=50_000, help="records used at most (a seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    _common(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("explain-model", help="print what a model learned: match weights per comparison level")
    p.add_argument("model", help="model file (from `dedup fit`, `dedup batch --save-model` or `dedup train`)")
    p.add_argument("--json", action="store_true", help="the table as JSON")
    p.set_defaults(func=cmd_explain_model)

    p = sub.add_parser("train", help="fit the learned fusion model on a labelled file, or on answers "
                                     "about pairs (--labels, from `dedup label`)")
    p.add_argument("input")
    p.add_argument("truth", nargs="?", help="CSV with the id column and entity_id")
    p.add_argument("--labels", help="label file from `dedup label`: the model fitted to INPUT, corrected by it")
    p.add_argument("--out", help="model file to write")
    p.add_argument("--model-out", help="the same as --out")
    p.add_argument("--seed", type=int, default=0)
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="precision/recall/F1 and B-cubed for baselines and this engine")
    p.add_argument("input", nargs="?")
    p.add_argument("truth", nargs="?")
    p.add_argument("--model", help="learned model (train it on a differently seeded file)")
    p.add_argument("--plot", help="write a PNG of precision and recall against the match threshold (with "
                   "--sizes: quality and largest cluster against the file size)")
    p.add_argument("--sizes", help="instead of INPUT/TRUTH: generate files of these sizes (10k,100k,1M) and "
                   "score the engine's final clusters at each")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="default",
                   help="with --sizes: generator variation ('heldout': measure only, never tune on it)")
    p.add_argument("--seed", type=int, default=1, help="with --sizes: generator seed")
    p.add_argument("--workdir", default="eval-sizes", help="with --sizes: where generated files are kept")
    p.add_argument("--csv", help="with --sizes: write one row of figures per size")
    p.add_argument("--no-candidate-recall", action="store_true",
                   help="with --sizes: skip candidate recall (it keeps every scored pair in memory)")
    p.add_argument("--json", help="also write the figures as JSON")
    p.add_argument("--no-baselines", action="store_true", help="skip the string and paper baselines")
    _common(p)
    p.set_defaults(func=cmd_eval)

    _add_service_commands(sub)
    from consumer.cli.api import add_commands as add_api_commands

    add_api_commands(sub, _common)
    from consumer.cli.label import add_commands as add_label_commands

    add_label_commands(sub)
    return ap


def _add_service_commands(sub: Any) -> None:
    """`run`, `export-clusters` and `erase` live with the service; absent until it is installed."""
    try:
        from consumer.cli.erase import add_command as add_erase
        from consumer.cli.service import add_commands
    except ImportError:
        return
    add_commands(sub)
    add_erase(sub)


def main(argv: list[str] | None = None) -> int:
    from consumer.telemetry.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except (ConfigError, InputError, ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # output path unwritable, disk full, ...: one line, no traceback
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

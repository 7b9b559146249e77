"""What every `dedup` subcommand shares: the common flags and the settings they produce. A module of its
own so that the command modules (`consumer.cli.api`, `.service`, `.label`) import it, never `main`, which
imports them: no import cycle.
"""

from __future__ import annotations

import argparse

from consumer.config import BUILTIN_PROFILES, Settings, known_encoding, load_settings

__all__ = ["settings_from_args", "common_flags", "given_flags"]


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings a subcommand runs with: the file and `DEDUP_*` environment, then its CLI flags."""
    s = load_settings(getattr(args, "config", None), profile=getattr(args, "profile", None))
    if getattr(args, "fusion", None):
        s.fusion.mode = args.fusion
    if getattr(args, "device", None):
        s.encoders.device = args.device
    if getattr(args, "text_backend", None):
        s.encoders.text_backend = args.text_backend
    if getattr(args, "model", None):
        s.fusion.learned_model = args.model
    if getattr(args, "encoding", None):
        s.profile.encoding = known_encoding(args.encoding)
    return s


def common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file (see README: Configuration)")
    p.add_argument("--profile", choices=sorted(BUILTIN_PROFILES), help="built-in input profile")
    p.add_argument("--fusion", choices=["rule", "learned"], help="fusion mode (default: learned)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the encoders run")
    p.add_argument("--text-backend", choices=["auto", "transformer", "static"],
                   help="text model: MiniLM transformer or its static distillation (default: auto)")
    p.add_argument("--format", choices=["csv", "jsonl"], help="input format (default: from extension)")
    p.add_argument("--encoding", help="the input file's text encoding, e.g. cp1252 for a file Excel saved on "
                                      "Windows (profile.encoding; default utf-8)")


def given_flags(args: argparse.Namespace) -> list[str]:
    """The `common_flags` given on the command line, as arguments to pass on (a suggested next command must
    read the file the same way: `dedup label x.csv --profile listing` is followed by `dedup batch ...
    --profile listing`, or the batch reads a listing file as CRM signups)."""
    names = ("config", "profile", "fusion", "device", "text_backend", "format", "encoding")
    return [a for n in names if getattr(args, n, None) for a in ("--" + n.replace("_", "-"), str(getattr(args, n)))]


def api_flags(p: argparse.ArgumentParser) -> None:
    """Who may call /v1 and the probes' own port (`dedup serve`, `dedup run`)."""
    p.add_argument("--tokens-file", metavar="PATH",
                   help="bearer tokens for /v1, lines `read|write <token> [label]` (api.tokens_file, "
                        "docs/security.md); on `dedup run` this also turns the API on")
    p.add_argument("--no-auth", action="store_true", default=None,
                   help="serve /v1 without tokens: local use only (api.auth = \"off\"; warned at start); on "
                        "`dedup run` this also turns the API on")
    p.add_argument("--management-port", type=int, metavar="PORT",
                   help="also serve /healthz, /readyz, /metrics alone on this port (api.management_port)")


def apply_api_flags(args: argparse.Namespace, s: Settings) -> None:
    """The `api_flags` given on the command line, over the file and environment settings. Either of
    `--tokens-file` / `--no-auth` also turns the API on beside `dedup run` (service.api): saying who may
    call it is asking for it."""
    if getattr(args, "tokens_file", None):
        s.api.tokens_file = args.tokens_file
        s.api.auth = "tokens"
        s.service.api = True
    if getattr(args, "no_auth", None):
        s.api.auth = "off"
        s.service.api = True
    if getattr(args, "management_port", None) is not None:
        s.api.management_port = args.management_port

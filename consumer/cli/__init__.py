"""The `dedup` command line: thin wrappers over the other packages, one subcommand per job (`main`), the
shared flags (`common`), and the commands of the service (`service`), the HTTP API (`api`) and active
labelling (`label`, with its terminal session `label_terminal`); `demo` prints what `dedup demo` shows.

The top layer: it may import every package; nothing imports it (the entry point is `consumer.cli:main`).
"""

from consumer.cli.main import build_parser, main

__all__ = ["main", "build_parser"]

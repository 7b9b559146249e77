"""dedup-stream: streaming, privacy-preserving duplicate detection.

The package is layered (each subpackage's docstring says what it owns and may import; the rules are
checked by tests/test_architecture.py):

    engine      the pure core: records in, decisions out (no I/O)      encoders   the modality plug-ins
    store       cluster state (memory, Redis)                          io         files, Kafka, events, the batch runner
    learn       fitting models (no labels, truth files, answers)       evaluation measuring the engine
    service     the Kafka service (`dedup run`)                        api        HTTP probes and the /v1 API
    telemetry   metrics and structured logs                            cli        the `dedup` command
    generate    synthetic data                                         config     one typed settings object

Modules that lived directly under `consumer` before this layout keep their old import paths as aliases
(`consumer.pipeline` is `consumer.engine.pipeline`): model files pickled before the move, and plug-ins or
scripts written against the old paths, still load. New code imports the new paths (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"

#: Old module name (under `consumer.`) -> its home now.
MOVED = {
    "api": "api.app",
    "api_cli": "cli.api",
    "artifacts": "io.artifacts",
    "baselines": "evaluation.baselines",
    "batch": "io.batch",
    "blocking": "engine.blocking",
    "clustering": "engine.clustering",
    "comparison": "engine.comparison",
    "cores": "engine.cores",
    "decisions": "engine.decisions",
    "demo": "cli.demo",
    "evaluate": "evaluation.evaluate",
    "fellegi_sunter": "learn.fellegi_sunter",
    "forest": "engine.forest",
    "frequencies": "engine.frequencies",
    "fs_fit": "learn.fs_fit",
    "fusion": "engine.fusion",
    "health": "api.health",
    "index": "engine.index",
    "keeper": "engine.keeper",
    "label_cli": "cli.label",
    "label_session": "learn.label_session",
    "label_terminal": "cli.label_terminal",
    "labelling": "learn.labelling",
    "listing": "io.listing",
    "logs": "telemetry.logs",
    "metrics": "telemetry.metrics",
    "normalize": "engine.normalize",
    "onnx_runtime": "encoders.onnx_runtime",
    "openapi": "api.openapi",
    "pipeline": "engine.pipeline",
    "pipeline_state": "engine.pipeline_state",
    "records": "engine.records",
    "replica": "service.changelog",
    "report": "evaluation.report",
    "scale_eval": "evaluation.scale_eval",
    "scoring": "api.scoring",
    "service": "service.runner",
    "service_batch": "service.batch",
    "service_cli": "cli.service",
    "service_deps": "service.deps",
    "service_guard": "service.guard",
    "service_replica": "service.replica",
    "service_state": "service.state",
    "service_sync": "service.sync",
    "snapshot": "service.snapshot",
    "stages": "engine.stages",
    "state": "engine.state",
    "titles": "engine.titles",
    "train": "learn.train",
    "unsupervised": "learn.unsupervised",
}


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `consumer.<old name>` to the module's new home: the same module object, not a copy."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, rest = fullname.partition(".")
        if prefix != __name__ or rest not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


if not any(isinstance(f, _MovedModule) for f in sys.meta_path):
    sys.meta_path.append(_MovedModule())

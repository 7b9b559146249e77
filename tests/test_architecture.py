"""Module boundaries (issue 9): stores import nothing from the engine, and no module reaches into another
object's private names.

Why a test: both rules were broken once by code that worked (a store importing `RecordState` through the
whole `Pipeline`; the service reading `pipe.fuser.model`), and nothing but review noticed. An AST walk is
cheap and says exactly which line broke a rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "consumer"
#: What `consumer/store/` may import from the package: only its own modules.
STORE_ALLOWED = ("consumer.store",)
#: Receivers whose private names a module may use: its own instance/class, and the tuple helpers of the
#: standard library whose public API is underscore-named (`namedtuple._replace`, `._asdict`, `._fields`).
OWN_RECEIVERS = {"self", "cls", "super"}
#: librdkafka's local error codes are public constants with a leading underscore (`KafkaError._TRANSPORT`).
LIBRARY_RECEIVERS = {"KafkaError"}
#: Modules allowed to read a third-party object's internals, each for a stated reason: forest.py reproduces
#: scikit-learn's HistGradientBoosting prediction from its fitted trees (bit-equal, tests/test_forest.py)
#: and falls back to `predict_proba` for any layout it does not recognise.
THIRD_PARTY_INTERNALS = {"consumer/engine/forest.py"}
PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_store_imports_nothing_from_the_engine() -> None:
    bad = []
    for path in (PACKAGE / "store").glob("*.py"):
        for line, name in _imports(ast.parse(path.read_text())):
            if name.startswith("consumer") and not name.startswith(STORE_ALLOWED):
                bad.append(f"{path.name}:{line} imports {name}")
    assert not bad, bad


def _receiver(node: ast.expr) -> str | None:
    """The root name of an attribute chain (`a` in `a.b.c`), or 'super' for `super().x`."""
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super":
        return "super"
    return node.id if isinstance(node, ast.Name) else None


def test_no_module_reaches_into_another_objects_private_names() -> None:
    bad = []
    for path in _modules():
        if str(path.relative_to(PACKAGE.parent)) in THIRD_PARTY_INTERNALS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORE:
                continue
            # `self._x` is the object's own state; `self.other._x` is reaching into another object.
            if isinstance(node.value, ast.Name) and node.value.id in OWN_RECEIVERS:
                continue
            if isinstance(node.value, ast.Call) and _receiver(node.value) == "super":
                continue
            if isinstance(node.value, ast.Name) and node.value.id in LIBRARY_RECEIVERS:
                continue
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{name}")
    assert not bad, "private names used across objects:\n" + "\n".join(bad)


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("consumer"):
                bad += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


# -- layers (issue 22) ----------------------------------------------------------------------------------------
#: What each subpackage may import from the package (every import, lazy ones included). The engine and the
#: encoders are one layer (the pipeline runs the encoders; encoders use the engine's normalisation).
CORE = ("consumer.engine", "consumer.encoders", "consumer.config", "consumer.config_values",
        "consumer.store.memory", "consumer.store.record_state")
LAYERS = {
    "engine": CORE,
    "encoders": CORE,
    "store": ("consumer.store",),
    "generate": ("consumer.generate",),
    "telemetry": (*CORE, "consumer.telemetry", "consumer.io.events"),
    "io": (*CORE, "consumer.io", "consumer.learn"),
    "learn": (*CORE, "consumer.learn", "consumer.io", "consumer.evaluation.evaluate"),  # pure scores
    "evaluation": (*CORE, "consumer.evaluation", "consumer.learn", "consumer.io", "consumer.generate"),
    "api": (*CORE, "consumer.api", "consumer.store", "consumer.io", "consumer.telemetry"),
    "service": (*CORE, "consumer.service", "consumer.store", "consumer.io", "consumer.api", "consumer.telemetry",
                "consumer.learn"),
    "cli": ("consumer",),
}
#: Third-party modules the engine must never import: it does no I/O of its own.
ENGINE_FORBIDDEN = ("confluent_kafka", "redis", "falcon", "wsgiref", "http", "socket", "urllib", "requests")


def _all_imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of a module (top-level and inside functions), as (line, module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module == "consumer":  # `from consumer import x` names submodules
                out += [(node.lineno, f"consumer.{a.name}") for a in node.names]
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_lives_in_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "config.py", "config_values.py")]
    assert not loose, f"modules directly under consumer/ (put them in a layer subpackage): {loose}"
    for pkg in LAYERS:
        init = PACKAGE / pkg / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{pkg}: no package docstring"


def test_layers_import_only_what_they_may() -> None:
    bad = []
    for pkg, allowed in LAYERS.items():
        for path in (PACKAGE / pkg).rglob("*.py"):
            for line, name in _all_imports(path):
                if name.startswith("consumer") and not name.startswith(allowed):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
                if pkg in ("engine", "encoders") and name.split(".")[0] in ENGINE_FORBIDDEN:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} (the engine does no I/O)")
    assert not bad, "layer boundaries broken:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    """Module-level cycles over every import, lazy ones included (a lazy import only hides a cycle)."""
    modules = {_module_name(p): p for p in _modules()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for _, imported in _all_imports(path):
            # `from consumer.x import y` may name a submodule y or an attribute: resolve to the longest module
            target = next((c for c in (imported, imported.rsplit(".", 1)[0]) if c in modules), None)
            if target and target != name and not name.startswith(target + ".") and target != "consumer":
                graph[name].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


LONG_REASON = "Why this module is long"


def test_no_module_over_about_400_lines_without_a_stated_reason() -> None:
    root = PACKAGE.parent
    paths = [*_modules(), *sorted((root / "export").glob("*.py")), *sorted((root / "benchmarks").glob("*.py")),
             *sorted((root / "loadtest").glob("*.py"))]
    long = [f"{p.relative_to(root)} ({n} lines)" for p in paths
            if (n := len(p.read_text().splitlines())) > 400 and LONG_REASON not in p.read_text()]
    assert not long, f"split these, or say in the docstring '{LONG_REASON}: ...': {long}"

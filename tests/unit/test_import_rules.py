"""Import direction (DESIGN.md section 3): pure cores import no Ray or gRPC, so they are testable without a
cluster; the shard's store and the data pipeline do not even need torch."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PURE = ["shark.data.criteo", "shark.data.tabular", "shark.data.source", "shark.data.synthetic",
        "shark.data.transforms", "shark.model", "shark.metrics", "shark.train.local", "shark.wire.tensors",
        "ps.store", "ps.checkpoint", "ps.security"]
NO_TORCH = ["ps.store", "ps.checkpoint", "shark.row_init", "shark.wire.tensors", "shark.data.source", "shark.data.synthetic"]


def _imported_roots(modules: list[str], roots: tuple[str, ...]) -> str:
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))\n")
    # cwd = repo root, so `ps` imports even when the package is not pip-installed
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO).stdout.strip()


def test_pure_modules_do_not_import_ray_or_grpc():
    assert _imported_roots(PURE, ("ray", "grpc")) == ""


@pytest.mark.parametrize("module", NO_TORCH)
def test_numpy_only_modules_do_not_import_torch(module):
    assert _imported_roots([module], ("torch",)) == ""

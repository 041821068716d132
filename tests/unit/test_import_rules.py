"""The pure core must not import Ray or gRPC (DESIGN.md section 3): it stays testable without a cluster."""

import subprocess
import sys

PURE = ["shark.data.criteo", "shark.data.tabular", "shark.data.source", "shark.data.synthetic",
        "shark.data.transforms", "shark.model", "shark.metrics", "shark.train.local"]


def test_pure_modules_do_not_import_ray_or_grpc():
    code = ("import sys, importlib\n"
            f"for m in {PURE!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'grpc'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"pure modules pulled in: {out}"

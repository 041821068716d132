#!/usr/bin/env bash
# Install SHARK-PS (editable) into the active Python environment.
#   bash deploy/install.sh          the package
#   bash deploy/install.sh test     the package and the test tools
# If torch >= 2.13 is already importable it is kept (a newer one included). Otherwise torch is pinned by
# deploy/constraints-cpu.txt to 2.13.0, the CPU build, so pip does not fetch a multi-GB CUDA build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
target="$root"
if [ -n "${1:-}" ]; then target="$root[$1]"; fi

if "$py" - <<'PY' 2>/dev/null
import sys
import torch
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 13) else 1)
PY
then
  echo "install.sh: keeping the installed torch" >&2
  "$py" -m pip install -e "$target"
else
  echo "install.sh: no torch >= 2.13 here; installing torch 2.13.0 (CPU) via deploy/constraints-cpu.txt" >&2
  "$py" -m pip install -c "$root/deploy/constraints-cpu.txt" -e "$target"
fi
# pyenv installs console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

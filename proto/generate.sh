#!/bin/sh
# Regenerate the Python modules of the wire contract. Run from anywhere; needs grpcio-tools==1.85.1
# (pip install -e '.[test]'). Output lands in shark/wire/v1/ with package-qualified imports because the include
# root is proto/ and the .proto files sit under proto/shark/wire/v1/. tests/unit/test_wire.py fails if the
# committed files differ from what this produces.
set -eu
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/shark/wire/v1/ps.proto

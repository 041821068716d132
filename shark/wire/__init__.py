"""The wire contract of the parameter server: the gRPC data plane between training workers and PS shards.

- ``proto/shark/wire/v1/ps.proto`` is the source of truth (package ``shark.wire.v1``).
- ``shark/wire/v1/ps_pb2.py``, ``ps_pb2.pyi`` and ``ps_pb2_grpc.py`` are generated from it and committed.
  Regenerate with grpcio-tools==1.85.1 (the ``test`` extra), from the repository root::

      python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/shark/wire/v1/ps.proto

  (``proto/generate.sh`` runs exactly this.) The include root is ``proto/`` and the file sits under
  ``shark/wire/v1/``, so generated imports read ``from shark.wire.v1 import ps_pb2``; ``proto/`` has no
  ``__init__.py`` and is never importable (PyPI's proto-plus owns the top-level name ``proto``).
  ``tests/unit/test_wire.py`` fails when the committed modules differ from a fresh generation.
- ``shark.wire.tensors`` turns numpy arrays into ``Tensor`` messages and back, validating everything.

Importing ``shark.wire`` or ``shark.wire.tensors`` needs protobuf only; ``ps_pb2_grpc`` is the one module that
imports grpc (only servicers and clients use it).
"""

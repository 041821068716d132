"""Generated protobuf/gRPC modules of wire version 1 (see ``shark.wire``). Do not edit the ``*_pb2*`` files."""

"""The parameter-server shard: a pure tiered row store (ps.store), later a gRPC servicer and a Ray actor on top."""

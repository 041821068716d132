"""The pure parameter-server row store: tiered (fp32/fp16/int8) rows, optimizer, idempotent pushes.

Numpy only: no torch, grpc or ray imports (a test checks). Rows start from shark.row_init, the same
deterministic values as the single-process EmbeddingStore.
"""

from ps.store.config import TableConfig
from ps.store.errors import InvalidRequest, SeqOutOfWindow, TableExists, UnknownTable
from ps.store.row_store import PushPart, PushResult, RowStore
from shark.quant import TIER_FP16, TIER_FP32, TIER_INT8

__all__ = ["TIER_FP16", "TIER_FP32", "TIER_INT8", "InvalidRequest", "PushPart", "PushResult", "RowStore",
           "SeqOutOfWindow", "TableConfig", "TableExists", "UnknownTable"]

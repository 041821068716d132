"""DLRM with removable fields, and the embedding store it looks rows up in."""

from shark.model.dlrm import DENSE_FIELD, DLRMConfig, DenseDLRM
from shark.model.embedding import EmbeddingStore

__all__ = ["DENSE_FIELD", "DLRMConfig", "DenseDLRM", "EmbeddingStore"]

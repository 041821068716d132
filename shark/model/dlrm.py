"""DLRM's dense part: bottom MLP, pairwise dot interaction, top MLP.

The embedding lookup is not in here: `forward` takes the looked-up rows, so the same module runs on rows from a
local `EmbeddingStore` or on rows pulled from parameter-server shards. The dense features' bottom-MLP output is a
field like any table (named `DENSE_FIELD`), so F-Permutation can score and drop it too.

Top-MLP input layout (what `drop_field` slices): [dense vector (d) if the dense field is active] followed by one
dot product per pair (i, j), i > j, of active fields in field order (the strict lower triangle, row by row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

DENSE_FIELD = "dense"


@dataclass(frozen=True)
class DLRMConfig:
    n_dense: int = 13
    table_names: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
    embedding_dim: int = 16
    bottom: tuple[int, ...] = (64,)  # hidden sizes; the bottom MLP always ends in embedding_dim
    top: tuple[int, ...] = (256, 128)  # hidden sizes; the top MLP always ends in 1 logit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_dense < 0 or self.embedding_dim < 1:
            raise ValueError("n_dense must be >= 0 and embedding_dim >= 1")
        if len(set(self.table_names)) != len(self.table_names) or DENSE_FIELD in self.table_names:
            raise ValueError(f"table names must be unique and not {DENSE_FIELD!r}: {self.table_names}")
        if any(h < 1 for h in self.bottom + self.top):
            raise ValueError("MLP hidden sizes must be >= 1")
        if self.n_dense == 0 and len(self.table_names) < 2:
            raise ValueError("need at least two fields for a pairwise interaction")


def _mlp(sizes: list[int], final_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DenseDLRM(nn.Module):
    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        torch.manual_seed(config.seed)
        self.config = config
        d = config.embedding_dim
        self.has_dense = config.n_dense > 0
        self.bottom = _mlp([config.n_dense, *config.bottom, d], final_relu=True) if self.has_dense else None
        self.fields: list[str] = ([DENSE_FIELD] if self.has_dense else []) + list(config.table_names)
        self.top = _mlp([self._top_in(), *config.top, 1], final_relu=False)
        # Strict lower triangle of the (F, F) interaction matrix, as index buffers.
        self._set_pairs()

    @property
    def tables(self) -> list[str]:
        """Active embedding tables, in the order `forward` expects their rows."""
        return [f for f in self.fields if f != DENSE_FIELD]

    def _top_in(self) -> int:
        n = len(self.fields)
        return (self.config.embedding_dim if self.has_dense else 0) + n * (n - 1) // 2

    def _set_pairs(self) -> None:
        n = len(self.fields)
        rows, cols = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("_pair_i", rows, persistent=False)
        self.register_buffer("_pair_j", cols, persistent=False)
        # the same pairs as positions in the flattened (F * F) matrix: index_select's backward is one index_add,
        # about 25% cheaper than two-tensor advanced indexing's (F-Permutation's pass is a forward and a backward)
        self.register_buffer("_pair_flat", rows * n + cols, persistent=False)

    def field_vectors(self, dense: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """(B, n_dense), (B, T, d) -> (B, F, d): one vector per active field, dense field first."""
        if self.bottom is None:
            return emb
        return torch.cat([self.bottom(dense).unsqueeze(1), emb], dim=1)

    def head(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, F, d) field vectors -> (B,) logits. F-Permutation differentiates w.r.t. `vectors`."""
        z = torch.bmm(vectors, vectors.transpose(1, 2))  # (B, F, F)
        pairs = z.flatten(1).index_select(1, self._pair_flat)  # (B, F(F-1)/2), row-major lower triangle
        x = torch.cat([vectors[:, 0, :], pairs], dim=1) if self.has_dense else pairs
        return self.top(x).squeeze(1)

    def forward(self, dense: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """dense: (B, n_dense) float; emb: (B, T, d) rows of the active tables in `self.tables` order."""
        if emb.shape[1] != len(self.tables):
            raise ValueError(f"expected rows for {len(self.tables)} tables, got {emb.shape[1]}")
        return self.head(self.field_vectors(dense, emb))

    def drop_field(self, name_or_index: str | int) -> str:
        """Remove a field: its table (or the bottom MLP), its interaction terms and the top-MLP input weights
        that read them. Remaining weights are kept. Returns the dropped field's name."""
        name = self.fields[name_or_index] if isinstance(name_or_index, int) else name_or_index
        if name not in self.fields:
            raise KeyError(f"no active field {name!r}; active: {self.fields}")
        if len(self.fields) <= 2:
            raise ValueError("cannot drop below two fields (no interaction would remain)")
        k = self.fields.index(name)
        keep_cols = self._kept_top_columns(k)
        first = self.top[0]
        new_first = nn.Linear(len(keep_cols), first.out_features)
        with torch.no_grad():
            new_first.weight.copy_(first.weight[:, keep_cols])
            new_first.bias.copy_(first.bias)
        self.top[0] = new_first
        self.fields.pop(k)
        if name == DENSE_FIELD:
            self.bottom = None
            self.has_dense = False
        self._set_pairs()
        return name

    def _kept_top_columns(self, k: int) -> torch.Tensor:
        """Top-MLP input columns that survive dropping field index k."""
        d = self.config.embedding_dim if self.has_dense else 0
        pair_keep = (self._pair_i != k) & (self._pair_j != k)
        dense_keep = torch.full((d,), not (self.has_dense and k == 0), dtype=torch.bool)
        return torch.nonzero(torch.cat([dense_keep, pair_keep])).squeeze(1)

"""A local store of embedding tables with row-wise Adagrad, updated sparsely.

This is what the single-process trainer looks rows up in, and the shape of what a parameter-server shard does:
deduplicate ids, gather the unique rows, and apply segment-summed gradients to just those rows.

Rows are initialised lazily on first touch from a hash of (table, row), so a table of 2^20 rows that sees 10k
distinct values costs pages for those rows only (the arrays start as untouched zero pages), and every process
initialises a given row identically.
"""

from __future__ import annotations

import numpy as np
import torch

from shark.row_init import hashed_uniform, row_keys, table_salts


class EmbeddingStore:
    def __init__(self, names: list[str], capacities: list[int], dim: int, *, lr: float = 0.05,
                 eps: float = 1e-8, init_scale: float = 0.05, seed: int = 0) -> None:
        if len(names) != len(capacities) or not names:
            raise ValueError("need one capacity per table name, and at least one table")
        self.names = list(names)
        self.capacities = [int(c) for c in capacities]
        self.dim, self.lr, self.eps, self.init_scale, self.seed = dim, lr, eps, init_scale, seed
        self._build()

    def _build(self) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(self.capacities)]).astype(np.int64)
        n = int(self.offsets[-1])
        # np.zeros maps untouched zero pages: memory is spent only on rows that are used.
        self.weight = torch.from_numpy(np.zeros((n, self.dim), dtype=np.float32))
        self.state = torch.from_numpy(np.zeros(n, dtype=np.float32))  # row-wise Adagrad: sum of mean g^2
        self.touched = np.zeros(n, dtype=bool)
        self._table_keys = table_salts(self.names)  # (T,) init salt per table name

    def global_ids(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) per-table row ids -> (B, T) rows of the concatenated store."""
        return np.asarray(ids, dtype=np.int64) + self.offsets[:-1][None, :]

    def pull(self, ids: np.ndarray, create: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deduplicate and gather. Returns (unique global rows (U,), inverse (B, T), rows (U, d) copy).

        create=False (evaluation) returns never-trained rows at their initial value without storing them."""
        g = self.global_ids(ids)
        uniq, inverse = np.unique(g, return_inverse=True)
        u = torch.from_numpy(uniq)
        new = ~self.touched[uniq]
        if create and new.any():
            self.weight[u[torch.from_numpy(new)]] = self._initial_rows(uniq[new])
            self.touched[uniq[new]] = True
        rows = self.weight.index_select(0, u)
        if not create and new.any():
            rows[torch.from_numpy(new)] = self._initial_rows(uniq[new])
        return u, torch.from_numpy(inverse.reshape(g.shape)), rows

    def _initial_rows(self, global_rows: np.ndarray) -> torch.Tensor:
        """(N,) global rows -> (N, d) their deterministic initial values, keyed by (table name, local row)."""
        table = np.searchsorted(self.offsets, global_rows, side="right") - 1
        local = (global_rows - self.offsets[table]).astype(np.uint64)
        keys = row_keys(self._table_keys[table], local)
        return torch.from_numpy(hashed_uniform(keys, self.dim, self.init_scale, self.seed))

    def push(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        """Row-wise Adagrad on unique rows. rows: (U,) int64 unique; grads: (U, d) summed per row."""
        g = grads.detach()
        self.state.index_add_(0, rows, g.pow(2).mean(dim=1))
        step = g * (self.lr / (self.state.index_select(0, rows) + self.eps).sqrt()).unsqueeze(1)
        self.weight.index_add_(0, rows, -step)

    def drop_table(self, name: str) -> None:
        """Delete a table: its rows, optimizer state and index go; the other tables keep theirs."""
        k = self.names.index(name)
        lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
        keep = np.r_[0:lo, hi:int(self.offsets[-1])]
        weight, state, touched = self.weight.numpy()[keep], self.state.numpy()[keep], self.touched[keep]
        self.names.pop(k)
        self.capacities.pop(k)
        self._build()
        self.weight.copy_(torch.from_numpy(weight))
        self.state.copy_(torch.from_numpy(state))
        self.touched[:] = touched

    def table_rows(self, name: str) -> torch.Tensor:
        """A view of one table's weights, (capacity, d)."""
        k = self.names.index(name)
        return self.weight[int(self.offsets[k]):int(self.offsets[k + 1])]

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of rows actually touched (payload, optimizer state, touched map), per the arrays' dtypes."""
        used = int(self.touched.sum())
        return {
            "rows_used": used,
            "payload": used * self.dim * self.weight.element_size(),
            "optimizer_state": used * self.state.element_size(),
            "index": self.touched.nbytes,
        }

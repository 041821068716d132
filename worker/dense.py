"""DenseChunks: the model's dense (MLP) parameters as rows of a parameter-server table.

The flat parameter vector (P,) is cut into rows of `chunk` floats (the last one zero-padded), so the dense part
travels through the same Pull/Push path as embedding rows, is sharded across shards by the same router, and is
updated on the shards by element-wise Adam (the local engine's optimizer for the MLPs). Each worker pulls the
current parameters before a step and pushes its gradient after it: asynchronous data-parallel SGD whose
staleness is bounded by the push window.

The table's layout is fixed when it is created. When F-Permutation deletes a field, the model loses parameters
(its interaction columns in the top MLP, or the bottom MLP) but the table keeps its layout: `positions` maps each
remaining parameter to its place in the table, so surviving weights keep their values and their Adam moments,
and every worker derives the same mapping locally.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

DENSE_TABLE = "__dense__"


class DenseChunks:
    def __init__(self, model: nn.Module, chunk: int = 4096, positions: np.ndarray | None = None,
                 table_size: int | None = None) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.size = sum(p.numel() for p in self.params)  # P: the model's parameters now
        self.positions = np.arange(self.size, dtype=np.int64) if positions is None else positions  # (P,)
        if self.positions.shape != (self.size,):
            raise ValueError(f"positions must map all {self.size} parameters, got {self.positions.shape}")
        self.table_size = self.size if table_size is None else table_size  # floats laid out in the table
        self.chunk = chunk
        self.n_rows = -(-self.table_size // chunk)
        self.ids = np.arange(self.n_rows, dtype=np.int64)

    def rows(self) -> np.ndarray:
        """Current parameters -> (n_rows, chunk) float32 (zeros where no parameter lives)."""
        return self._scatter(torch.nn.utils.parameters_to_vector(self.params).detach().numpy())

    def load(self, rows: np.ndarray) -> None:
        """(n_rows, chunk) pulled rows -> the model's parameters (in place, no autograd)."""
        flat = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1)[self.positions]
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.from_numpy(flat), self.params)

    def grads(self) -> np.ndarray:
        """The parameters' .grad -> (n_rows, chunk) float32 (zeros where a parameter got no gradient)."""
        g = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in self.params]
        return self._scatter(torch.cat(g).numpy())

    def _scatter(self, flat: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_rows * self.chunk, dtype=np.float32)
        out[self.positions] = flat
        return out.reshape(self.n_rows, self.chunk)

    def after_drop(self, model: nn.Module, drop: "callable") -> "DenseChunks":
        """Apply `drop(model)` (e.g. lambda m: m.drop_field("C3")) to `model` and return the chunks of the smaller
        model, same table layout: a copy of the model holding each parameter's index instead of its value goes
        through the same drop, and what survives says where every remaining parameter lives."""
        if self.size >= 1 << 24:
            raise ValueError("dense models of 2^24 parameters or more are not supported (index probe in float32)")
        probe = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.arange(self.size, dtype=torch.float32),
                                                [p for p in probe.parameters() if p.requires_grad])
        drop(probe)
        drop(model)
        kept = torch.nn.utils.parameters_to_vector([p for p in probe.parameters() if p.requires_grad])
        return DenseChunks(model, self.chunk, self.positions[kept.round().long().numpy()], self.table_size)

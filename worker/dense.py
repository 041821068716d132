"""DenseChunks: the model's dense (MLP) parameters as rows of a parameter-server table.

The flat parameter vector (P,) is cut into rows of `chunk` floats (the last one zero-padded), so the dense part
travels through the same Pull/Push path as embedding rows, is sharded across shards by the same router, and is
updated on the shards by element-wise Adam (the local engine's optimizer for the MLPs). Each worker pulls the
current parameters before a step and pushes its gradient after it: asynchronous data-parallel SGD whose
staleness is bounded by the push window.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DENSE_TABLE = "__dense__"


class DenseChunks:
    def __init__(self, model: nn.Module, chunk: int = 4096) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.size = sum(p.numel() for p in self.params)  # P
        self.chunk = chunk
        self.n_rows = -(-self.size // chunk)
        self.ids = np.arange(self.n_rows, dtype=np.int64)

    def rows(self) -> np.ndarray:
        """Current parameters -> (n_rows, chunk) float32."""
        return self._pad(torch.nn.utils.parameters_to_vector(self.params).detach().numpy())

    def load(self, rows: np.ndarray) -> None:
        """(n_rows, chunk) pulled rows -> the model's parameters (in place, no autograd)."""
        flat = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1)[: self.size])
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat, self.params)

    def grads(self) -> np.ndarray:
        """The parameters' .grad -> (n_rows, chunk) float32 (zeros where a parameter got no gradient)."""
        g = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in self.params]
        return self._pad(torch.cat(g).numpy())

    def _pad(self, flat: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_rows * self.chunk, dtype=np.float32)
        out[: self.size] = flat
        return out.reshape(self.n_rows, self.chunk)

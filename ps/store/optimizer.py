"""Optimizer steps on gathered fp32 rows. Row-wise Adagrad mirrors shark.model.embedding.EmbeddingStore.push."""

from __future__ import annotations

import numpy as np


def adagrad(w: np.ndarray, acc: np.ndarray, g: np.ndarray, lr: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """w (U, d) float32 rows, acc (U,) float32 accumulators, g (U, d) summed grads -> (new w, new acc).

    acc += mean(g^2) over the row; w -= lr * g / sqrt(acc + eps) (eps inside the sqrt, as EmbeddingStore)."""
    acc = acc + np.add.reduce(g * g, axis=1) / np.float32(g.shape[1])  # = np.mean, without its overhead
    step = g * (np.float32(lr) / np.sqrt(acc + np.float32(eps)))[:, None]
    return w - step, acc


def sgd(w: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
    return w - np.float32(lr) * g

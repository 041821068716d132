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


def adam(w: np.ndarray, m: np.ndarray, v: np.ndarray, t: np.ndarray, g: np.ndarray, lr: float, beta1: float,
         beta2: float, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Element-wise Adam with a per-row step count. w, m, v, g (U, d) float32, t (U,) int64 updates applied so far
    -> (new w, m, v, t). The operation order follows torch.optim.Adam's single-tensor path (amsgrad=False, no
    weight decay) so results agree to float32 rounding: m.lerp_(g, 1-b1); v = v*b2 + (1-b2)*g*g;
    p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps). Bias corrections are float64 per row, like torch's
    Python-float scalars."""
    t = t + 1
    m = m + np.float32(1.0 - beta1) * (g - m)
    v = v * np.float32(beta2) + np.float32(1.0 - beta2) * (g * g)
    tf = t.astype(np.float64)
    step_size = (lr / (1.0 - np.power(beta1, tf))).astype(np.float32)
    bc2_sqrt = np.sqrt(1.0 - np.power(beta2, tf)).astype(np.float32)
    denom = np.sqrt(v) / bc2_sqrt[:, None] + np.float32(eps)
    return w - step_size[:, None] * (m / denom), m, v, t

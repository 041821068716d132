"""The hidden teacher: p(click | x) = sigmoid(logit), with known per-field importance.

logit = bias
      + sum over strong/weak categorical fields f of effect_f(x_f)
      + sum over dense fields d of scale_d * z_d + curve_d * (z_d^2 - 1) / sqrt(2)
      + sum over configured pairs (a, b) of w_ab / sqrt(k) * <u_a(x_a), u_b(x_b)>

effect_f(v) for a head value (frequent enough to be learnable, see SynthConfig.head_min_snr) comes from a stored
N(0, 1) draw, normalised so that over the field's head distribution it has mean 0 and std 1, times scale_f.
A tail value's effect is a hash-derived N(0, 1)-like number times scale_f * tail_signal: rare values carry a
little signal that a model which drops or coarsely quantises rare rows loses. A missing value has its own effect.
Latent vectors u (k dims) are built the same way (centred and scaled per dimension, so the pair terms carry no
main effect). z_d is the standardised sign(x) log1p(|x|) with missing read as 0, exactly what `log_transform`
feeds the model (standardisation constants and the bias come from a calibration sample of the seed's own data).
All scales are multiplied by SynthConfig.signal_scale (and dense_scale / interaction_scale).
Noise and duplicate fields are not read at all: noise values are independent of the label, and a duplicate holds
no information beyond its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shark.data.synthetic.config import SynthConfig
from shark.data.synthetic.sampling import PowerLaw, field_salts, hash_normals, hash_uniforms
from shark.data.transforms import log_transform

_TAG_EFFECT, _TAG_LATENT, _TAG_TABLES = 0x7E4C, 0x1A7E, 0x7AB1
MAX_HEAD = 1 << 20  # cap on head values per field (stored in tables): bounds the teacher's memory


@dataclass
class TeacherParts:
    """The logit's pieces for B rows, kept apart so shuffling one field only permutes its own piece."""

    cat: np.ndarray  # (B, C) float32 main effect of each categorical field (0 for noise / duplicate fields)
    tail: np.ndarray  # (B, C) bool, the field's value is a tail (rare) value
    latent: dict[int, np.ndarray]  # field -> (B, k) float32 latent vectors of interaction fields
    dense: np.ndarray  # (B, D) float32 per-field dense terms

    def __len__(self) -> int:
        return int(self.cat.shape[0])

    @staticmethod
    def concat(parts: list["TeacherParts"]) -> "TeacherParts":
        return TeacherParts(cat=np.concatenate([p.cat for p in parts]), tail=np.concatenate([p.tail for p in parts]),
                            latent={f: np.concatenate([p.latent[f] for p in parts]) for f in parts[0].latent},
                            dense=np.concatenate([p.dense for p in parts]))


class Teacher:
    def __init__(self, config: SynthConfig, laws: list[PowerLaw]) -> None:
        cfg = self.config = config
        sig = cfg.signal_scale
        k = cfg.interaction_rank
        self.active = [f for f, c in enumerate(cfg.cat) if c.role in ("strong", "weak")]
        self.pairs = [(cfg.cat_index(a), cfg.cat_index(b), w * cfg.interaction_scale * sig / math.sqrt(k))
                      for a, b, w in cfg.interactions]
        latent_fields = sorted({f for a, b, _ in self.pairs for f in (a, b)})
        self.effect_salts = field_salts(cfg.seed, cfg.n_cat, _TAG_EFFECT)
        self.latent_salts = field_salts(cfg.seed, cfg.n_cat, _TAG_LATENT)
        self.head: dict[int, int] = {}
        self.scale: dict[int, float] = {}
        # Tables are laid out [missing, head values 0..H-1, zero row for tail values]: row = clip(index + 1, 0, H + 1).
        self.effects: dict[int, np.ndarray] = {}  # f -> (H + 2,) float32
        self.latents: dict[int, np.ndarray] = {}  # f -> (H + 2, k) float32
        for f in self.active:
            law = laws[f]
            self.scale[f] = cfg.cat[f].scale * sig
            r = cfg.positive_rate
            p_min = cfg.head_min_snr / (cfg.reference_rows * max(self.scale[f], 1e-9) ** 2 * r * (1.0 - r))
            h = min(law.head_size(p_min), MAX_HEAD)
            self.head[f] = h
            rng = np.random.default_rng([cfg.seed, _TAG_TABLES, f])
            w = law.pmf(np.arange(h)) if h else np.zeros(0)
            eff = _normalised(rng.standard_normal((h, 1)), w)[:, 0] * self.scale[f]
            miss = rng.standard_normal() * self.scale[f]
            self.effects[f] = np.concatenate([[miss], eff, [0.0]]).astype(np.float32)
            if f in latent_fields:
                lat = _normalised(rng.standard_normal((h, k)), w)
                self.latents[f] = np.concatenate([rng.standard_normal((1, k)), lat, np.zeros((1, k))]).astype(
                    np.float32)
        self.w_lin = np.array([d.scale for d in cfg.dense], dtype=np.float32) * np.float32(sig * cfg.dense_scale)
        self.w_curve = np.array([d.curve for d in cfg.dense], dtype=np.float32) * np.float32(
            sig * cfg.dense_scale / math.sqrt(2.0))
        self.dense_mean = np.zeros(cfg.n_dense, dtype=np.float32)
        self.dense_std = np.ones(cfg.n_dense, dtype=np.float32)
        self.bias = 0.0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.effects.values()) + sum(a.nbytes for a in self.latents.values())

    def fit_dense(self, dense: np.ndarray) -> None:
        """Standardisation constants of the transformed dense features, from a calibration sample (N, D)."""
        t = log_transform(dense)
        self.dense_mean = t.mean(axis=0).astype(np.float32)
        self.dense_std = np.maximum(t.std(axis=0), 1e-6).astype(np.float32)

    def fit_bias(self, parts: TeacherParts, positive_rate: float) -> None:
        """Bisection on the bias so that the mean of p over the calibration sample is `positive_rate`."""
        self.bias = 0.0
        s = self.logit(parts).astype(np.float64)
        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.mean(_sigmoid(s + mid)) < positive_rate:
                lo = mid
            else:
                hi = mid
        self.bias = 0.5 * (lo + hi)

    def parts(self, idx: np.ndarray, dense: np.ndarray) -> TeacherParts:
        """idx: (C, B) int64 value indices (-1 = missing); dense: (B, D) float32 raw counts (NaN = missing)."""
        c, b = idx.shape
        cat = np.zeros((b, c), dtype=np.float32)
        tail = np.zeros((b, c), dtype=bool)
        latent: dict[int, np.ndarray] = {}
        for f in self.active:
            col, h = idx[f], self.head[f]
            row = np.clip(col + 1, 0, h + 1)
            is_tail = col >= h
            tail[:, f] = is_tail
            eff = self.effects[f][row]
            tv = col[is_tail]
            if tv.size:
                eff[is_tail] = hash_normals(tv, self.effect_salts[f]) * np.float32(
                    self.scale[f] * self.config.tail_signal)
            cat[:, f] = eff
            if f in self.latents:
                lat = self.latents[f][row]
                if tv.size:
                    lat[is_tail] = hash_uniforms(tv, self.latent_salts[f], lat.shape[1]) * np.float32(
                        self.config.tail_signal)
                latent[f] = lat
        z = (log_transform(dense) - self.dense_mean) / self.dense_std
        dterms = self.w_lin * z + self.w_curve * (z * z - np.float32(1.0))
        return TeacherParts(cat=cat, tail=tail, latent=latent, dense=dterms.astype(np.float32))

    def pair_terms(self, parts: TeacherParts) -> np.ndarray:
        """(B, P) float32 interaction terms, one column per configured pair."""
        out = np.zeros((len(parts), len(self.pairs)), dtype=np.float32)
        for j, (fa, fb, w) in enumerate(self.pairs):
            out[:, j] = np.float32(w) * np.einsum("bk,bk->b", parts.latent[fa], parts.latent[fb])
        return out

    def logit(self, parts: TeacherParts) -> np.ndarray:
        """(B,) float32 logit."""
        s = parts.cat.sum(axis=1) + parts.dense.sum(axis=1) + np.float32(self.bias)
        if self.pairs:
            s += self.pair_terms(parts).sum(axis=1)
        return s.astype(np.float32)


def _normalised(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Centre and scale each column of x (H, k) to mean 0, std 1 under the weights w (H,) (if H >= 2)."""
    if x.shape[0] < 2 or w.sum() <= 0:
        return x
    w = w / w.sum()
    x = x - (w[:, None] * x).sum(axis=0)
    std = np.sqrt((w[:, None] * x * x).sum(axis=0))
    return x / np.maximum(std, 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic, float32 in, float32 out."""
    return _sigmoid(np.asarray(x, dtype=np.float32)).astype(np.float32)

"""Configuration of the synthetic Criteo-like generator: per-field distributions, the teacher's knobs, defaults.

Every number here is part of the data's identity: the same config (including the seed) gives the same rows.
The default is a Criteo-like schema (13 counts, 26 categorical fields) whose cardinalities, skews and missing
rates follow the Criteo Kaggle data, with a known ground truth: 5 strong, 11 weak, 6 noise and 4 duplicate
categorical fields (roles are listed in `DEFAULT_CAT` below).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROLES = ("strong", "weak", "noise", "duplicate")
MAX_CARDINALITY = 2**32  # keys are 32-bit (8 hex chars) and value -> key is a bijection, so no collisions


def _check_role(name: str, role: str, scale: float, allowed: tuple[str, ...]) -> None:
    if role not in allowed:
        raise ValueError(f"{name}: role must be one of {allowed}, got {role!r}")
    if not (math.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"{name}: scale must be finite and >= 0, got {scale}")
    if role in ("noise", "duplicate") and scale != 0.0:
        raise ValueError(f"{name}: a {role} field must have scale 0 (the teacher ignores it), got {scale}")
    if role in ("strong", "weak") and scale == 0.0:
        raise ValueError(f"{name}: a {role} field needs scale > 0")


def _check_prob(name: str, what: str, p: float, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= p <= 1.0 if upper_inclusive else 0.0 <= p < 1.0
    if not (math.isfinite(p) and ok):
        raise ValueError(f"{name}: {what} must be in [0, 1{']' if upper_inclusive else ')'}, got {p}")


@dataclass(frozen=True)
class CatSpec:
    """One categorical field.

    Value indices 0..cardinality-1 follow a bounded power law, index 0 the most frequent (see `PowerLaw`).
    A duplicate is a deterministic function of its source's value (same index when the cardinalities match, a
    hashed coarsening when smaller); it is missing exactly when the source is, so its own `zipf`, `missing` and
    `missing_group` are ignored. A noise field may share a missing group only with other noise fields (see
    `SynthConfig`).
    """

    name: str
    cardinality: int
    zipf: float = 1.0  # exponent s: P(index v) ~ (v + 1)^-s; 0 = uniform
    missing: float = 0.0  # P(value missing)
    role: str = "noise"  # strong / weak / noise / duplicate
    scale: float = 0.0  # std (logit units) of the teacher's effects of head values; 0 for noise/duplicate
    duplicate_of: str | None = None
    missing_group: int | None = None  # fields sharing a group are missing together (one uniform per row)

    def __post_init__(self) -> None:
        if not 1 <= int(self.cardinality) <= MAX_CARDINALITY:
            raise ValueError(f"{self.name}: cardinality must be in [1, 2^32], got {self.cardinality}")
        if not (math.isfinite(self.zipf) and 0.0 <= self.zipf <= 5.0):
            raise ValueError(f"{self.name}: zipf exponent must be in [0, 5], got {self.zipf}")
        _check_prob(self.name, "missing rate", self.missing)
        _check_role(self.name, self.role, self.scale, ROLES)
        if (self.role == "duplicate") != (self.duplicate_of is not None):
            raise ValueError(f"{self.name}: duplicate_of must be set exactly when role == 'duplicate'")


@dataclass(frozen=True)
class DenseSpec:
    """One integer count field: 0 w.p. `zero`, -1 w.p. `negative`, else floor(exp(mu + sigma * N(0,1))).

    The teacher reads t = sign(x) log1p(|x|) (missing -> 0, exactly what `log_transform` gives the model),
    standardised to z, and adds `scale * z + curve * (z^2 - 1) / sqrt(2)`.
    """

    name: str
    mu: float
    sigma: float
    zero: float = 0.0
    negative: float = 0.0
    missing: float = 0.0
    role: str = "noise"  # strong / weak / noise
    scale: float = 0.0  # linear weight of z
    curve: float = 0.0  # weight of the centred square of z (a nonlinear term an MLP can learn)
    missing_group: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mu) and math.isfinite(self.sigma) and self.sigma >= 0 and self.mu <= 20):
            raise ValueError(f"{self.name}: need finite mu <= 20 and sigma >= 0, got mu={self.mu} sigma={self.sigma}")
        _check_prob(self.name, "missing rate", self.missing)
        _check_prob(self.name, "zero", self.zero, upper_inclusive=True)
        _check_prob(self.name, "negative", self.negative, upper_inclusive=True)
        if self.zero + self.negative > 1.0:
            raise ValueError(f"{self.name}: zero + negative must be <= 1")
        if not (math.isfinite(self.curve) and self.curve >= 0):
            raise ValueError(f"{self.name}: curve must be finite and >= 0, got {self.curve}")
        _check_role(self.name, self.role, self.scale + self.curve, ("strong", "weak", "noise"))


def _check_missing_groups(cat: tuple[CatSpec, ...], dense: tuple[DenseSpec, ...]) -> None:
    """A missing group holds only noise fields or only fields the teacher reads (duplicates do not count)."""
    members: dict[object, list[CatSpec | DenseSpec]] = {}
    for spec in (*cat, *dense):
        if spec.missing_group is not None and spec.role != "duplicate":
            members.setdefault(spec.missing_group, []).append(spec)
    for group, specs in members.items():
        noise = [s.name for s in specs if s.role == "noise"]
        read = [s.name for s in specs if s.role != "noise"]
        if noise and read:
            raise ValueError(f"missing group {group!r} mixes noise fields {noise} with fields the teacher reads "
                             f"{read}: the noise fields' missingness would carry their signal; give the noise "
                             f"fields a group of their own (or none)")


def _c(name: str, card: int, s: float, role: str = "noise", scale: float = 0.0, missing: float = 0.0,
       group: int | None = None, dup: str | None = None) -> CatSpec:
    return CatSpec(name, card, s, missing, role, scale, dup, group)


# Cardinalities follow Criteo Kaggle (capped at 5M); missing rates and joint-missing groups follow its sample
# (C3/C4/C12/C16/C21/C24 are missing together at ~3.4%, C19/C20/C25/C26 at ~45%), except that the noise fields
# among them (C20, C21, C26) go missing independently of the fields the teacher reads (C20 and C26 together, in a
# group of their own): missing together with C19, their "missing" value would tell a model what C19's does, so
# they would carry label signal although the teacher ignores them. Strong fields have low or mid cardinality so
# a model trained on ~1M rows can learn them; high-cardinality fields are weak or noise.
DEFAULT_CAT: tuple[CatSpec, ...] = (
    _c("C1", 1460, 1.2, "strong", 0.55),
    _c("C2", 583, 1.0, "strong", 0.55),
    _c("C3", 5_000_000, 1.0, "weak", 0.13, 0.034, 1),
    _c("C4", 2_000_000, 1.05, "weak", 0.1, 0.034, 1),
    _c("C5", 305, 1.5, "weak", 0.1),
    _c("C6", 24, 1.0, "strong", 0.45, 0.126),
    _c("C7", 12517, 0.9, "weak", 0.1),
    _c("C8", 633, 1.5),
    _c("C9", 3, 1.0, "duplicate", dup="C6"),  # coarsening of C6
    _c("C10", 93145, 1.05, "weak", 0.1),
    _c("C11", 5683, 0.95, "weak", 0.13),
    _c("C12", 5_000_000, 1.0, "duplicate", dup="C3"),  # relabelling of C3
    _c("C13", 3194, 1.0, "weak", 0.1),
    _c("C14", 27, 1.1, "strong", 0.5),
    _c("C15", 14992, 1.0),
    _c("C16", 500_000, 1.0, "duplicate", dup="C4"),  # coarsening of C4
    _c("C17", 10, 1.2, "strong", 0.45),
    _c("C18", 5652, 1.0, "weak", 0.08),
    _c("C19", 2173, 1.1, "weak", 0.13, 0.451, 2),
    _c("C20", 4, 0.3, "noise", 0.0, 0.451, 6),
    _c("C21", 4_000_000, 1.0, "noise", 0.0, 0.034, 7),
    _c("C22", 18, 1.5, "noise", 0.0, 0.797),
    _c("C23", 15, 1.3, "weak", 0.15),
    _c("C24", 286_181, 1.0, "weak", 0.08, 0.034, 1),
    _c("C25", 105, 1.0, "duplicate", dup="C19"),  # coarsening of C19
    _c("C26", 142_572, 1.0, "noise", 0.0, 0.451, 6),
)

# Log-normal parameters, zero and missing rates follow the Criteo sample's medians / 90th percentiles. The noise
# counts I4 and I10 go missing independently of the weak I3/I13 and I1 they are missing with in Criteo (as above).
DEFAULT_DENSE: tuple[DenseSpec, ...] = (
    DenseSpec("I1", 0.7, 1.2, zero=0.45, missing=0.455, role="weak", scale=0.17, missing_group=3),
    DenseSpec("I2", 1.5, 2.2, zero=0.18, negative=0.10),
    DenseSpec("I3", 2.0, 1.4, zero=0.01, missing=0.206, role="weak", scale=0.13, missing_group=4),
    DenseSpec("I4", 1.5, 1.0, zero=0.07, missing=0.209, missing_group=8),
    DenseSpec("I5", 8.0, 1.9, zero=0.02, missing=0.042, role="weak", scale=0.17, curve=0.1),
    DenseSpec("I6", 3.6, 1.7, zero=0.07, missing=0.25, role="strong", scale=0.35),
    DenseSpec("I7", 1.6, 1.5, zero=0.25, missing=0.049, role="weak", scale=0.17, missing_group=5),
    DenseSpec("I8", 2.0, 1.1, zero=0.12),
    DenseSpec("I9", 3.7, 1.5, zero=0.03, missing=0.049, role="weak", scale=0.13, curve=0.06, missing_group=5),
    DenseSpec("I10", 0.3, 0.4, zero=0.49, missing=0.455, missing_group=9),
    DenseSpec("I11", 0.8, 1.0, zero=0.26, missing=0.049, role="strong", scale=0.35, curve=0.1, missing_group=5),
    DenseSpec("I12", 0.5, 1.0, zero=0.74, missing=0.776),
    DenseSpec("I13", 1.7, 1.1, zero=0.06, missing=0.209, role="weak", scale=0.17, missing_group=4),
)

# (field a, field b, std of the pair's term in logit units) for low-rank interactions <u_a[x_a], u_b[x_b]>.
DEFAULT_INTERACTIONS: tuple[tuple[str, str, float], ...] = (
    ("C6", "C17", 0.08),
    ("C14", "C17", 0.06),
    ("C6", "C23", 0.06),
    ("C2", "C14", 0.06),
    ("C1", "C2", 0.05),
)


@dataclass(frozen=True)
class SynthConfig:
    """Schema, distributions and teacher of the synthetic data. Validated at construction.

    Knobs for the teacher (the learnable gap trades against realism):
    - signal_scale: multiplies every effect (categorical, dense, interactions): the main lever on teacher AUC.
    - tail_signal: std of a tail value's effect relative to a head value's (0 = rare values carry nothing).
    - head_min_snr, reference_rows: value v of a field whose effects have std a is "head" (full effect) when
      reference_rows * P(v) * a^2 * r(1-r) >= head_min_snr (r = positive_rate): i.e. when estimating its effect
      from its expected count of rows in a training set of reference_rows would give a signal-to-noise variance
      ratio of at least head_min_snr. Rarer values are "tail". So a weak field keeps full effects only on its
      frequent values, a strong one on more. Raising head_min_snr moves signal into the (scaled down) tail.
    - interaction_scale / dense_scale: multiply the pairwise and dense terms.
    - positive_rate: the bias is calibrated (bisection on a sample) to hit it.

    Missing groups: fields (categorical or dense) with the same `missing_group` go missing together (one uniform
    per row and group; each field is missing where it falls below the field's own rate). A group must not mix
    noise fields with fields the teacher reads: the noise fields' missingness would then carry those fields'
    signal, and a model would rightly use fields whose true importance is 0. Duplicates' groups are ignored.

    Concept drift (off by default; see `SyntheticCriteo` and `concept_of`): from row `drift_at` of every split on
    (and, with drift_every > 0, alternating every drift_every rows after that) rows come from a second concept: a
    second teacher (its own effects, latent vectors and calibrated bias) AND a reversed value-frequency ranking in
    every non-duplicate categorical field (the value that was the rarest becomes the most frequent and vice versa;
    duplicates follow their sources). A row stays a function of (seed, split, position) alone.
    - drift_at: first row of the second concept (0 = no drift).
    - drift_every: > 0: the concept flips back and forth every drift_every rows from drift_at on (0 = it stays).
    """

    seed: int = 0
    cat: tuple[CatSpec, ...] = DEFAULT_CAT
    dense: tuple[DenseSpec, ...] = DEFAULT_DENSE
    interactions: tuple[tuple[str, str, float], ...] = DEFAULT_INTERACTIONS
    interaction_rank: int = 4  # k of the latent vectors u (a DLRM with dim >= k can represent the dot products)
    positive_rate: float = 0.25
    signal_scale: float = 1.0
    tail_signal: float = 0.15
    head_min_snr: float = 8.0
    reference_rows: int = 1_000_000
    interaction_scale: float = 1.0
    dense_scale: float = 1.0
    block_rows: int = 32768  # rows per generation block; changing it changes the data (blocks are seeded)
    calibration_rows: int = 65536  # rows used to calibrate the bias and the dense standardisation
    drift_at: int = 0  # row (of each split) from which the second concept is in force; 0 = no drift
    drift_every: int = 0  # > 0: the concept flips every drift_every rows after drift_at; 0 = it stays

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2^63), got {self.seed!r}")
        if not self.cat:
            raise ValueError("need at least one categorical field")
        if not all(isinstance(c, CatSpec) for c in self.cat) or not all(isinstance(d, DenseSpec) for d in self.dense):
            raise ValueError("cat must hold CatSpec and dense must hold DenseSpec entries")
        names = [c.name for c in self.cat] + [d.name for d in self.dense]
        if len(set(names)) != len(names) or "dense" in names:
            raise ValueError(f"field names must be unique and not 'dense': {names}")
        index = {c.name: i for i, c in enumerate(self.cat)}
        for c in self.cat:
            if c.role != "duplicate":
                continue
            src = self.cat[index[c.duplicate_of]] if c.duplicate_of in index else None
            if src is None or src.role == "duplicate":
                raise ValueError(f"{c.name}: duplicate_of must name a non-duplicate categorical field, "
                                 f"got {c.duplicate_of!r}")
            if c.cardinality > src.cardinality:
                raise ValueError(f"{c.name}: a duplicate cannot have more values ({c.cardinality}) than its "
                                 f"source {src.name} ({src.cardinality})")
        _check_missing_groups(self.cat, self.dense)
        for a, b, w in self.interactions:
            for n in (a, b):
                if n not in index or self.cat[index[n]].role not in ("strong", "weak"):
                    raise ValueError(f"interaction ({a}, {b}): {n!r} must be a strong or weak categorical field")
            if a == b or not (math.isfinite(w) and w >= 0):
                raise ValueError(f"interaction ({a}, {b}, {w}): need two different fields and a std >= 0")
        if not 1 <= self.interaction_rank <= 64:
            raise ValueError(f"interaction_rank must be in [1, 64], got {self.interaction_rank}")
        if not 0.001 <= self.positive_rate <= 0.999:
            raise ValueError(f"positive_rate must be in [0.001, 0.999], got {self.positive_rate}")
        for knob in ("signal_scale", "tail_signal", "interaction_scale", "dense_scale"):
            v = getattr(self, knob)
            if not (math.isfinite(v) and 0.0 <= v <= 100.0):
                raise ValueError(f"{knob} must be in [0, 100], got {v}")
        if not (math.isfinite(self.head_min_snr) and self.head_min_snr >= 0.0):
            raise ValueError(f"head_min_snr must be finite and >= 0, got {self.head_min_snr}")
        if not 1 <= self.reference_rows <= 10**12:
            raise ValueError(f"reference_rows must be in [1, 1e12], got {self.reference_rows}")
        if not 1024 <= self.block_rows <= 2**20:
            raise ValueError(f"block_rows must be in [1024, 2^20], got {self.block_rows}")
        if not 1000 <= self.calibration_rows <= 10_000_000:
            raise ValueError(f"calibration_rows must be in [1000, 1e7], got {self.calibration_rows}")
        for knob in ("drift_at", "drift_every"):
            v = getattr(self, knob)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**62:
                raise ValueError(f"{knob} must be an int in [0, 2^62), got {v!r}")
        if self.drift_every and not self.drift_at:
            raise ValueError("drift_every needs drift_at > 0 (the row where the first drift happens)")

    @property
    def drifts(self) -> bool:
        return self.drift_at > 0

    def concept_of(self, rows: np.ndarray) -> np.ndarray:
        """(N,) int64 row positions -> (N,) bool, True where the second concept is in force."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.drifts:
            return np.zeros(rows.shape, dtype=bool)
        after = rows >= self.drift_at
        if not self.drift_every:
            return after
        return after & ((np.maximum(rows - self.drift_at, 0) // self.drift_every) % 2 == 0)

    @property
    def n_cat(self) -> int:
        return len(self.cat)

    @property
    def n_dense(self) -> int:
        return len(self.dense)

    @property
    def cat_names(self) -> list[str]:
        return [c.name for c in self.cat]

    @property
    def dense_names(self) -> list[str]:
        return [d.name for d in self.dense]

    def cat_index(self, name: str) -> int:
        return self.cat_names.index(name)

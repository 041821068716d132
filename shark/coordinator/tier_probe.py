"""Where a drifting stream's hot rows sit in the F-Quantization tiers: a fixed sample of the embedding rows of the
k most frequent values of every categorical field before the drift ("old") and after it ("new"), read without
side effects.

Two read-only pulls, neither of which creates a row or touches a priority (the store's peek / peek_stored only
look rows up): (1) the rows as float32, to tell present rows from absent ones, and (2) the present rows in stored
precision, whose reply carries each row's tier. (1) is needed because the store answers a stored-precision pull
that includes an absent row with every row of that part as fp32 (its initial value for the absent ones), so the
tiers of such a reply say nothing. An absent row comes back as exactly its deterministic initial value (rounded
to the new-row tier); a trained row never does (its first Adagrad step moves every coordinate by about lr), so
presence is "further from the initial value than a new row's rounding can be" (see absent_mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shark.data.batch import MISSING_KEY
from shark.data.transforms import FeatureTransform
from shark.quant.tiers import TIER_NAMES
from shark.row_init import initial_rows
from shark.train.config import TrainConfig
from shark.wire.tensors import decode_tensor

GROUPS = ("new", "old")  # the hot rows of the second concept, of the first
STATES = (*TIER_NAMES, "absent")


@dataclass(frozen=True)
class HotRows:
    """{table: (n,) unique row ids} per group; a row in both groups (few values, or a hash collision) is in
    neither, so the groups can be told apart."""

    ids: dict[str, dict[str, np.ndarray]]  # group -> table -> ids

    @staticmethod
    def of(generator: Any, config: TrainConfig, tables: list[str], k: int) -> HotRows:
        """The rows of the k most frequent values of each non-duplicate field under each concept."""
        transform = FeatureTransform(tuple(config.capacity_of(t) for t in tables), seed=config.seed)
        column = {t: i for i, t in enumerate(tables)}
        rows: dict[str, dict[str, np.ndarray]] = {}
        for group, second in (("new", True), ("old", False)):
            keys = generator.hot_keys(k, second_concept=second)
            matrix = np.full((k, len(tables)), MISSING_KEY, dtype=np.uint64)
            for name, kk in keys.items():
                matrix[:kk.size, column[name]] = kk
            ids = transform.table_ids(matrix)
            rows[group] = {name: np.unique(ids[:kk.size, column[name]]) for name, kk in keys.items()}
        out: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
        for name in rows["new"]:
            new, old = rows["new"][name], rows["old"][name]
            both = np.intersect1d(new, old)
            for group, ids in (("new", new), ("old", old)):
                kept = np.setdiff1d(ids, both)
                if kept.size:
                    out[group][name] = kept
        return HotRows(out)

    def count(self, group: str) -> int:
        return int(sum(v.size for v in self.ids[group].values()))


def absent_mask(table: str, ids: np.ndarray, rows: np.ndarray, config: TrainConfig) -> np.ndarray:
    """(n,) bool: rows (as a read-only pull returned them) within one int8 step of their initial value in every
    coordinate, i.e. the initial value as a new row stores it (fp32, fp16 or int8, whatever the codec's details).
    A trained row is far from it: Adagrad's first step moves each coordinate by lr (0.05 by default) against a
    step of init_scale / 127 (4e-4)."""
    init = initial_rows(table, ids, config.embedding_dim, config.init_scale, config.seed)
    step = np.abs(init).max(axis=1, keepdims=True) / np.float32(127.0)
    return np.all(np.abs(rows - init) <= step * np.float32(1.01), axis=1)


def probe_tiers(client: Any, hot: HotRows, config: TrainConfig) -> dict[str, dict[str, float]]:
    """{group: {fp32, fp16, int8, absent: fraction of the group's rows}} from two read-only pulls (see above)."""
    from worker.client.messages import plan_pull

    tables = sorted({t for g in GROUPS for t in hot.ids[g]})
    joined = {t: np.unique(np.concatenate([hot.ids[g][t] for g in GROUPS if t in hot.ids[g]])) for t in tables}
    values = client.pull(joined, read_only=True)
    present = {t: joined[t][~absent_mask(t, joined[t], values[t], config)] for t in tables}
    present = {t: ids for t, ids in present.items() if ids.size}
    tier_of: dict[str, np.ndarray] = {t: np.full(joined[t].size, 255, dtype=np.uint8) for t in tables}
    if present:
        # Stored precision and read-only: the reply's tiers are the rows' own (every asked row is present).
        plan = plan_pull(client.router, present, read_only=True, stored_precision=True)
        for shard, request in plan.requests.items():
            reply = client._call(shard, "PullMany", request, [p.table for p in request.parts])
            for (table, pos), part in zip(plan.positions[shard], reply.parts):
                tiers = decode_tensor(part.tiers, name=f"{table} tiers", expect_dtype="uint8",
                                      expect_shape=(pos.shape[0],))
                tier_of[table][np.searchsorted(joined[table], present[table][pos])] = tiers
    out: dict[str, dict[str, float]] = {}
    for g in GROUPS:
        states = np.concatenate([tier_of[t][np.searchsorted(joined[t], ids)] for t, ids in hot.ids[g].items()]) \
            if hot.ids[g] else np.zeros(0, dtype=np.uint8)
        n = max(states.size, 1)
        counts = np.bincount(np.minimum(states, 3), minlength=4)  # 0 fp32, 1 fp16, 2 int8, 3 absent (255)
        out[g] = {s: float(c) / n for s, c in zip(STATES, counts)}
    return out

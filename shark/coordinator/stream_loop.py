"""The coordinator's stream mode (`shark train --stream`): segments of training until stopped, the progressive
(test-then-train) AUC per window of examples, and, on a drifting synthetic stream, the drift report: the AUC
before and after the drift point and where the old and new hot rows sit in the F-Quantization tiers over time."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from shark.coordinator.phases import Phase
from shark.metrics import ScoreLog, auc, logloss

HOT_K = 32  # hot values per field and concept in the tier probe: ~1.5k rows over the Criteo schema, one pull
_EDGE_WINDOWS = 3  # windows averaged for the "before the drift" and "at the end" levels


def train_stream(coord: Any) -> dict[str, Any]:
    """Stream mode: segments of segment_batches batches per worker until request_stop() (or max_examples);
    between segments a checkpoint (with a checkpoint directory) and every eval_every segments a held-out
    evaluation. The progressive (test-then-train) figures are kept per window of `window` examples only, so
    memory stays bounded however long the stream runs. `coord` is the Coordinator (its workers, client, plan).

    A worker that dies in a segment is restarted (shark.coordinator.worker_restarts.revive) at its committed point
    (the end of its last returned segment) and runs the lost segment again, stop or not, so that it reaches every
    push its predecessor may have delivered (those come back with the same seqs: DUPLICATE). The run stops only
    once no segment is owed, and no checkpoint is taken while one is."""
    import ray

    from shark.coordinator.worker_restarts import gather, revive

    st, c = coord.stream, coord.cluster
    coord.epoch = 1
    batch = coord.config.batch_size
    windows = Windows(st.window)
    drift = DriftTracker.of(coord)
    evaluations: list[dict[str, Any]] = []
    # per worker, its committed point: what its last returned segment reported (a restart resumes there)
    committed: dict[int, dict[str, int]] = {
        i: {"position": 0, "seq": int(coord.seqs.get(i, 0)), "read_batches": 0, "read_examples": 0,
            "trained_examples": 0} for i in range(len(coord.workers))}
    owed: dict[int, int] = {}  # worker -> batches of a lost segment it must run again, stop or not
    segments, trained = 0, 0
    if drift is not None:
        drift.probe(0)
    while True:
        if coord._stop_requested.is_set():  # asked before the workers existed (or restarted): tell them now
            ray.get([w.request_stop.remote() for w in coord.workers])
        n = st.segment_batches
        if st.max_examples:
            n = max(0, min(n, -(-(st.max_examples - trained) // (len(coord.workers) * batch))))  # 0: only owed
        coord.sm.move(Phase.TRAINING, f"stream segment {segments + 1}")
        coord._train_started = time.perf_counter()
        asked = {i: owed.get(i, n) for i in range(len(coord.workers))}
        refs = {i: w.train_stream.remote(asked[i], i not in owed) for i, w in enumerate(coord.workers)}
        try:
            results, died = gather(refs)
        finally:
            coord.train_seconds += time.perf_counter() - coord._train_started
            coord._train_started = None
        segments += 1
        for i, r in results.items():
            committed[i] = {k: int(r[k]) for k in committed[i]}
            owed.pop(i, None)
        for i, exc in died:
            point = dict(committed[i])
            revive(coord, i, exc, f"stream segment {segments}", lambda w, point=point: w.resume_stream.remote(**point))
            owed[i] = asked[i]
        coord.train_examples += sum(int(r["labels"].size) for r in results.values())
        coord.positions = {i: p["position"] for i, p in committed.items()}
        coord.seqs = {i: p["seq"] for i, p in committed.items()}
        trained = sum(p["trained_examples"] for p in committed.values())
        windows.add(merge_in_time_order([(r["labels"], r["probs"]) for r in results.values()]).arrays(), trained)
        coord._last_progress = {**coord._last_progress, "examples": trained, **windows.latest()}
        if drift is not None:  # between segments: the workers are idle, so the probe sees a settled store
            drift.probe(trained)
        if owed:
            continue  # the lost segments first: no stop, no checkpoint with their pushes half delivered
        if coord._stop_requested.is_set() or any(r["stopped"] for r in results.values()):
            stopped_by = "request_stop"
            break
        if st.max_examples and trained >= st.max_examples:
            stopped_by = "max_examples"
            break
        if c.checkpoint_dir:
            coord.sm.move(Phase.CHECKPOINTING, f"stream segment {segments}")
            coord._checkpoint(final=False)
        if st.eval_every and segments % st.eval_every == 0:
            coord.sm.move(Phase.EVALUATING, f"stream segment {segments}")
            evaluations.append({"segment": segments, "examples": trained, **coord._evaluate()})
    windows.finish(trained)
    out = {"config": st.to_dict(), "stopped_by": stopped_by, "segments": segments,
           "batch_size": batch, "positions": {str(i): p["position"] for i, p in committed.items()},
           "examples_trained": sum(p["position"] for p in committed.values()) * batch,
           "examples_trained_counted": trained,
           "examples_read": sum(p["read_examples"] for p in committed.values()),
           "batches_read": sum(p["read_batches"] for p in committed.values()),
           "progressive_windows": windows.curve, "last_window": windows.last_summary,
           "evaluations": evaluations}
    generator = getattr(coord.plan, "generator", None)
    if generator is not None and generator.config.drifts:
        cfg = generator.config
        out["drift"] = drift_report(cfg.drift_at, cfg.drift_every, coord.plan.stream_examples_at(cfg.drift_at,
                                    len(coord.workers)), windows.curve, drift.samples if drift is not None else [],
                                    drift.sizes if drift is not None else {})
    return out


class DriftTracker:
    """Tier fractions of the old and new hot rows after every segment (F-Quantization runs on a drifting stream)."""

    def __init__(self, coord: Any, hot: Any) -> None:
        self.coord, self.hot = coord, hot
        self.samples: list[dict[str, Any]] = []
        self.sizes = {g: hot.count(g) for g in ("new", "old")}

    @staticmethod
    def of(coord: Any) -> DriftTracker | None:
        from shark.coordinator.tier_probe import HotRows

        generator = getattr(coord.plan, "generator", None)
        if generator is None or not generator.config.drifts or coord.config.quant != "fq":
            return None
        return DriftTracker(coord, HotRows.of(generator, coord.config, list(coord.plan.table_names), HOT_K))

    def probe(self, examples: int) -> None:
        from shark.coordinator.tier_probe import probe_tiers

        t0 = time.perf_counter()
        fractions = probe_tiers(self.coord.client, self.hot)
        self.samples.append({"examples": int(examples), **fractions,
                             "seconds": round(time.perf_counter() - t0, 4)})


def high_tier(fractions: dict[str, float]) -> float:
    """The share of rows kept in fp32 or fp16 (high precision)."""
    return fractions.get("fp32", 0.0) + fractions.get("fp16", 0.0)


def drift_report(drift_at: int, drift_every: int, seen: tuple[int, int], curve: list[dict[str, Any]],
                 tiers: list[dict[str, Any]], sizes: dict[str, int]) -> dict[str, Any]:
    """The drift section of a stream summary. The drift is at stream row drift_at; `seen` is when, in examples
    trained, the first and the last worker reach it (DataPlan.stream_examples_at: the same point when drift_at
    is a multiple of workers x group rows). A window is 'before' when it ends by the first, 'after' when it
    starts after the last (windows straddling the drift are neither). pre_auc: mean of the last
    (up to) 3 windows before; dip_auc: the lowest of the first 3 windows after; end_auc: mean of the last 3
    windows; recovered: (end - dip) / (pre - dip), the share of the dip won back. With drift_every the figures
    are about the first drift (later windows may be of either concept)."""
    def start(w: dict[str, Any]) -> int:
        return int(w["examples"]) - int(w["window_examples"])

    first, last = seen
    before = [w for w in curve if w["examples"] <= first]
    after = [w for w in curve if start(w) >= last]
    if drift_every:
        after = [w for w in after if w["examples"] <= first + drift_every]
    out: dict[str, Any] = {"drift_at": drift_at, "drift_every": drift_every, "drift_examples": [first, last],
                           "windows_before": [{"examples": w["examples"], "auc": w["auc"]} for w in before],
                           "windows_after": [{"examples": w["examples"], "auc": w["auc"]} for w in after],
                           "pre_auc": None, "dip_auc": None, "dip": None, "end_auc": None, "recovered": None}
    if before:
        out["pre_auc"] = float(np.mean([w["auc"] for w in before[-_EDGE_WINDOWS:]]))
    if after:
        out["dip_auc"] = float(min(w["auc"] for w in after[:_EDGE_WINDOWS]))
        out["dip_examples"] = int(min(after[:_EDGE_WINDOWS], key=lambda w: w["auc"])["examples"])
        out["end_auc"] = float(np.mean([w["auc"] for w in after[-_EDGE_WINDOWS:]]))
    if out["pre_auc"] is not None and out["dip_auc"] is not None:
        out["dip"] = out["pre_auc"] - out["dip_auc"]
        if out["dip"] > 0:
            out["recovered"] = (out["end_auc"] - out["dip_auc"]) / out["dip"]
    if tiers:
        out["tiers"] = {"hot_values_per_field": HOT_K, "rows": sizes, "samples": tiers}
        at = [s for s in tiers if s["examples"] <= first]
        ref = at[-1] if at else tiers[0]
        out["high_tier"] = {g: {"at_drift": high_tier(ref[g]), "end": high_tier(tiers[-1][g])}
                            for g in ("new", "old")}
    return out


class Windows:
    """The stream's progressive figures over consecutive windows of `size` examples (the merged workers' order):
    a point per full window, the last (partial) one at the end; only the unfinished window's examples are kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.y = np.zeros(0, np.float32)
        self.p = np.zeros(0, np.float32)
        self.curve: list[dict[str, Any]] = []
        self.last_summary: dict[str, Any] | None = None
        self._done = 0  # examples in finished windows

    def _point(self, y: np.ndarray, p: np.ndarray) -> None:
        self._done += y.size
        log = ScoreLog()
        log.add(y, p)
        self.last_summary = {**log.summary(), "window": self.size}
        if 0 < y.sum() < y.size:
            self.curve.append({"examples": self._done, "window_examples": int(y.size), "auc": auc(y, p),
                               "logloss": logloss(y, p)})

    def add(self, arrays: tuple[np.ndarray, np.ndarray], trained: int) -> None:
        self.y, self.p = np.concatenate([self.y, arrays[0]]), np.concatenate([self.p, arrays[1]])
        while self.y.size >= self.size:
            self._point(self.y[:self.size], self.p[:self.size])
            self.y, self.p = self.y[self.size:], self.p[self.size:]

    def finish(self, trained: int) -> None:
        """The unfinished window becomes a point unless it is too small to mean much (< a quarter window)."""
        if self.y.size and (self.y.size >= self.size // 4 or self.last_summary is None):
            self._point(self.y, self.p)
            self.y, self.p = self.y[:0], self.p[:0]

    def latest(self) -> dict[str, Any]:
        return {"window_auc": self.curve[-1]["auc"]} if self.curve else {}


def merge_in_time_order(logs: list[tuple[np.ndarray, np.ndarray]]) -> ScoreLog:
    """Workers' progressive logs -> one log ordered by each example's relative position in its worker's stream
    (workers advance at about the same rate, so this approximates the order in which examples were trained)."""
    ys, ps, keys = [], [], []
    for y, p in logs:
        ys.append(y)
        ps.append(p)
        keys.append((np.arange(y.size) + 0.5) / max(y.size, 1))
    order = np.argsort(np.concatenate(keys), kind="stable")
    log = ScoreLog()
    log.add(np.concatenate(ys)[order], np.concatenate(ps)[order])
    return log

"""`shark bench fperm`: field-scoring cost of F-Permutation against Permutation (T = 1 and T = 5), in one run.

Every method scores the same model on the same in-memory scoring batches, at the Criteo field count (13 dense
features as one field + 26 tables = 27 fields) and with the table count multiplied (x2: 53 fields, x4: 105), so
the cost growth with the number of fields is visible. The models are untrained DenseDLRMs of the configured shape
(embedding_dim, bottom, top) fed random field inputs: scoring time depends on the shapes, not on the weights or
the values, and an untrained model lets the x2 / x4 models exist at all.

Two references are timed on the same rows: the model's plain forward pass ("forward", what inference costs) and
its plain forward + backward pass ("forward-backward": the loss's gradient for the weights and the looked-up
rows, what one training step costs before the optimizer). A DLRM's own cost grows with F^2 (F(F-1)/2 dot
products feed the top MLP), so F-P's wall time grows with the field count however it is computed: F-P is one
forward and one backward pass per batch. What stays flat is F-P's cost in units of the model's own
forward + backward pass; Permutation's grows with F * T (F * T forwards per batch). Both measures are printed.
A third measure holds the model fixed (the largest multiple's) and grows the number of fields asked to score
(x1, x2, x4 of Criteo's): Permutation's wall time grows with it, F-P's does not (its one pass scores every field).

The embedding lookups are done before timing (shared by every method and identical for all of them); what is
timed is each method's own work: F-P = the field-vector forward (bottom MLP) + one head forward and one backward
per batch + the shuffled dot products; Permutation = the field-vector forward + F * T head forwards per batch.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from shark.fperm import PermutationConfig, ScoringBatch, TaylorConfig, permutation_scores, taylor_scores
from shark.model import DenseDLRM, DLRMConfig
from shark.train.config import TrainConfig

CRITEO_TABLES = 26
N_DENSE = 13


@dataclass(frozen=True)
class FPermBenchSpec:
    rows: int = 2048  # scoring rows (the same rows for every method)
    batch_size: int = 2048
    multiples: tuple[int, ...] = (1, 2, 4)  # table-count multiples of Criteo's 26
    perm_repeats: tuple[int, ...] = (1, 5)  # Permutation's T values
    repeats: int = 1  # timing repeats of Permutation per multiple; medians are reported
    fast_repeats: int = 5  # timing repeats of F-P and of the forward reference (cheap, so noise is averaged out)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.batch_size < 1 or self.repeats < 1 or self.fast_repeats < 1:
            raise ValueError("rows, batch_size, repeats and fast_repeats must be >= 1")
        if not self.multiples or any(m < 1 for m in self.multiples) or 1 not in self.multiples:
            raise ValueError(f"multiples must be >= 1 and include 1, got {self.multiples}")
        if not self.perm_repeats or any(t < 1 for t in self.perm_repeats) or 1 not in self.perm_repeats:
            raise ValueError(f"perm_repeats must be >= 1 and include 1, got {self.perm_repeats}")


def bench_model(config: TrainConfig, multiple: int) -> DenseDLRM:
    tables = tuple(f"C{i}" for i in range(1, CRITEO_TABLES * multiple + 1))
    return DenseDLRM(DLRMConfig(n_dense=N_DENSE, table_names=tables, embedding_dim=config.embedding_dim,
                                bottom=config.bottom, top=config.top, seed=config.seed))


def bench_batches(model: DenseDLRM, spec: FPermBenchSpec) -> list[ScoringBatch]:
    g = torch.Generator().manual_seed(spec.seed)
    out = []
    for lo in range(0, spec.rows, spec.batch_size):
        b = min(spec.batch_size, spec.rows - lo)
        out.append(ScoringBatch(torch.randn(b, N_DENSE, generator=g),
                                0.05 * torch.randn(b, len(model.tables), model.config.embedding_dim, generator=g),
                                (torch.rand(b, generator=g) < 0.25).float()))
    return out


def _methods(spec: FPermBenchSpec) -> dict[str, Callable[[DenseDLRM, list[ScoringBatch]], object]]:
    m: dict[str, Callable[[DenseDLRM, list[ScoringBatch]], object]] = {
        "forward": _forward,
        "forward-backward": _forward_backward,
        "fperm-abs": lambda model, b: taylor_scores(model, b, TaylorConfig("abs")),
        "fperm-signed": lambda model, b: taylor_scores(model, b, TaylorConfig("signed")),
    }
    for t in spec.perm_repeats:
        m[f"permutation-T{t}"] = partial(_permutation, config=PermutationConfig(repeats=t, seed=spec.seed))
    return m


@torch.no_grad()
def _forward(model: DenseDLRM, batches: list[ScoringBatch]) -> object:
    """The reference: one plain forward pass of the model over the scoring rows (what inference costs)."""
    model.eval()
    return [model(b.dense, b.emb) for b in batches]


def _forward_backward(model: DenseDLRM, batches: list[ScoringBatch]) -> object:
    """The reference: the model's plain forward + backward over the scoring rows (the gradients of the mean loss
    for every weight and the looked-up rows, as a training step computes them before its optimizer step)."""
    model.train()
    for b in batches:
        emb = b.emb.detach().requires_grad_()
        F.binary_cross_entropy_with_logits(model(b.dense, emb), b.labels).backward()
    model.zero_grad(set_to_none=True)
    return None


def _permutation(model: DenseDLRM, batches: list[ScoringBatch], config: PermutationConfig,
                 fields: tuple[str, ...] | None = None) -> object:
    return permutation_scores(model, batches, config, fields)


def _timed_rounds(calls: dict[str, Callable[[], object]], spec: FPermBenchSpec) -> dict[str, list[float]]:
    """Seconds of each call, timed in rounds in which the calls alternate (so a change of the host's load hits
    all of them): Permutation `spec.repeats` times, the others `spec.fast_repeats` times."""
    runs: dict[str, list[float]] = {name: [] for name in calls}
    want = {name: spec.repeats if name.startswith("permutation") else spec.fast_repeats for name in calls}
    for _ in range(max(want.values())):
        for name, call in calls.items():
            if len(runs[name]) < want[name]:
                t0 = time.perf_counter()
                call()
                runs[name].append(time.perf_counter() - t0)
    return runs


def _fields_scored(config: TrainConfig, spec: FPermBenchSpec, fields: dict[str, int], progress: bool
                   ) -> dict[str, Any]:
    """One model, the largest multiple's, asked to score its first fields[m] fields for every multiple m (the
    dense field and the first 26 * m tables): the field count to score grows with the model held fixed.
    Permutation shuffles only the fields asked for (T forwards each); F-P's one forward + backward per batch
    scores every field of the model whatever is asked, so it runs whole each time (the cost of selecting the
    scores asked for is nil)."""
    top = str(max(spec.multiples))
    model = bench_model(config, int(top))
    batches = bench_batches(model, spec)
    t1 = PermutationConfig(repeats=1, seed=spec.seed)
    calls: dict[str, Callable[[], object]] = {}
    for m in fields:
        names = tuple(model.fields[:fields[m]])
        calls[f"forward-backward/{m}"] = partial(_forward_backward, model, batches)
        calls[f"fperm-abs/{m}"] = partial(taylor_scores, model, batches, TaylorConfig("abs"))
        calls[f"permutation-T1/{m}"] = partial(_permutation, model, batches, t1, names)
    _forward_backward(model, batches[:1])  # untimed warm-up
    runs = _timed_rounds(calls, spec)
    med = {name: {m: statistics.median(runs[f"{name}/{m}"]) for m in fields}
           for name in ("forward-backward", "fperm-abs", "permutation-T1")}
    if progress:
        for name, per in med.items():
            print(f"{fields[top]}-field model, scoring {', '.join(map(str, fields.values()))} of its fields: "
                  f"{name} " + " / ".join(f"{s:.3f}" for s in per.values()) + " s", file=sys.stderr, flush=True)
    return {"model_fields": fields[top], "fields_scored": dict(fields),
            "seconds_median": {n: {m: round(s, 4) for m, s in per.items()} for n, per in med.items()},
            "seconds": {n: {m: [round(s, 4) for s in runs[f"{n}/{m}"]] for m in fields} for n in med},
            "growth_vs_x1": {n: {m: round(per[m] / per["1"], 2) for m in fields} for n, per in med.items()}}


def bench_fperm(config: TrainConfig, spec: FPermBenchSpec, progress: bool = True) -> dict[str, Any]:
    torch.set_num_threads(config.threads)
    methods = _methods(spec)
    seconds: dict[str, dict[str, list[float]]] = {name: {} for name in methods}
    paired: dict[str, dict[str, float]] = {name: {} for name in methods}
    fields: dict[str, int] = {}
    for mult in spec.multiples:
        model = bench_model(config, mult)
        batches = bench_batches(model, spec)
        fields[str(mult)] = len(model.fields)
        for warm in ("forward-backward", "fperm-abs"):  # untimed warm-up (allocator, kernels)
            methods[warm](model, batches[:1])
        runs = _timed_rounds({name: partial(fn, model, batches) for name, fn in methods.items()}, spec)
        for name in methods:
            seconds[name][str(mult)] = runs[name]
            # paired with the reference timed just before it in the same round: robust to the host's load drifting
            paired[name][str(mult)] = statistics.median(
                t / f for t, f in zip(runs[name], runs["forward-backward"]))
            if progress:
                print(f"x{mult} ({len(model.fields)} fields): {name} {statistics.median(runs[name]):.3f} s",
                      file=sys.stderr, flush=True)
    med = {name: {m: statistics.median(v) for m, v in per.items()} for name, per in seconds.items()}
    base, top = "1", str(max(spec.multiples))
    # Permutation / F-P, each taken against the forward + backward pass of its own round (so a change of the
    # host's load between the slow Permutation run and the fast F-P runs does not enter the ratio)
    speedup = {name: {m: paired["permutation-T1"][m] / paired[name][m] for m in med[name]}
               for name in ("fperm-abs", "fperm-signed")}
    growth = {name: {m: med[name][m] / med[name][base] for m in med[name]} for name in med}
    in_fb = paired
    best = "fperm-abs"
    fb_growth = in_fb[best][top] / in_fb[best][base]
    scored = _fields_scored(config, spec, fields, progress) if len(spec.multiples) > 1 else None
    targets = {
        f"{best} >= 5x faster than permutation-T1 at x1": speedup[best][base] >= 5.0,
        f"{best} cost in model forward+backward passes x1 -> x{top} grows under 1.5x": fb_growth < 1.5,
        f"permutation-T1 cost in forward+backward passes grows x1 -> x{top} (and more than {best}'s)":
            in_fb["permutation-T1"][top] / in_fb["permutation-T1"][base] > max(1.5, fb_growth),
        f"{best} wall time x1 -> x{top} grows under 1.5x (the DLRM's own forward+backward grows "
        f"{growth['forward-backward'][top]:.1f}x)": growth[best][top] < 1.5,
    }
    if scored is not None:
        g = scored["growth_vs_x1"]
        targets[f"{best} wall time, fields to score x1 -> x{top} on one {scored['model_fields']}-field model, "
                f"grows under 1.5x"] = g[best][top] < 1.5
        targets[f"permutation-T1 wall time, fields to score x1 -> x{top} on that model, grows over "
                f"{max(1.5, g[best][top]):.2f}x"] = g["permutation-T1"][top] > max(1.5, g[best][top])
    return {
        "benchmark": "fperm",
        "what_is_timed": "each method's own work on pre-looked-up rows: field vectors (bottom MLP) + F-P's one "
                         "forward/backward per batch or Permutation's F*T head forwards; references: the model's "
                         "plain forward, and its plain forward + backward",
        "model": {"embedding_dim": config.embedding_dim, "bottom": list(config.bottom), "top": list(config.top),
                  "weights": "untrained (timing does not depend on them)"},
        "spec": asdict(spec), "threads": config.threads, "fields": fields,
        "seconds_median": {n: {m: round(s, 4) for m, s in per.items()} for n, per in med.items()},
        "seconds": {n: {m: [round(s, 4) for s in v] for m, v in per.items()} for n, per in seconds.items()},
        "speedup_vs_permutation_T1": {n: {m: round(r, 2) for m, r in per.items()} for n, per in speedup.items()},
        "growth_vs_x1": {n: {m: round(r, 2) for m, r in per.items()} for n, per in growth.items()},
        "cost_in_forward_backward_passes": {n: {m: round(r, 3) for m, r in per.items()} for n, per in in_fb.items()},
        "fields_scored_on_one_model": scored,
        "targets": targets,
    }


def format_fperm_bench(result: dict[str, Any]) -> str:
    med, fields = result["seconds_median"], result["fields"]
    mults = list(fields)
    spec = result["spec"]
    lines = [(f"bench fperm: {spec['rows']:,} scoring rows, batch {spec['batch_size']}, {result['threads']} threads, "
              f"medians of {spec['fast_repeats']} (references, F-P) / {spec['repeats']} (Permutation) runs; "
              "seconds per scoring of every field"),
             f"{'method':18}" + "".join(f"{'x' + m + ' (' + str(fields[m]) + ' fields)':>20}" for m in mults)
             + f"{'growth x1->x' + mults[-1]:>16}"]
    for name, per in med.items():
        g = result["growth_vs_x1"][name][mults[-1]]
        lines.append(f"{name:18}" + "".join(f"{per[m]:>19.3f}s" for m in mults) + f"{g:>15.2f}x")
    for name, per in result["speedup_vs_permutation_T1"].items():
        lines.append(f"{'T1/' + name:18}" + "".join(f"{per[m]:>19.1f}x" for m in mults))
    lines.append("cost in model forward+backward passes (method time / the model's plain forward + backward over "
                 "the same rows, timed in the same round; median over rounds):")
    for name, per in result["cost_in_forward_backward_passes"].items():
        if name != "forward-backward":
            lines.append(f"{name:18}" + "".join(f"{per[m]:>19.2f}x" for m in mults)
                         + f"{per[mults[-1]] / per[mults[0]]:>15.2f}x")
    scored = result.get("fields_scored_on_one_model")
    if scored:
        counts = scored["fields_scored"]
        asked = ", ".join(map(str, counts.values()))
        lines.append(f"one {scored['model_fields']}-field model, scoring the first {asked} of its fields (seconds; "
                     "F-P's one pass scores them all whatever is asked):")
        for name, per in scored["seconds_median"].items():
            lines.append(f"{name:18}" + "".join(f"{per[m]:>19.3f}s" for m in counts)
                         + f"{scored['growth_vs_x1'][name][mults[-1]]:>15.2f}x")
    lines += [f"target {k}: {'met' if ok else 'NOT met'}" for k, ok in result["targets"].items()]
    return "\n".join(lines)

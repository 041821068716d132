"""Algorithm 1 (paper section 3.1) as the coordinator runs it: score -> checkpoint -> delete the f lowest ->
fine-tune on the support set -> evaluate, until the memory target or the AUC floor; then the control run.

Resumable: every checkpoint the loop takes carries a `CompressProgress` in its RUN.json, so a coordinator that
died anywhere in the loop resumes from the newest of them. Before round r the checkpoint holds the round's chosen
victims (`pending`): a resumed coordinator deletes them on every shard again (DropTable is idempotent) and goes
on; a deletion that was half done when its coordinator died is thereby rolled back by the restore and then
completed everywhere. The policy decisions are shark.coordinator.pruning's; this module does the work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shark.coordinator.kept_curves import kept_curves
from shark.coordinator.phases import Phase
from shark.coordinator.pruning import PruningPolicy
from shark.coordinator.worker_restarts import WorkerLost


@dataclass
class CompressProgress:
    """What the loop has done so far; JSON-able, saved with each of its checkpoints."""
    base_test: dict[str, Any]  # the unpruned model's held-out metrics
    base_memory: int  # its embedding bytes
    base_deleted: list[str] = field(default_factory=list)  # deleted before this run: a pruned checkpoint's fields
    rounds: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # fields deleted by accepted rounds, in order
    first_ranking: dict[str, float] = field(default_factory=dict)  # round 1's scores of every field
    first_before: str = ""  # the checkpoint of the unpruned model (the control starts from it)
    final: dict[str, Any] | None = None  # metrics of the last model that met the floor
    pending: dict[str, Any] | None = None  # {"round", "victims", "scores"}: chosen, checkpoint taken next
    stage: str = "rounds"  # "rounds" -> "control" -> "done"
    reason: str | None = None  # why the rounds stopped
    control: dict[str, Any] | None = None
    curves: dict[str, Any] | None = None  # Figure 2 on the unpruned model (shark.coordinator.kept_curves)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompressProgress:
        return cls(**d)


def run_compression(coord: Any, p: CompressProgress, resumed_tag: str | None = None) -> dict[str, Any]:
    """Run (or resume, from the checkpoint `resumed_tag` whose state `p` is) Algorithm 1 and the control on the
    coordinator's cluster. Returns the compression report."""
    cc = coord.compress
    assert cc is not None and coord.cluster.checkpoint_dir
    policy = PruningPolicy(cc, p.base_test["auc"], p.base_memory)
    policy.rounds = len(p.rounds)
    if p.final is None:
        p.final = p.base_test
    if p.stage == "rounds":
        _rounds(coord, policy, p, resumed_tag)
        p.stage, resumed_tag = "control", None
    if p.stage == "control":
        if cc.control and cc.finetune_rows and p.dropped:
            p.control = _control(coord, p, resumed_tag)
        p.stage = "done"
    memory = coord._embedding_bytes()
    final = p.final
    return {"config": cc.to_dict(), "base": {"auc": p.base_test["auc"], "memory_bytes": p.base_memory},
            "control": p.control,
            "auc_relative_change_vs_control": final["auc"] / p.control["auc"] - 1.0 if p.control else None,
            "auc_floor": policy.auc_floor, "rounds": p.rounds, "stop_reason": p.reason, "deleted": p.dropped,
            "deleted_before": p.base_deleted,
            "first_ranking": p.first_ranking, "kept_curves": p.curves,
            "fields_kept": list(coord.fields), "memory_bytes": memory, "memory_fraction": memory / p.base_memory,
            "auc_relative_change": final["auc"] / p.base_test["auc"] - 1.0, "final_test": final}


def _rounds(coord: Any, policy: PruningPolicy, p: CompressProgress, resumed_tag: str | None) -> None:
    cc = coord.compress
    while True:
        if p.pending is None or resumed_tag is None:
            reason = policy.stop_reason(coord._embedding_bytes(), len(coord.fields))
            if reason is not None:
                p.reason = reason
                return
            r = policy.rounds + 1
            coord.sm.move(Phase.SCORING, f"round {r}")
            scores = coord._score(None, cc.score_rows)
            p.first_ranking = p.first_ranking or dict(scores["abs"]["scores"])  # for the report's chart
            if p.curves is None and cc.curve_rows:  # on the unpruned model, before anything is deleted
                coord.sm.move(Phase.SCORING, "AUC vs fields kept: F-P, Permutation T=1 and random orders")
                p.curves = kept_curves(coord, p.first_ranking, cc.score_rows, cc.curve_rows, cc.random_orders)
            victims = policy.victims(scores["abs"]["ranking"])
            p.pending = {"round": r, "victims": victims, "scores": {v: scores["abs"]["scores"][v] for v in victims}}
            coord.sm.move(Phase.CHECKPOINTING, f"before round {r}")
            before = coord._checkpoint(final=False, state={"stage": "compress", "compress": p.to_dict()})
        else:  # resumed from the checkpoint taken before the pending round: its victims are already chosen
            before, resumed_tag = resumed_tag, None
            policy.rounds = p.pending["round"]
        p.first_before = p.first_before or before
        r, victims = p.pending["round"], list(p.pending["victims"])
        while True:
            coord.sm.move(Phase.DELETING, ", ".join(victims))
            for v in victims:
                coord._delete(v)
            coord.failpoint("fine_tuning.after_deletion")
            try:
                if cc.finetune_rows:  # fresh rows each round: a one-pass model overfits rows it has seen
                    coord.sm.move(Phase.FINE_TUNING, f"{cc.finetune_rows:,} fresh rows")
                    coord._finetune(cc.finetune_rows, (r - 1) * cc.finetune_rows)
                break
            except WorkerLost as exc:  # half its pushes landed: the round again from its checkpoint
                coord.sm.move(Phase.ROLLING_BACK, f"round {r}: {exc}; deleting and fine-tuning again from {before}")
                coord._roll_back(before, p.base_deleted + p.dropped)
        coord.sm.move(Phase.EVALUATING, f"round {r}")
        test = coord._evaluate()
        memory = coord._embedding_bytes()
        ok = policy.accept(test["auc"])
        p.rounds.append({"round": r, "deleted": victims, "scores": p.pending["scores"],
                         "auc": test["auc"], "logloss": test["logloss"], "memory_bytes": memory,
                         "memory_fraction": memory / p.base_memory, "fields_kept": len(coord.fields),
                         "accepted": ok})
        p.pending = None
        if not ok:
            coord.sm.move(Phase.ROLLING_BACK, f"round {r}: AUC {test['auc']:.4f} < floor {policy.auc_floor:.4f}")
            coord._roll_back(before, p.base_deleted + p.dropped)
            coord.sm.move(Phase.EVALUATING, "the model before the rejected round")
            p.final = coord._evaluate()
            p.reason = f"round {r} fell below the AUC floor ({test['auc']:.4f} < {policy.auc_floor:.4f}): rolled back"
            return
        p.dropped.extend(victims)
        p.final = test


def _control(coord: Any, p: CompressProgress, resumed_tag: str | None) -> dict[str, Any]:
    """The unpruned model fine-tuned on the same fresh rows as the kept rounds, then evaluated; afterwards the
    pruned model is put back exactly (its own checkpoint, `resumed_tag` when resuming from it), so the run ends
    with the compressed model."""
    cc = coord.compress
    if resumed_tag is None:
        coord.sm.move(Phase.CHECKPOINTING, "the pruned model, before the control")
        pruned = coord._checkpoint(final=False, state={"stage": "compress", "compress": p.to_dict()})
    else:
        pruned = resumed_tag
    rows = sum(r["accepted"] for r in p.rounds) * cc.finetune_rows
    coord.sm.move(Phase.FINE_TUNING, f"control: the unpruned model on the same {rows:,} fresh rows")
    while True:
        coord._roll_back(p.first_before, list(p.base_deleted))
        try:
            coord._finetune(rows, 0)  # offsets 0.. as rounds 1..k used
            break
        except WorkerLost as exc:  # half its pushes landed: the control's fine-tuning again from the start
            coord.sm.move(Phase.ROLLING_BACK, f"control: {exc}; fine-tuning again from {p.first_before}")
            coord.sm.move(Phase.FINE_TUNING, f"control, again: the unpruned model on the same {rows:,} fresh rows")
    coord.failpoint("fine_tuning.control")
    coord.sm.move(Phase.EVALUATING, "control")
    test = coord._evaluate()
    coord.sm.move(Phase.ROLLING_BACK, "back to the pruned model")
    coord._roll_back(pruned, p.base_deleted + p.dropped)
    return {"auc": test["auc"], "logloss": test["logloss"], "finetune_rows": rows, "checkpoint": p.first_before}

"""The coordinator's run as an explicit state machine: phases, allowed transitions, and a history.

Pure (no Ray): the coordinator actor asks `RunStateMachine` to move and the machine refuses any transition the
table below does not allow, so a bug in the driver shows up as a clear error instead of a silently odd run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    CREATED = "created"
    STARTING = "starting"  # placing shard and worker actors, waiting for shards to serve
    RESTORING = "restoring"  # shards load a checkpoint
    INITIALISING = "initialising"  # tables created, dense parameters assigned
    TRAINING = "training"
    CHECKPOINTING = "checkpointing"
    EVALUATING = "evaluating"
    SCORING = "scoring"  # F-Permutation field scores: partial sums from every worker, finished here
    DELETING = "deleting"  # a field's table dropped on every shard and the field removed from every worker
    FINE_TUNING = "fine_tuning"  # training on the support set after a deletion
    ROLLING_BACK = "rolling_back"  # a round fell below the AUC floor: back to the last checkpoint that met it
    DONE = "done"
    FAILED = "failed"


_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.CREATED: frozenset({Phase.STARTING}),
    Phase.STARTING: frozenset({Phase.RESTORING, Phase.INITIALISING}),
    # RESTORING -> a later phase: a restarted coordinator resumes its run where its newest checkpoint was taken
    Phase.RESTORING: frozenset({Phase.TRAINING, Phase.EVALUATING, Phase.DELETING, Phase.FINE_TUNING, Phase.DONE}),
    Phase.INITIALISING: frozenset({Phase.TRAINING}),
    Phase.TRAINING: frozenset({Phase.TRAINING, Phase.CHECKPOINTING, Phase.EVALUATING}),
    # CHECKPOINTING -> FINE_TUNING: compression's control run starts from the checkpoint of the unpruned model
    Phase.CHECKPOINTING: frozenset({Phase.TRAINING, Phase.EVALUATING, Phase.DELETING, Phase.SCORING, Phase.DONE,
                                    Phase.FINE_TUNING}),
    # EVALUATING -> TRAINING: a stream's periodic held-out evaluation between two segments
    Phase.EVALUATING: frozenset({Phase.CHECKPOINTING, Phase.SCORING, Phase.ROLLING_BACK, Phase.DONE,
                                 Phase.TRAINING}),
    # SCORING -> SCORING: compression's round 1 scores the fields, then draws the AUC-vs-fields-kept curves
    Phase.SCORING: frozenset({Phase.SCORING, Phase.CHECKPOINTING, Phase.DELETING, Phase.DONE}),
    Phase.DELETING: frozenset({Phase.FINE_TUNING, Phase.EVALUATING}),
    # FINE_TUNING -> ROLLING_BACK -> DELETING / FINE_TUNING: a worker died while fine-tuning (its pushes are half
    # applied): back to the checkpoint before the step, and the step again (shark.coordinator.worker_restarts)
    Phase.FINE_TUNING: frozenset({Phase.EVALUATING, Phase.ROLLING_BACK}),
    Phase.ROLLING_BACK: frozenset({Phase.EVALUATING, Phase.DONE, Phase.CHECKPOINTING, Phase.DELETING,
                                   Phase.FINE_TUNING}),
    Phase.DONE: frozenset(),
    Phase.FAILED: frozenset(),
}


class TransitionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Transition:
    phase: Phase
    at_unix: float
    note: str


class RunStateMachine:
    """on_move: called with every transition before the move returns (the coordinator's durable journal)."""

    def __init__(self, on_move: Callable[[Transition], None] | None = None) -> None:
        self.phase = Phase.CREATED
        self.history: list[Transition] = [Transition(Phase.CREATED, time.time(), "")]
        self._on_move = on_move

    def move(self, to: Phase, note: str = "") -> None:
        """Go to `to`; FAILED is reachable from every phase that is not finished."""
        allowed = _ALLOWED[self.phase] | ({Phase.FAILED} if self.phase not in (Phase.DONE, Phase.FAILED) else set())
        if to not in allowed:
            raise TransitionError(f"coordinator cannot go from {self.phase.value} to {to.value}")
        self.phase = to
        self.history.append(Transition(to, time.time(), note))
        if self._on_move is not None:
            self._on_move(self.history[-1])

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FAILED)

    def to_list(self) -> list[dict[str, object]]:
        return [{"phase": t.phase.value, "at_unix": round(t.at_unix, 3), "note": t.note} for t in self.history]

"""Named crash points in the coordinator, for the chaos tests (as etcd's gofail failpoints).

`ClusterConfig.failpoints` names the points at which the coordinator process dies with os._exit (no cleanup, no
reply: as a SIGKILL or a lost node would). A point fires only in the coordinator's first incarnation, so the
restarted coordinator runs through it: the tests see one death and one recovery. Unknown names are refused when
the config is built, so a typo cannot make a chaos test pass vacuously.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# name -> where the coordinator dies
FAILPOINTS: dict[str, str] = {
    "training.after_first_checkpoint": "after the first mid-epoch checkpoint, before the next segment",
    "checkpointing.after_first_shard": "a checkpoint written on shard 0 only, before the other shards and RUN.json",
    "checkpointing.before_manifest": "every shard's part of a checkpoint written, RUN.json not yet",
    "deleting.after_first_shard": "a field's table dropped on shard 0 only, the other shards and workers not yet",
    "fine_tuning.after_deletion": "a round's fields deleted everywhere, fine-tuning not started",
    "fine_tuning.control": "the control's fine-tuning done, its evaluation not started",
    "finishing.before_summary": "the compressed model's final checkpoint written, the summary not yet",
}

EXIT_CODE = 77


def parse_failpoint(spec: str) -> tuple[str, int]:
    """"name" or "name@n" (die the n-th time the point is reached; default the first)."""
    name, _, nth = spec.partition("@")
    if name not in FAILPOINTS or (nth and (not nth.isdigit() or int(nth) < 1)):
        raise ValueError(f"unknown failpoint {spec!r}: known are {sorted(FAILPOINTS)}, optionally with @n (n >= 1)")
    return name, int(nth) if nth else 1


def check_failpoints(specs: tuple[str, ...]) -> None:
    for spec in specs:
        parse_failpoint(spec)


class Failpoints:
    """One coordinator incarnation's failpoints and its visit counts. Disarmed in every incarnation but the first,
    so the restarted coordinator runs through the point that killed its predecessor."""

    def __init__(self, specs: tuple[str, ...], incarnation: int) -> None:
        self._due: dict[str, set[int]] = {}  # name -> the visits (1-based) at which it fires
        if incarnation == 0:
            for spec in specs:
                name, nth = parse_failpoint(spec)
                self._due.setdefault(name, set()).add(nth)
        self._visits: dict[str, int] = {}

    def reached(self, name: str) -> bool:
        """Count a visit of `name`: True if the coordinator must die at this one. A point that does harm of its
        own first (a partial checkpoint or drop) asks this, does it, then calls die()."""
        if name not in FAILPOINTS:
            raise ValueError(f"unknown failpoint {name!r}")
        if name not in self._due:
            return False
        self._visits[name] = self._visits.get(name, 0) + 1
        return self._visits[name] in self._due[name]

    def die(self, name: str) -> None:
        log.error("failpoint %s (visit %d): the coordinator dies now (%s)", name, self._visits.get(name, 0),
                  FAILPOINTS[name])
        sys.stderr.flush()
        os._exit(EXIT_CODE)

    def __call__(self, name: str) -> None:
        """A plain crash point: die here if this visit is armed."""
        if self.reached(name):
            self.die(name)

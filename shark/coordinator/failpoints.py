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


_hits: dict[str, int] = {}  # name -> times reached in this process


def parse_failpoint(spec: str) -> tuple[str, int]:
    """"name" or "name@n" (die the n-th time the point is reached; default the first)."""
    name, _, nth = spec.partition("@")
    if name not in FAILPOINTS or (nth and (not nth.isdigit() or int(nth) < 1)):
        raise ValueError(f"unknown failpoint {spec!r}: known are {sorted(FAILPOINTS)}, optionally with @n (n >= 1)")
    return name, int(nth) if nth else 1


def check_failpoints(specs: tuple[str, ...]) -> None:
    for spec in specs:
        parse_failpoint(spec)


def armed(specs: tuple[str, ...], name: str) -> bool:
    return any(parse_failpoint(s)[0] == name for s in specs)


def maybe_fail(specs: tuple[str, ...], name: str, incarnation: int) -> None:
    """Count a visit of `name`; die if it is armed for this visit and this is the first incarnation."""
    if incarnation != 0 or not armed(specs, name):
        return
    _hits[name] = _hits.get(name, 0) + 1
    if any(parse_failpoint(s) == (name, _hits[name]) for s in specs):
        log.error("failpoint %s (visit %d): the coordinator dies now (%s)", name, _hits[name], FAILPOINTS[name])
        sys.stderr.flush()
        os._exit(EXIT_CODE)

"""The coordinator of a distributed run: its state machine (pure), configuration, run manifest, and the Ray actor.

Only `actor` imports Ray (and lazily); the rest is plain Python that tests drive with synthetic inputs.
"""

from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.coordinator.phases import Phase, RunStateMachine, TransitionError

__all__ = ["ClusterConfig", "RunError", "Phase", "RunStateMachine", "TransitionError"]

"""SHARK-PS: parameter-server training for recommendation models that compresses them while they train."""

import os

# With both cores busy (a reader thread, Ray actors, other processes), OpenMP's default spin-waiting makes
# torch's intra-op threads collapse (measured 10-15x slower on 2 cores). Passive waiting avoids it. This must be
# set before torch is first imported, hence here; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

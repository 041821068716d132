"""PushWindow with fake futures: it blocks exactly when `limit` steps are in flight, and loses no error."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest

from worker.client.push_window import PushWindow


def step(n: int = 2) -> list[cf.Future]:
    return [cf.Future() for _ in range(n)]


def finish(futures: list[cf.Future], exc: BaseException | None = None) -> None:
    for f in futures:
        if exc is None:
            f.set_result(None)
        else:
            f.set_exception(exc)


def submit_in_thread(window: PushWindow, s: list[cf.Future]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            window.submit(s)
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


@pytest.mark.parametrize("k", [1, 2, 3])
def test_submit_blocks_only_when_k_steps_are_in_flight(k: int) -> None:
    w = PushWindow(k)
    steps = [step() for _ in range(k)]
    for s in steps:
        start = time.perf_counter()
        w.submit(s)  # fewer than k in flight: returns at once (would hang forever otherwise)
        assert time.perf_counter() - start < 0.05
    assert w.in_flight == k and w.steps_waited == 0 and w.max_in_flight == k
    extra = step()
    t, errors = submit_in_thread(w, extra)
    t.join(0.15)
    assert t.is_alive()  # k in flight: blocked
    finish(steps[0][:1])
    t.join(0.1)
    assert t.is_alive()  # the oldest step is only half done
    finish(steps[0][1:])
    t.join(2.0)
    assert not t.is_alive() and not errors
    assert w.steps_waited == 1 and w.max_in_flight == k
    for s in [*steps[1:], extra]:
        finish(s)
    w.flush()
    assert w.in_flight == 0


def test_a_finished_newer_step_frees_a_slot() -> None:
    w = PushWindow(2)
    a, b = step(), step()
    w.submit(a)
    w.submit(b)
    finish(b)
    w.submit(step())  # a still running, b done: only 1 in flight, no wait
    assert w.steps_waited == 0


def test_limit_zero_is_synchronous() -> None:
    w = PushWindow(0)
    s = step()
    t, errors = submit_in_thread(w, s)
    t.join(0.1)
    assert t.is_alive()  # waits for its own step
    finish(s)
    t.join(2.0)
    assert not t.is_alive() and not errors and w.steps_waited == 1 and w.in_flight == 0
    done = step()
    finish(done)
    w.submit(done)  # already finished: no wait counted
    assert w.steps_waited == 1 and w.max_in_flight == 1


def test_errors_surface_at_next_submit_or_flush() -> None:
    w = PushWindow(3)
    bad = step(1)
    w.submit(bad)
    finish(bad, RuntimeError("shard 1 said no"))
    nxt = step()
    with pytest.raises(RuntimeError, match="shard 1"):
        w.submit(nxt)
    assert w.in_flight == 1  # the new step was accepted anyway
    finish(nxt[:1])
    finish(nxt[1:], ValueError("late"))
    with pytest.raises(ValueError, match="late"):
        w.flush()
    w.flush()  # nothing left to report
    # Two failures in one step: one error (the first shard's), the other attached as a note.
    two = step()
    w.submit(two)
    finish(two[:1], KeyError("a"))
    finish(two[1:], KeyError("b"))
    with pytest.raises(KeyError, match="a") as info:
        w.flush()
    assert w.pending_errors == 0 and any("b" in n for n in getattr(info.value, "__notes__", ["b"]))
    # Two failed steps: reported one per call, oldest first.
    s1, s2 = step(1), step(1)
    w.submit(s1)
    w.submit(s2)
    finish(s1, KeyError("first"))
    finish(s2, KeyError("second"))
    with pytest.raises(KeyError, match="first"):
        w.flush()
    with pytest.raises(KeyError, match="second"):
        w.flush()


def test_flush_waits_for_every_step() -> None:
    w = PushWindow(4)
    steps = [step() for _ in range(3)]
    for s in steps:
        w.submit(s)
    timer = threading.Timer(0.1, lambda: [finish(s) for s in steps])
    timer.start()
    start = time.perf_counter()
    w.flush()
    assert time.perf_counter() - start >= 0.08 and w.in_flight == 0
    timer.join()


def test_bad_limit() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            PushWindow(bad)  # type: ignore[arg-type]

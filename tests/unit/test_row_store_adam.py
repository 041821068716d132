"""RowStore Adam tables: element-wise Adam equal to torch.optim.Adam with a per-row step count, fp32-only rows,
memory accounting, and bit-exact snapshot/restore of the moments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ps.store import InvalidRequest, RowStore, TableConfig
from tests.unit.test_row_store import push

DIM, CAP = 24, 40


def adam_store(lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> RowStore:
    s = RowStore()
    s.create_table(TableConfig("dense", dim=DIM, capacity=CAP, optimizer="adam", lr=lr, eps=eps, beta1=beta1,
                               beta2=beta2, init_scale=0.1, seed=4))
    return s


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), lr=st.sampled_from([1e-3, 0.01, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]))
def test_adam_matches_torch_with_per_row_step_counts(seed: int, lr: float, betas: tuple[float, float]) -> None:
    rng = np.random.default_rng(seed)
    s = adam_store(lr=lr, beta1=betas[0], beta2=betas[1])
    start = s.pull("dense", np.arange(CAP))
    # One torch parameter per row: a row that receives no gradient keeps its own step count, as in the store.
    params = [torch.nn.Parameter(torch.from_numpy(start[i].copy())) for i in range(CAP)]
    opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8)
    for seq in range(8):
        ids = rng.integers(0, CAP, size=30)  # duplicates: the store segment-sums them
        grads = rng.normal(size=(30, DIM)).astype(np.float32)
        push(s, "dense", ids, grads, seq=seq)
        uniq, inv = np.unique(ids, return_inverse=True)
        summed = np.zeros((uniq.shape[0], DIM), np.float32)
        np.add.at(summed, inv, grads)
        for p in params:
            p.grad = None
        for k, i in enumerate(uniq):
            params[i].grad = torch.from_numpy(summed[k].copy())
        opt.step()
    want = torch.stack([p.detach() for p in params]).numpy()
    np.testing.assert_allclose(s.pull("dense", np.arange(CAP)), want, rtol=1e-5, atol=1e-6)
    t = s._tables["dense"]
    steps = t.rows["adam_t"][t.lookup(np.arange(CAP))]
    assert steps.tolist() == [int(opt.state[p]["step"]) if p in opt.state else 0 for p in params]


def test_adam_rows_stay_fp32_and_state_is_counted() -> None:
    s = adam_store()
    ids = np.arange(10, dtype=np.int64)
    s.pull("dense", ids)
    with pytest.raises(InvalidRequest):
        s.set_tiers("dense", ids, np.full(10, 1, np.uint8))
    s.set_tiers("dense", ids, np.zeros(10, np.uint8))  # fp32 -> fp32 is allowed (a no-op)
    mem = s.memory_bytes("dense")
    assert mem["optimizer_state"] == 10 * (2 * DIM * 4 + 8)  # m + v + t (no Adagrad accumulator)
    plain = RowStore()
    plain.create_table(TableConfig("e", dim=DIM, capacity=CAP))
    plain.pull("e", ids)
    assert "adam_m" not in plain._tables["e"].rows.cols and "adam_m" not in plain.snapshot("e")
    assert plain.memory_bytes("e")["optimizer_state"] < mem["optimizer_state"]
    assert mem["total"] == sum(v for k, v in mem.items() if k.startswith(("payload_", "int8", "free", "tier",
                                                                             "slots", "index", "optimizer",
                                                                             "counters", "priorities"))
                               and k not in ("payload_bytes", "payload_bytes_fp32", "index_virtual"))


def test_adam_snapshot_restores_bit_exactly_and_training_continues_identically() -> None:
    rng = np.random.default_rng(1)
    a = adam_store(lr=0.05)
    for seq in range(4):
        ids = rng.integers(0, CAP, 16)
        push(a, "dense", ids, rng.normal(size=(16, DIM)), worker=3, seq=seq)
    snap = a.snapshot("dense")
    assert {"adam_m", "adam_v", "adam_t"} <= snap.keys()
    b = RowStore()
    b.restore_table(a.config("dense"), snap)
    sb = b.snapshot("dense")
    assert snap.keys() == sb.keys() and all(snap[k].tobytes() == sb[k].tobytes() for k in snap)
    g = rng.normal(size=(5, DIM)).astype(np.float32)
    for store in (a, b):
        push(store, "dense", [1, 2, 3, 4, 5], g, worker=3, seq=4)
    assert a.pull("dense", np.arange(CAP)).tobytes() == b.pull("dense", np.arange(CAP)).tobytes()
    for key, value in (("adam_v", -1.0), ("adam_m", np.nan)):  # inconsistent moments are refused
        bad = dict(snap)
        bad[key] = snap[key].copy()
        bad[key][0, 0] = value
        with pytest.raises(InvalidRequest):
            RowStore().restore_table(a.config("dense"), bad)
    missing = {k: v for k, v in snap.items() if k != "adam_t"}
    with pytest.raises(InvalidRequest):
        RowStore().restore_table(a.config("dense"), missing)
    with pytest.raises(InvalidRequest):  # adam arrays in a non-adam table's snapshot
        RowStore().restore_table(TableConfig("dense", dim=DIM, capacity=CAP), snap)


def test_adam_checkpoint_round_trip(tmp_path) -> None:
    from ps.checkpoint import read_shard_checkpoint, write_shard_checkpoint

    a = adam_store()
    push(a, "dense", [0, 5, 5], np.ones((3, DIM)), seq=0)
    write_shard_checkpoint(a, tmp_path, tag="t")
    b = read_shard_checkpoint(tmp_path, tag="t")
    assert b.config("dense") == a.config("dense")
    sa, sb = a.snapshot("dense"), b.snapshot("dense")  # not state_of: capacity slack differs after a restore
    assert sa.keys() == sb.keys() and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)

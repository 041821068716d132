"""Loading a checkpoint never unpickles. An attacker who can write the checkpoint directory replaces a table file
with a crafted pickle whose unpickling would create a marker file, and even fixes the manifest's size and sha256 to
match: the load is refused with a clear error and the marker never appears. The same for the coordinator's
progressive segment logs (.npz read with allow_pickle=False) and for a RUN.json that is not JSON."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from ps.checkpoint import MANIFEST_NAME, CheckpointError, read_shard_checkpoint, write_shard_checkpoint
from ps.store import RowStore, TableConfig
from shark.coordinator.run_manifest import RUN_FILE, read_run_manifest
from shark.coordinator.segment_logs import SegmentLogs


class _Exploit:
    """Unpickling this calls os.system-like code: here, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return (open, (str(self.marker), "w"))


def _store() -> RowStore:
    s = RowStore(seq_window=16)
    s.create_table(TableConfig("emb", dim=4, capacity=100, optimizer="adagrad", lr=0.05, seed=1))
    s.pull("emb", np.arange(20, dtype=np.int64))
    return s


def _payloads(marker: Path) -> dict[str, bytes]:
    npy = io.BytesIO()
    np.save(npy, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    return {"pickle": pickle.dumps(_Exploit(marker)), "npy-object-array": npy.getvalue(),
            "pickle-after-safetensors-header": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + pickle.dumps(_Exploit(marker))}


@pytest.mark.parametrize("kind", ["pickle", "npy-object-array", "pickle-after-safetensors-header"])
def test_a_crafted_pickle_in_a_shard_checkpoint_is_refused_and_never_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "PWNED"
    write_shard_checkpoint(_store(), tmp_path, tag="t")
    shard = tmp_path / "t" / "shard-0"
    payload = _payloads(marker)[kind]
    (victim,) = shard.glob("*.safetensors")
    victim.write_bytes(payload)
    manifest = json.loads((shard / MANIFEST_NAME).read_text())
    for e in manifest["tables"]:  # the attacker also makes the checksums match
        e["bytes"], e["sha256"] = len(payload), hashlib.sha256(payload).hexdigest()
    (shard / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=victim.name):
        read_shard_checkpoint(tmp_path, tag="t")
    assert not marker.exists()
    # sanity: the exploit is real, unpickling it does create the marker
    pickle.loads(_payloads(tmp_path / "control")["pickle"])
    assert (tmp_path / "control").exists()


def test_segment_logs_and_run_manifest_never_unpickle(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    logs = SegmentLogs(tmp_path / "seg")
    logs.save(0, 0, 0, np.zeros(3, np.float32), np.zeros(3, np.float32))
    path = next((tmp_path / "seg").glob("*.npz"))
    buf = io.BytesIO()
    np.savez(buf, labels=np.array([_Exploit(marker)], dtype=object), probs=np.zeros(1))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="allow_pickle"):
        logs.load(0, 0, 0)
    assert not marker.exists()
    (tmp_path / "ckpt" / "t").mkdir(parents=True)
    (tmp_path / "ckpt" / "t" / RUN_FILE).write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_run_manifest(tmp_path / "ckpt", "t")
    assert not marker.exists() and not os.path.exists(str(marker))

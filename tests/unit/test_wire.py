"""The wire contract: tensor codec round trips and rejections, generated modules current and package-qualified."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shark.wire.tensors import DTYPES, WireError, decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2

REPO = Path(__file__).resolve().parents[2]
PROTO = "shark/wire/v1/ps.proto"
GENERATED = ["ps_pb2.py", "ps_pb2.pyi", "ps_pb2_grpc.py"]
# The same command as proto/generate.sh and the shark.wire docstring, relative to a root holding proto/.
PROTOC = ["-m", "grpc_tools.protoc", "-I", "proto", "--python_out=.", "--pyi_out=.", "--grpc_python_out=.",
          f"proto/{PROTO}"]


def _tensor(data: bytes, dtype: str, shape: tuple[int, ...], raw_size: int | None = None,
            compression: int = ps_pb2.COMPRESSION_NONE) -> ps_pb2.Tensor:
    return ps_pb2.Tensor(data=data, dtype=dtype, shape=shape, compression=compression,
                         raw_size=len(data) if raw_size is None else raw_size)


# --- round trips ----------------------------------------------------------------------------------------------

arrays = st.sampled_from(sorted(DTYPES)).flatmap(lambda name: hnp.arrays(
    dtype=np.dtype(name), shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)))


@settings(max_examples=200, deadline=None)
@given(array=arrays, compress_above=st.sampled_from([0, 64, 1 << 30]))
def test_round_trip_any_dtype_and_shape(array: np.ndarray, compress_above: int) -> None:
    msg = encode_tensor(array, compress_above=compress_above)
    assert msg.raw_size == array.nbytes
    assert list(msg.shape) == list(array.shape)
    # Through the protobuf wire format too, as gRPC would carry it.
    out = decode_tensor(ps_pb2.Tensor.FromString(msg.SerializeToString()))
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)  # NaN == NaN here, and bit patterns survive the trip
    assert not out.flags.writeable


@pytest.mark.parametrize("shape", [(0,), (0, 16), (4096, 0), ()])
def test_empty_and_scalar_arrays(shape: tuple[int, ...]) -> None:
    array = np.zeros(shape, np.float32)
    out = decode_tensor(encode_tensor(array, compress_above=0))
    assert out.shape == shape


def test_non_contiguous_and_big_endian_inputs_are_normalised() -> None:
    base = np.arange(64, dtype=">i8").reshape(8, 8)
    view = base[:, ::2]
    out = decode_tensor(encode_tensor(view))
    np.testing.assert_array_equal(out, view)
    assert out.dtype == np.dtype("<i8")


def test_low_entropy_payload_is_lz4_compressed() -> None:
    rows = np.zeros((4096, 16), np.float32)
    rows[::97] = 1.5
    msg = encode_tensor(rows)
    assert msg.compression == ps_pb2.COMPRESSION_LZ4
    assert len(msg.data) < rows.nbytes // 10
    np.testing.assert_array_equal(decode_tensor(msg), rows)


def test_random_float32_is_left_raw() -> None:
    rows = np.random.default_rng(0).standard_normal((4096, 16), dtype=np.float32)
    msg = encode_tensor(rows)
    assert msg.compression == ps_pb2.COMPRESSION_NONE  # lz4 cannot shrink it, so it is not used
    assert msg.data == rows.tobytes()


def test_small_payload_is_never_compressed() -> None:
    msg = encode_tensor(np.zeros(1000, np.float32))  # 4 KB, below the 64 KB default threshold
    assert msg.compression == ps_pb2.COMPRESSION_NONE


def test_unsupported_dtype_cannot_be_encoded() -> None:
    with pytest.raises(WireError, match="cannot encode dtype"):
        encode_tensor(np.array(["a"], dtype=object))
    with pytest.raises(WireError, match="cannot encode dtype bool"):
        encode_tensor(np.array([True]))


# --- rejections -----------------------------------------------------------------------------------------------

def test_length_not_a_multiple_of_itemsize() -> None:
    msg = _tensor(b"\x00" * 4097, "int64", (512,), raw_size=4096)
    with pytest.raises(WireError, match=r"^ids: 4097 bytes is not a multiple of int64's 8$"):
        decode_tensor(msg, name="ids")


def test_length_disagrees_with_shape() -> None:
    msg = _tensor(b"\x00" * 4096, "int64", (513,), raw_size=4104)
    with pytest.raises(WireError, match=r"ids: 4096 bytes hold 512 int64 values, shape \(513,\) needs 513"):
        decode_tensor(msg, name="ids")


def test_random_bytes_with_inconsistent_header() -> None:
    data = np.random.default_rng(1).bytes(1001)
    with pytest.raises(WireError, match="raw_size 1001 does not match shape"):
        decode_tensor(_tensor(data, "float32", (250,)))


@pytest.mark.parametrize("dtype", ["float128", "object", "bool", "", "<f4", "V8", "complex64"])
def test_unknown_dtype(dtype: str) -> None:
    with pytest.raises(WireError, match="unknown dtype"):
        decode_tensor(_tensor(b"\x00" * 8, dtype, (1,)))


def test_negative_shape() -> None:
    with pytest.raises(WireError, match=r"negative dimension in shape \(-2, 4\)"):
        decode_tensor(_tensor(b"", "float32", (-2, 4), raw_size=0))
    # Two negatives whose product looks valid are still rejected.
    with pytest.raises(WireError, match="negative dimension"):
        decode_tensor(_tensor(b"\x00" * 32, "float32", (-2, -4)))


def test_too_many_dimensions() -> None:
    with pytest.raises(WireError, match="at most 8 allowed"):
        decode_tensor(_tensor(b"", "float32", (1,) * 9 + (0,), raw_size=0))


def test_raw_size_mismatch_uncompressed() -> None:
    with pytest.raises(WireError, match=r"raw_size 12 does not match shape \(2,\) of float32 \(8 bytes\)"):
        decode_tensor(_tensor(b"\x00" * 8, "float32", (2,), raw_size=12))


def test_huge_shape_is_rejected_before_any_allocation() -> None:
    # 2**62 elements: the product is computed in Python ints (no overflow) and checked against max_bytes.
    with pytest.raises(WireError, match="over the limit"):
        decode_tensor(_tensor(b"", "float32", (2**31, 2**31), raw_size=2**62))


def test_lz4_bomb_is_bounded_by_max_bytes() -> None:
    bomb = lz4.block.compress(bytes(64 * 1024 * 1024), store_size=False)  # ~260 KB that expands to 64 MB
    msg = _tensor(bomb, "uint8", (64 * 1024 * 1024,), raw_size=64 * 1024 * 1024,
                  compression=ps_pb2.COMPRESSION_LZ4)
    with pytest.raises(WireError, match="over the limit of 1048576"):
        decode_tensor(msg, max_bytes=1 << 20)


def test_lz4_payload_larger_than_declared() -> None:
    packed = lz4.block.compress(bytes(4096), store_size=False)
    msg = _tensor(packed, "float32", (16,), raw_size=64, compression=ps_pb2.COMPRESSION_LZ4)
    with pytest.raises(WireError, match="does not decompress into raw_size 64 bytes"):
        decode_tensor(msg)


def test_lz4_payload_smaller_than_declared() -> None:
    packed = lz4.block.compress(bytes(64), store_size=False)
    msg = _tensor(packed, "float32", (32,), raw_size=128, compression=ps_pb2.COMPRESSION_LZ4)
    with pytest.raises(WireError, match="decompressed to 64 bytes, raw_size says 128"):
        decode_tensor(msg)


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(min_size=0, max_size=200))
def test_lz4_garbage_never_escapes_as_anything_but_wire_error(garbage: bytes) -> None:
    msg = _tensor(garbage, "float32", (64,), raw_size=256, compression=ps_pb2.COMPRESSION_LZ4)
    try:
        out = decode_tensor(msg)
    except WireError:
        return
    assert out.shape == (64,)  # a garbage stream that happens to be valid lz4 of exactly 256 bytes


def test_unknown_compression() -> None:
    msg = _tensor(b"\x00" * 8, "float32", (2,), compression=7)  # proto3 enums are open: 7 parses fine
    msg = ps_pb2.Tensor.FromString(msg.SerializeToString())
    with pytest.raises(WireError, match="unknown compression 7"):
        decode_tensor(msg)


def test_expectations() -> None:
    msg = encode_tensor(np.zeros((4, 16), np.float32))
    assert decode_tensor(msg, expect_dtype=np.float32, expect_shape=(None, 16)).shape == (4, 16)
    with pytest.raises(WireError, match="grads: dtype float32 where int64 was expected"):
        decode_tensor(msg, name="grads", expect_dtype="int64")
    with pytest.raises(WireError, match=r"grads: shape \(4, 16\) where \('\*', 8\) was expected"):
        decode_tensor(msg, name="grads", expect_shape=(None, 8))
    with pytest.raises(WireError, match="2-d shape .* where 1-d was expected"):
        decode_tensor(msg, name="grads", expect_ndim=1)


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)


# --- messages and generated code ------------------------------------------------------------------------------

def test_push_request_round_trips_through_bytes() -> None:
    ids = np.array([3, 1, 4, 1_000_000_007], np.int64)
    req = ps_pb2.PushRequest(
        table="C1", ids=encode_tensor(ids), grads=encode_tensor(np.ones((4, 16), np.float32)),
        c_pos=encode_tensor(np.array([1, 0, 2, 0], np.uint32)),
        c_neg=encode_tensor(np.array([0, 1, 0, 5], np.uint32)), worker_id="w-0", seq=2**63 + 5)
    back = ps_pb2.PushRequest.FromString(req.SerializeToString())
    assert back == req
    assert back.seq == 2**63 + 5 and back.worker_id == "w-0"
    np.testing.assert_array_equal(decode_tensor(back.ids, name="ids", expect_dtype=np.int64), ids)
    assert ps_pb2.PushResponse(status=ps_pb2.PushResponse.STATUS_DUPLICATE).status == 2
    assert ps_pb2.HealthResponse.NOT_SERVING != ps_pb2.HealthResponse.SERVING


def test_table_messages_round_trip() -> None:
    create = ps_pb2.CreateTableRequest(name="C7", dim=16, capacity=1 << 20, optimizer="adagrad",
                                       learning_rate=0.05, init_scale=0.01, seed=42)
    assert ps_pb2.CreateTableRequest.FromString(create.SerializeToString()) == create
    stats = ps_pb2.TableStatsResponse(tables=[ps_pb2.TableStats(
        name="C7", rows=10, bytes_by_kind={"payload": 640, "optimizer": 40}, rows_by_tier={"fp32": 10})])
    assert ps_pb2.TableStatsResponse.FromString(stats.SerializeToString()) == stats


def test_service_has_the_contracted_methods() -> None:
    service = ps_pb2.DESCRIPTOR.services_by_name["ParameterServer"]
    assert sorted(m.name for m in service.methods) == sorted(
        ["Pull", "Push", "PullMany", "PushMany", "Assign", "CreateTable", "DropTable", "TableStats", "Checkpoint", "Restore", "Health"])
    assert ps_pb2.DESCRIPTOR.package == "shark.wire.v1"


def test_tensor_codec_does_not_import_grpc() -> None:
    code = ("import sys, shark.wire.tensors\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'ray'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_generated_modules_import_package_qualified() -> None:
    code = "import shark.wire.v1.ps_pb2, shark.wire.v1.ps_pb2_grpc as g; print(g.ParameterServerStub.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    grpc_src = (REPO / "shark/wire/v1/ps_pb2_grpc.py").read_text()
    assert "from shark.wire.v1 import ps_pb2" in grpc_src


def test_no_top_level_proto_package_in_repo(tmp_path: Path) -> None:
    assert not (REPO / "proto" / "__init__.py").exists()
    assert not list((REPO / "proto").rglob("*.py")), "proto/ holds .proto files only"
    # Run from the repo root, so the root is on sys.path the way `python -m pytest` and `python -c` put it.
    # PEP 420 makes any directory there a namespace package, so `import proto` can yield an empty namespace; what
    # must hold: (1) no module is importable under it, (2) a real `proto` package (PyPI's proto-plus, simulated
    # here by a stub placed *after* the repo root on sys.path) always wins over our directory.
    stub = tmp_path / "site" / "proto"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("OWNER = 'proto-plus'\n")
    code = ("import importlib, importlib.util, sys\n"
            "for m in ('proto.shark.wire.v1.ps_pb2', 'proto.shark.wire.v1.ps_pb2_grpc', 'proto.ps_pb2'):\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except ImportError:\n"
            "        continue\n"
            "    sys.exit(f'{m} is importable')\n"
            "for k in [k for k in sys.modules if k == 'proto' or k.startswith('proto.')]: del sys.modules[k]\n"
            f"sys.path.append({str(stub.parent)!r})\n"
            "import proto\n"
            "print(proto.OWNER)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr or out.stdout
    assert out.stdout.strip() == "proto-plus"


def test_packaging_ships_shark_wire_but_not_proto() -> None:
    setuptools = pytest.importorskip("setuptools")
    # The same discovery pyproject.toml configures: [tool.setuptools.packages.find] include, namespaces on.
    found = setuptools.find_namespace_packages(where=str(REPO), include=["shark*", "ps*", "worker*"])
    assert {"shark.wire", "shark.wire.v1"} <= set(found)
    assert not [p for p in found if p.split(".")[0] == "proto"]


def test_generated_modules_are_up_to_date(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install -e '.[test]'); cannot regenerate to compare")
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    out = subprocess.run([sys.executable, *PROTOC], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stale = [f for f in GENERATED
             if not filecmp.cmp(tmp_path / "shark/wire/v1" / f, REPO / "shark/wire/v1" / f, shallow=False)]
    assert not stale, f"{stale} differ from {PROTO}: run proto/generate.sh and commit the result"


def test_generate_script_uses_the_tested_command() -> None:
    script = (REPO / "proto/generate.sh").read_text()
    assert "python " + " ".join(PROTOC) in script

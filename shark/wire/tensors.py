"""numpy arrays <-> ``shark.wire.v1.Tensor`` messages, with strict validation of everything that arrives.

Pure: imports numpy, lz4 and the generated protobuf module, never grpc (the servicer and the client sit on top).

Layout on the wire: the array's bytes in C order, little-endian, ``dtype`` by name from an allow-list, ``shape``
explicit (so empty arrays and 0-d scalars round-trip), ``raw_size`` = uncompressed byte length.

Compression is ``lz4.block`` without its size header, not ``lz4.frame``: ``raw_size`` already carries the size,
and block decompression writes into a buffer of exactly ``raw_size`` bytes, which the receiver bounds by
``max_bytes`` *before* allocating, so a decompression bomb cannot make it allocate more. A frame adds a header
and checksums (~15+ bytes) that TCP/HTTP2 and the length checks here make redundant, and its optional
content-size field is untrusted anyway. The sender compresses only when the payload exceeds a threshold and
compression actually shrinks it (random float32 does not shrink; sparse, fp16 or int8 payloads can).

Decoded arrays are READ-ONLY views (``np.frombuffer``) over the message's bytes (or over the decompressed
bytes): no copy beyond the one protobuf makes when the field is read. Call ``.copy()`` to get a writable array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lz4.block
import numpy as np

from shark.wire.v1 import ps_pb2

__all__ = ["WireError", "encode_tensor", "decode_tensor", "DTYPES", "DEFAULT_COMPRESS_ABOVE",
           "DEFAULT_MAX_BYTES", "MAX_NDIM"]

DEFAULT_COMPRESS_ABOVE = 64 * 1024   # below this, lz4's few microseconds buy too little on loopback
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # largest array a receiver materialises unless told otherwise
MAX_NDIM = 8                          # rows are 2-d; anything deeper than this is a malformed message

# Allow-list: the wire name -> explicit little-endian dtype. Nothing outside it is ever built from wire bytes
# (no object, no structured, no bool whose bytes could be other than 0/1).
DTYPES: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in (
    "float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")}

_NAME_OF: dict[np.dtype, str] = {dt: name for name, dt in DTYPES.items()}  # dtype.name is slow on the hot path
_NONE = ps_pb2.COMPRESSION_NONE
_LZ4 = ps_pb2.COMPRESSION_LZ4


class WireError(ValueError):
    """A tensor message (or an array to encode) violates the wire contract. The message names what and why."""


def encode_tensor(array: np.ndarray, compress_above: int = DEFAULT_COMPRESS_ABOVE) -> ps_pb2.Tensor:
    """Encode ``array`` as a Tensor: raw bytes, or lz4 when ``nbytes > compress_above`` and lz4 is smaller.

    Raises WireError for a dtype outside the allow-list. Non-contiguous or big-endian input is converted.
    """
    array = np.asarray(array)
    name = _NAME_OF.get(array.dtype) or array.dtype.name  # the dict hit is the usual native-order case
    if name not in DTYPES:
        raise WireError(f"cannot encode dtype {array.dtype!s}; allowed: {', '.join(DTYPES)}")
    # One pass at most: a no-op for the usual C-contiguous little-endian array. (Not ascontiguousarray: it
    # turns a 0-d array into shape (1,).)
    array = np.asarray(array, dtype=DTYPES[name], order="C")
    msg = ps_pb2.Tensor(dtype=name, shape=array.shape, raw_size=array.nbytes)
    if array.nbytes > compress_above:
        packed = lz4.block.compress(memoryview(array).cast("B"), store_size=False)
        if len(packed) < array.nbytes:
            msg.data = packed
            msg.compression = _LZ4
            return msg
    msg.data = array.tobytes()
    msg.compression = _NONE
    return msg


def decode_tensor(msg: ps_pb2.Tensor, *, name: str = "tensor", expect_dtype: str | np.dtype | None = None,
                  expect_shape: Sequence[int | None] | None = None, expect_ndim: int | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Validate ``msg`` and return a read-only array view of its contents.

    ``name`` prefixes every error ("ids: ..."). ``expect_shape`` entries may be None (any size on that axis).
    Every check runs before anything is allocated or decompressed; any violation raises WireError.
    """
    dtype = DTYPES.get(msg.dtype)
    if dtype is None:
        raise WireError(f"{name}: unknown dtype {msg.dtype!r}; allowed: {', '.join(DTYPES)}")
    if expect_dtype is not None:
        want = expect_dtype if isinstance(expect_dtype, str) and expect_dtype in DTYPES else np.dtype(expect_dtype).name
        if msg.dtype != want:
            raise WireError(f"{name}: dtype {msg.dtype} where {want} was expected")
    shape = tuple(msg.shape)
    _check_shape(name, shape, expect_shape, expect_ndim)
    # Python ints: a hostile shape cannot overflow the product.
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise WireError(f"{name}: shape {shape} of {msg.dtype} needs {nbytes} bytes, over the limit of {max_bytes}")
    if msg.raw_size != nbytes:
        raise WireError(f"{name}: raw_size {msg.raw_size} does not match shape {shape} of {msg.dtype} "
                        f"({nbytes} bytes)")
    data = msg.data
    if msg.compression == _NONE:
        _check_raw_length(name, len(data), dtype, msg.dtype, shape, nbytes)
    elif msg.compression == _LZ4:
        try:
            # The output buffer is exactly nbytes (<= max_bytes): a bomb fails here instead of allocating more.
            data = lz4.block.decompress(data, uncompressed_size=nbytes)
        except lz4.block.LZ4BlockError as exc:
            raise WireError(f"{name}: lz4 payload of {len(msg.data)} bytes does not decompress into "
                            f"raw_size {nbytes} bytes (corrupt, or larger than declared): {exc}") from None
        if len(data) != nbytes:
            raise WireError(f"{name}: lz4 payload decompressed to {len(data)} bytes, raw_size says {nbytes}")
    else:
        raise WireError(f"{name}: unknown compression {msg.compression}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _check_shape(name: str, shape: tuple[int, ...], expect_shape: Sequence[int | None] | None,
                 expect_ndim: int | None) -> None:
    if len(shape) > MAX_NDIM:
        raise WireError(f"{name}: {len(shape)} dimensions, at most {MAX_NDIM} allowed")
    if any(d < 0 for d in shape):
        raise WireError(f"{name}: negative dimension in shape {shape}")
    if expect_shape is not None:
        expect_ndim = len(expect_shape)
    if expect_ndim is not None and len(shape) != expect_ndim:
        raise WireError(f"{name}: {len(shape)}-d shape {shape} where {expect_ndim}-d was expected")
    if expect_shape is not None and any(e is not None and e != d for e, d in zip(expect_shape, shape)):
        want = tuple("*" if e is None else e for e in expect_shape)
        raise WireError(f"{name}: shape {shape} where {want} was expected")


def _check_raw_length(name: str, length: int, dtype: np.dtype, dtype_name: str, shape: tuple[int, ...],
                      nbytes: int) -> None:
    if length % dtype.itemsize:
        raise WireError(f"{name}: {length} bytes is not a multiple of {dtype_name}'s {dtype.itemsize}")
    if length != nbytes:
        raise WireError(f"{name}: {length} bytes hold {length // dtype.itemsize} {dtype_name} values, "
                        f"shape {shape} needs {math.prod(shape)}")

"""Row codecs for the low-precision tiers, and their rounding modes (pure numpy; the one implementation, which
ps.store uses for its fp16/int8 pools).

int8: symmetric per-row, scale = max|e| / 127, q = round(e / scale) in [-127, 127]. With nearest rounding
|q * scale - e| <= scale / 2 (plus the fp32 rounding of the product). All-zero rows get scale 0 and q 0.
(The paper's eq. 6 divides by 255, which overflows a symmetric int8; see DESIGN section 5.)
fp16: a cast; values beyond fp16's range are clipped to +-65504 rather than becoming inf. fp16_encode_scaled adds
a per-row power-of-two scale (2^(e-1) for max|e| = m * 2^e, m in [0.5, 1)), so every row uses fp16's full relative
precision whatever its magnitude (no overflow, no subnormal flush of small rows); dividing by a power of two is exact,
so the scaled codec errs only by fp16's own rounding. All-zero rows get scale 0.
Stochastic rounding picks the upper neighbour with probability equal to the distance from the lower one, so
E[decode(encode(x))] = x and small optimizer updates survive on average instead of vanishing.
"""

from __future__ import annotations

import numpy as np

FP16_MAX = np.float32(65504.0)


def bf16_bits(x: np.ndarray, up: bool = False) -> np.ndarray:
    """float32 (>= 0 when up) -> uint16 bfloat16 bits (float32's top half: its range, 8 significant bits).
    Nearest-even by default; up=True rounds non-negative values up (never below x), for int8 scales."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32)
    if up:
        b = b + np.uint32(0xFFFF)  # any dropped bit carries into the kept ones (exponent included)
    else:
        b = b + (np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1)))
    return (b >> np.uint32(16)).astype(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bits -> float32 (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def int8_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The uniform draws int8_encode's stochastic rounding uses (drawn apart, so rows of many tables can be encoded
    in one call with each table's own random stream). float32: 24 random bits, far finer than an int8 step."""
    return rng.random(shape, dtype=np.float32)


def fp16_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The draws fp16_encode's stochastic rounding uses: 13 random low bits per element."""
    return fp16_bits_from_uniform(int8_noise(rng, shape))


def fp16_bits_from_uniform(u: np.ndarray) -> np.ndarray:
    """13 random bits from float32 uniforms in [0, 1) (their top 13 of 24 random bits), so one draw can serve a
    table's fp16 and int8 rows."""
    return (u * np.float32(1 << 13)).astype(np.uint32)


def int8_encode(x: np.ndarray, rng: np.random.Generator | None = None,
                bf16_scale: bool = False, noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) float32 -> (q (N, d) int8, scale (N,) float32). rng None = nearest, else stochastic rounding
    (noise: int8_noise draws to use instead of rng).
    bf16_scale: the scale is rounded UP to a bfloat16 value (stored in 2 bytes, exactly) and q computed with it, so
    the error bounds hold for the stored scale, whose step is at most 2^-7 coarser. Up, not nearest: a scale below
    amax / 127 would clip the largest element at 127, and stochastic rounding would then lose its small increases
    (a bias); rounded up, every element stays within +-127 and stochastic rounding stays unbiased. The price: max|q|
    may be 126, and re-encoding such a decoded row picks a smaller scale (moving elements by at most scale / 2)."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1, initial=0.0)
    scale = (amax / np.float32(127.0)).astype(np.float32)
    if bf16_scale:
        scale = bf16_value(bf16_bits(scale, up=True))
    # Subnormal rows: float32 may round the scale far down (even to 0), so e / scale would pass 127.5 and clip.
    # One ulp up always fixes it; normal rows never need it (and keep constant rows exact at +-127).
    low = scale.astype(np.float64) * 127.5 < amax
    if low.any():
        up = bf16_value(bf16_bits(scale) + np.uint16(1)) if bf16_scale else np.nextafter(scale, np.float32(np.inf))
        scale = np.where(low, up, scale).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float64)
    y = x.astype(np.float64) / safe[:, None]  # |y| <= 127 (up to the rounding of scale)
    if noise is None and rng is not None:
        noise = int8_noise(rng, y.shape)
    q = np.rint(y) if noise is None else np.floor(y + noise, out=y)
    return np.clip(q, -127, 127, out=q).astype(np.int8), scale


def int8_decode(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, d) int8, (N,) float32 -> (N, d) float32. An 8-bit x 24-bit product rounds once, like float64 then cast."""
    return q.astype(np.float32) * scale[:, None]


def fp16_encode(x: np.ndarray, rng: np.random.Generator | None = None,
                noise: np.ndarray | None = None) -> np.ndarray:
    """(N, d) float32 -> (N, d) float16, nearest or stochastic (noise: fp16_noise draws to use instead of rng)."""
    x = np.clip(np.asarray(x, dtype=np.float32), -FP16_MAX, FP16_MAX)
    if noise is None and rng is not None:
        noise = fp16_noise(rng, x.shape)
    if noise is None:
        return x.astype(np.float16)  # round to nearest even
    # Normal fp16 range: fp32 carries 13 more mantissa bits than fp16. Adding uniform random bits below the kept
    # ones and truncating rounds the magnitude up with probability = the dropped fraction (sign-magnitude, so it is
    # unbiased for negatives too); the truncated value is exact in fp16, so the final cast does not round again.
    # No carry can pass 65504 (its low 13 bits are 0).
    bits = x.view(np.uint32)
    noisy = (bits + noise) & np.uint32(0xFFFFE000)
    out = noisy.view(np.float32)
    # Subnormal fp16 range (|x| < 2^-14): a fixed step of 2^-24, rounded stochastically in float64 (exact), with
    # the same 13 bits as a uniform on a 2^-13 grid (centred: a bias below 2^-14 of a step).
    tiny = np.abs(x) < np.float32(2.0**-14)
    if tiny.any():
        xt = x[tiny].astype(np.float64) * 2.0**24
        out = out.copy()
        out[tiny] = (np.floor(xt + (noise[tiny] + 0.5) * 2.0**-13) * 2.0**-24).astype(np.float32)
    return out.astype(np.float16)


def fp16_decode(h: np.ndarray) -> np.ndarray:
    return h.astype(np.float32)


def fp16_encode_scaled(x: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) float32 -> (h (N, d) float16, scale (N,) float32 power of two, 0 for all-zero rows); |h| < 2."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1, initial=0.0).astype(np.float64)
    _, e = np.frexp(amax)  # amax = m * 2^e, m in [0.5, 1); e in [-148, 128] for finite float32
    scale = np.where(amax > 0, np.ldexp(1.0, e - 1), 0.0)  # exact in float32 (2^-149 .. 2^127)
    safe = np.where(scale > 0, scale, 1.0)
    y = (x.astype(np.float64) / safe[:, None]).astype(np.float32)  # |y| < 2, exact unless y is float32-subnormal
    return fp16_encode(y, rng), scale.astype(np.float32)


def fp16_decode_scaled(h: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, d) float16, (N,) float32 -> (N, d) float32 (a product by a power of two: exact)."""
    return h.astype(np.float32) * scale[:, None]

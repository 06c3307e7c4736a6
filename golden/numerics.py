"""Bit-exact number formats of the SQ-DM accelerator (the specification of its arithmetic).

Every function takes and returns numpy arrays and is vectorised. The rules are stated in
``docs/numerics.md``; each one is implemented once, here, and everything else (fake-quant model,
integer reference, trace export, testbenches) imports it.

Formats:

* FP8 E4M3 (OCP "e4m3fn"): ``fp8_e4m3_encode`` / ``fp8_e4m3_decode``.
* MXINT8 (OCP MX v1.0): blocks of 32, one E8M0 scale per block, INT8 elements worth code/64.
* INT4 weights / UINT4 activations with one FP8 scale per vector of ``vector`` elements
  (VS-Quant), with an optional second-level scale.

All arithmetic is exact: scaling by powers of two, comparisons and integer division remainders
are computed without rounding error in float64, so results do not depend on library versions.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fp8_e4m3_encode",
    "fp8_e4m3_decode",
    "mxint8_quantize",
    "mxint8_dequantize",
    "int4_quantize",
    "int4_quantize_mse",
    "int4_dequantize",
    "uint4_quantize",
    "uint4_dequantize",
]

FP8_MAX = 448.0
FP8_MAX_CODE = 0x7E  # +448; 0x7F and 0xFF are NaN and are never produced
FP8_MIN_NORMAL_EXP = -6
FP8_MIN_SUBNORMAL = 2.0 ** -9

MX_BLOCK = 32
MX_ELEMENT_FRAC_BITS = 6  # an MXINT8 element is worth code / 2**6
MX_ELEMENT_MAX = 127
MX_SCALE_BIAS = 127
MX_SCALE_NAN = 0xFF
MX_EXP_MIN = -127
MX_EXP_MAX = 127

INT4_MAX = 7
UINT4_MAX = 15
VECTOR_SIZES = (4, 8, 16, 32, 64)
MSE_CANDIDATES = 8  # int4_quantize_mse: the no-clip scale and the 7 FP8 codes below it


# --------------------------------------------------------------------------- input checking

def _as_float_array(x, name: str) -> np.ndarray:
    """Return ``x`` as a float64 array (exactly), rejecting non-floating and non-finite input."""
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)  # float16/32 -> float64 is exact
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} holds a non-finite value {arr[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)}; NaN and Inf cannot be quantized")
    return arr


def _as_code_array(codes, name: str, kinds: tuple[type, ...], lo: int, hi: int) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype not in [np.dtype(k) for k in kinds]:
        allowed = ", ".join(np.dtype(k).name for k in kinds)
        raise TypeError(f"{name} must have dtype {allowed}, got {arr.dtype}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name} holds values outside [{lo}, {hi}]: "
                         f"min {arr.min()}, max {arr.max()}")
    return arr


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimension(s)")
    return int(axis) % ndim


def _check_vector(vector) -> int:
    if isinstance(vector, bool) or not isinstance(vector, (int, np.integer)):
        raise TypeError(f"vector must be an int, got {vector!r}")
    if vector not in VECTOR_SIZES:
        raise ValueError(f"vector must be one of {VECTOR_SIZES}, got {vector}")
    return int(vector)


# --------------------------------------------------------------------------- blocking helpers

def _to_blocks(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Move ``axis`` last, zero-pad it to a multiple of ``size``, reshape to (..., n, size)."""
    moved = np.moveaxis(x, axis, -1)
    n = moved.shape[-1]
    pad = (-n) % size
    if pad:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (pad,), moved.dtype)], -1)
    return moved.reshape(moved.shape[:-1] + ((n + pad) // size, size))


def _from_blocks(blocks: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Inverse of ``_to_blocks``: drop the padding and move the axis back."""
    flat = blocks.reshape(blocks.shape[:-2] + (-1,))[..., :n]
    return np.moveaxis(flat, -1, axis)


def _block_scales_to_elements(scales: np.ndarray, axis: int, size: int, n: int) -> np.ndarray:
    """Repeat one value per block along ``axis`` to one value per element (length ``n``)."""
    return np.repeat(scales, size, axis=axis).take(np.arange(n), axis=axis)


# --------------------------------------------------------------------------- FP8 E4M3

def _fp8_value_table() -> np.ndarray:
    codes = np.arange(256)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    mag = np.where(exp == 0, man * 2.0 ** -9, (8 + man) * np.exp2(exp - 10.0))
    vals = np.where(codes & 0x80, -mag, mag)
    vals[0x7F], vals[0xFF] = np.nan, -np.nan  # the only NaNs; no infinities
    return vals


_FP8_VALUES = _fp8_value_table()
_FP8_POSITIVE = _FP8_VALUES[: FP8_MAX_CODE + 1]  # codes 0x00..0x7E, strictly increasing


def fp8_e4m3_decode(codes) -> np.ndarray:
    """Decode FP8 E4M3 codes (uint8) to float64. 0x7F and 0xFF decode to NaN; 0x80 to -0.0."""
    arr = _as_code_array(codes, "codes", (np.uint8,), 0, 255)
    return _FP8_VALUES[arr]


def fp8_e4m3_encode(x) -> np.ndarray:
    """Encode floats to FP8 E4M3 codes with round-to-nearest-even, saturating to +-448.

    Zero (and every value that rounds to zero) is encoded as 0x00, whatever its sign.
    NaN and Inf raise ``ValueError``; NaN codes are never produced.
    """
    v = _as_float_array(x, "x")
    mag = np.abs(v)
    # frexp is exact: mag = f * 2**e with f in [0.5, 1)
    _, e = np.frexp(mag)
    unbiased = np.maximum(e - 1, FP8_MIN_NORMAL_EXP)  # subnormals share the min-normal grid
    step_exp = unbiased - 3  # three mantissa bits
    q = np.rint(np.ldexp(mag, -step_exp))  # exact power-of-two scaling, then RNE
    # q is the magnitude on the grid 2**step_exp; q == 16 means rounding carried into the exponent
    carry = q >= 16
    q = np.where(carry, q / 2, q)
    unbiased = unbiased + carry
    normal = q >= 8
    biased = np.where(normal, unbiased + 7, 0)
    code = np.where(normal, (biased << 3) | (q.astype(np.int64) - 8), q.astype(np.int64))
    code = np.where((mag >= FP8_MAX) | (biased > 15), FP8_MAX_CODE, code)
    code = np.where((v < 0) & (code != 0), code | 0x80, code)
    return code.astype(np.uint8)


def _fp8_mantissa_exponent(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split non-negative, non-NaN FP8 codes into integer (M, E) with value = M * 2**E.

    M is in [0, 15] (8..15 for normals) and E in [-9, 5]; this is the form the hardware uses.
    """
    exp = (codes >> 3).astype(np.int64) & 0xF
    man = codes.astype(np.int64) & 0x7
    return np.where(exp == 0, man, man + 8), np.maximum(exp, 1) - 10


# --------------------------------------------------------------------------- MXINT8

def _mx_shared_exponent(amax: np.ndarray) -> np.ndarray:
    """floor(log2(amax)) read from the float's exponent bits, clamped to [-127, 127]."""
    _, e = np.frexp(amax)
    shared = np.where(amax > 0, e - 1, MX_EXP_MIN)
    return np.clip(shared, MX_EXP_MIN, MX_EXP_MAX)


def mxint8_quantize(x, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Quantize to MXINT8: blocks of 32 along ``axis`` (zero-padded), one E8M0 scale each.

    Returns ``(codes, scale_codes)``: int8 codes in [-127, 127] with the shape of ``x``, and
    uint8 E8M0 scale codes with ``ceil(n / 32)`` entries along ``axis``. A block's shared
    exponent is e = floor(log2(max|v|)) (-127 for an all-zero block); element = RNE(v * 2**(6-e))
    clamped to [-127, 127]. The value of a code is code / 64 * 2**e.
    """
    v = _as_float_array(x, "x")
    if v.ndim == 0:
        raise ValueError("x must have at least one dimension")
    ax = _check_axis(axis, v.ndim)
    n = v.shape[ax]
    blocks = _to_blocks(v, ax, MX_BLOCK)
    shared = _mx_shared_exponent(np.abs(blocks).max(axis=-1))
    scaled = np.ldexp(blocks, (MX_ELEMENT_FRAC_BITS - shared)[..., None])
    elems = np.clip(np.rint(scaled), -MX_ELEMENT_MAX, MX_ELEMENT_MAX).astype(np.int8)
    scale_codes = np.moveaxis((shared + MX_SCALE_BIAS).astype(np.uint8), -1, ax)
    return _from_blocks(elems, ax, n), scale_codes


def mxint8_dequantize(codes, scale_codes, axis: int = -1) -> np.ndarray:
    """Inverse of ``mxint8_quantize``: code / 64 * 2**(scale_code - 127); scale 0xFF gives NaN."""
    c = _as_code_array(codes, "codes", (np.int8,), -128, 127)
    s = _as_code_array(scale_codes, "scale_codes", (np.uint8,), 0, 255)
    if c.ndim == 0:
        raise ValueError("codes must have at least one dimension")
    ax = _check_axis(axis, c.ndim)
    n = c.shape[ax]
    nblocks = -(-n // MX_BLOCK)
    expected = c.shape[:ax] + (nblocks,) + c.shape[ax + 1:]
    if s.shape != expected:
        raise ValueError(f"scale_codes has shape {s.shape}, expected {expected} for codes of "
                         f"shape {c.shape} with blocks of {MX_BLOCK} along axis {ax}")
    exps = _block_scales_to_elements(s.astype(np.int64), ax, MX_BLOCK, n) - MX_SCALE_BIAS
    out = np.ldexp(c.astype(np.float64), exps - MX_ELEMENT_FRAC_BITS)
    nan_blocks = _block_scales_to_elements(s, ax, MX_BLOCK, n) == MX_SCALE_NAN
    return np.where(nan_blocks, np.nan, out)


# --------------------------------------------------------------------------- INT4 / UINT4 (VSQ)

def _rne_divide(num: np.ndarray, scale_codes: np.ndarray) -> np.ndarray:
    """Exact round-half-even of num / value(scale_codes) for num >= 0 (float64, exact input).

    With value = M * 2**E: w = num * 2**-E is exact; w / M is split as a + (b + f) / M with
    a, b integers and f = w - floor(w), all exactly representable; the comparison of 2(b + f)
    with M decides the rounding direction without any rounding error.
    """
    man, exp = _fp8_mantissa_exponent(scale_codes)
    safe_man = np.where(man == 0, 1, man)
    w = np.ldexp(num, -exp)
    whole = np.floor(w)
    frac = w - whole
    a, b = np.divmod(whole, safe_man)
    twice_rem = 2 * (b + frac)
    up = (twice_rem > safe_man) | ((twice_rem == safe_man) & (a % 2 == 1))
    return np.where(man == 0, 0.0, a + up)


def _vsq_quantize(x, axis, vector, scale2, qmax: int, signed: bool):
    v = _as_float_array(x, "x")
    if v.ndim == 0:
        raise ValueError("x must have at least one dimension")
    ax = _check_axis(axis, v.ndim)
    vec = _check_vector(vector)
    if not signed and np.any(v < 0):
        raise ValueError(f"uint4_quantize takes post-ReLU (non-negative) input; "
                         f"min is {v.min()}")
    s2 = _second_level(scale2, v.shape, ax)
    v = v / s2  # the only float operation that rounds (RNE); exact when scale2 is 1
    n = v.shape[ax]
    blocks = _to_blocks(v, ax, vec)
    amax = np.abs(blocks).max(axis=-1)
    # smallest FP8 s with qmax * s >= amax (exact: the table holds qmax * s exactly)
    scale_codes = np.searchsorted(qmax * _FP8_POSITIVE, amax, side="left")
    scale_codes = np.minimum(scale_codes, FP8_MAX_CODE).astype(np.uint8)
    mags = _rne_divide(np.abs(blocks), np.broadcast_to(scale_codes[..., None], blocks.shape))
    q = np.minimum(mags, qmax) * np.sign(blocks)
    codes = _from_blocks(q.astype(np.int8 if signed else np.uint8), ax, n)
    return codes, np.moveaxis(scale_codes, -1, ax)


def _second_level(scale2, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Validate a second-level scale: positive, finite, constant along ``axis``."""
    s2 = np.asarray(scale2)
    if s2.dtype == bool or not (np.issubdtype(s2.dtype, np.floating)
                                or np.issubdtype(s2.dtype, np.integer)):
        raise TypeError(f"scale2 must be a number or a numeric array, got dtype {s2.dtype}")
    s2 = s2.astype(np.float64)
    if not np.all(np.isfinite(s2)) or np.any(s2 <= 0):
        raise ValueError("scale2 must be positive and finite")
    if s2.ndim:
        padded = (1,) * (len(shape) - s2.ndim) + s2.shape
        if len(padded) != len(shape) or padded[axis] != 1:
            raise ValueError(f"scale2 of shape {s2.shape} must broadcast to {shape} with "
                             f"size 1 along the quantized axis {axis}")
        try:
            np.broadcast_shapes(padded, shape)
        except ValueError:
            raise ValueError(f"scale2 of shape {s2.shape} does not broadcast to {shape}") from None
        s2 = s2.reshape(padded)
    return s2


def _vsq_dequantize(codes, scale_codes, axis, vector, scale2, signed: bool):
    if signed:
        c = _as_code_array(codes, "codes", (np.int8,), -INT4_MAX, INT4_MAX)
    else:
        c = _as_code_array(codes, "codes", (np.uint8,), 0, UINT4_MAX)
    s = _as_code_array(scale_codes, "scale_codes", (np.uint8,), 0, FP8_MAX_CODE)
    if c.ndim == 0:
        raise ValueError("codes must have at least one dimension")
    ax = _check_axis(axis, c.ndim)
    vec = _check_vector(vector)
    n = c.shape[ax]
    expected = c.shape[:ax] + (-(-n // vec),) + c.shape[ax + 1:]
    if s.shape != expected:
        raise ValueError(f"scale_codes has shape {s.shape}, expected {expected} for codes of "
                         f"shape {c.shape} with vectors of {vec} along axis {ax}")
    scales = _block_scales_to_elements(_FP8_VALUES[s], ax, vec, n)
    return c.astype(np.float64) * scales * _second_level(scale2, c.shape, ax)


def int4_quantize(x, axis: int = -1, vector: int = 16, *, scale2=1.0):
    """Quantize weights to INT4 codes in [-7, 7] with one FP8 scale per ``vector`` elements.

    The input is first divided by ``scale2`` (a second-level scale, scalar or an array that is
    constant along ``axis``; default 1.0). Each vector's FP8 scale is the smallest FP8 value s
    with 7 * s >= max|v| (so nothing clips, unless the scale saturates at 448); codes are
    RNE(v / s), computed exactly. Returns ``(codes int8, scale_codes uint8)``.
    """
    return _vsq_quantize(x, axis, vector, scale2, INT4_MAX, signed=True)


def int4_quantize_mse(x, axis: int = -1, vector: int = 16, *, scale2=1.0,
                      candidates: int = MSE_CANDIDATES):
    """INT4 codes like ``int4_quantize``, with each vector's FP8 scale chosen to minimise the
    squared error instead of to avoid clipping (a host choice for weights: the hardware takes
    any FP8 scale).

    For every vector the candidates are the no-clip scale code ``c`` of ``int4_quantize`` and the
    ``candidates - 1`` codes below it (never below 0x01); each is scored by the sum over the
    vector of ``(deq - v)**2`` (float64, after the ``scale2`` division), and the lowest score
    wins, ties to the larger scale. Codes are ``clamp(RNE(v / s), -7, 7)``, exact as in
    ``int4_quantize``. ``candidates = 1`` is ``int4_quantize``.
    """
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) \
            or candidates < 1:
        raise ValueError(f"candidates must be an int >= 1, got {candidates!r}")
    codes, scales = _vsq_quantize(x, axis, vector, scale2, INT4_MAX, signed=True)
    v = _as_float_array(x, "x")
    ax = _check_axis(axis, v.ndim)
    n = v.shape[ax]
    vec = int(vector)
    blocks = _to_blocks(v / _second_level(scale2, v.shape, ax), ax, vec)
    base = np.moveaxis(scales, ax, -1).astype(np.int64)
    best_q = _to_blocks(codes.astype(np.float64), ax, vec)
    best_s = base.copy()
    best_err = ((best_q * _FP8_VALUES[base][..., None] - blocks) ** 2).sum(axis=-1)
    for k in range(1, int(candidates)):
        cand = np.maximum(base - k, 1)
        mags = _rne_divide(np.abs(blocks), np.broadcast_to(cand[..., None], blocks.shape))
        q = np.minimum(mags, INT4_MAX) * np.sign(blocks)
        err = ((q * _FP8_VALUES[cand][..., None] - blocks) ** 2).sum(axis=-1)
        better = (err < best_err) & (base > 0)
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, cand, best_s)
        best_q = np.where(better[..., None], q, best_q)
    return (_from_blocks(best_q.astype(np.int8), ax, n),
            np.moveaxis(best_s.astype(np.uint8), -1, ax))


def uint4_quantize(x, axis: int = -1, vector: int = 16, *, scale2=1.0):
    """Quantize non-negative (post-ReLU) activations to UINT4 codes in [0, 15].

    Same rule as ``int4_quantize`` with qmax = 15; a negative input raises ``ValueError``.
    Returns ``(codes uint8, scale_codes uint8)``.
    """
    return _vsq_quantize(x, axis, vector, scale2, UINT4_MAX, signed=False)


def int4_dequantize(codes, scale_codes, axis: int = -1, vector: int = 16, *, scale2=1.0):
    """Value of INT4 codes: code * fp8(scale) * scale2, as float64 (exact for scale2 = 1)."""
    return _vsq_dequantize(codes, scale_codes, axis, vector, scale2, signed=True)


def uint4_dequantize(codes, scale_codes, axis: int = -1, vector: int = 16, *, scale2=1.0):
    """Value of UINT4 codes: code * fp8(scale) * scale2, as float64 (exact for scale2 = 1)."""
    return _vsq_dequantize(codes, scale_codes, axis, vector, scale2, signed=False)

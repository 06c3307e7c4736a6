"""Integer reference of the layer the accelerator runs: conv2d -> PPU -> sparsity detector.

Everything is in channel-last layout (``[height, width, channels]``; weights
``[cout, kh, kw, cin]``) and everything returned is an integer. The rules are written down in
``docs/numerics.md`` ("Accumulation" and "Post-processing"); this module is their one
implementation, used by the golden model, the trace export and the testbenches alike.

Accumulation: for every output pixel and channel the accelerator adds one *term* per
(kernel tap, input vector). A term is the integer vector product ``P = sum(q_x * q_w)`` times
the integer mantissas of the two scales, placed on the fixed accumulator grid
``2**-ACC_FRAC_BITS`` (exactly in INT4 mode; RNE in MXINT8 mode when the product is finer than
the grid) and clamped to ``+-TERM_LIMIT``. Terms are added exactly, so the result does not depend
on the order of summation nor on which array (DPE or SPE) computed which term.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from golden import numerics as nx

ACC_FRAC_BITS = 24          # accumulator LSB is 2**-24
ACC_WIDTH = 64              # signed accumulator bits; cannot overflow (see MAX_TERMS)
TERM_LIMIT = 2 ** 52 - 1    # each term saturates to +-TERM_LIMIT (counted)
MAX_TERMS = 2 ** 11         # terms per output; MAX_TERMS * TERM_LIMIT < 2**63
PPU_FRAC_BITS = 16          # PPU grid: bias, residual and the pre-quantization value, 2**-16
PPU_WIDTH = 32              # signed PPU value bits (saturating, counted)
SCALE_MANT_BITS = 16        # signed per-channel scale mantissa
SCALE_SHIFT_MAX = 63
THRESHOLD_DEFAULT_PCT = 30

_PPU_MAX = 2 ** (PPU_WIDTH - 1) - 1
_PPU_MIN = -(2 ** (PPU_WIDTH - 1))
_SCALE_MAX = 2 ** (SCALE_MANT_BITS - 1) - 1


class Mode(enum.IntEnum):
    """Arithmetic mode of a layer, i.e. its precision in a plan (shared with the RTL, whose
    ports and descriptor fields use this enum as their shape, and with the traces).

    The one precision type: a plan's string is :attr:`plan` (``Mode.from_plan`` parses it),
    the weights' format is :attr:`weight_format`, the input's :meth:`input_format`, and
    ``Format.mode`` gives the mode a layer with that input format runs in."""
    INT4 = 0    # INT4 weights x UINT4/INT4 activations, FP8 per-vector scales
    MXINT8 = 1  # MXINT8 weights x MXINT8 activations, E8M0 scale per block of 32

    @property
    def plan(self) -> str:
        """The precision's name in a plan file: ``"int4"`` or ``"mxint8"``."""
        return self.name.lower()

    @classmethod
    def from_plan(cls, name: str) -> "Mode":
        """The mode of a plan's precision string; ValueError naming the choices otherwise."""
        for mode in cls:
            if mode.plan == name:
                return mode
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")

    @property
    def weight_format(self) -> "Format":
        return Format.MXINT8 if self is Mode.MXINT8 else Format.INT4

    def block(self, vector: int) -> int:
        """Elements per scale of this mode's operands (32 for MXINT8, else ``vector``)."""
        return self.weight_format.block(vector)

    def input_format(self, post_relu: bool) -> "Format":
        """Format of a layer input in this mode: MXINT8, else UINT4 after a ReLU, else INT4."""
        if self is Mode.MXINT8:
            return Format.MXINT8
        return Format.UINT4 if post_relu else Format.INT4


class Format(enum.IntEnum):
    """Number format of an activation tensor (a layer's input or output)."""
    UINT4 = 0   # post-ReLU, codes 0..15, FP8 scale per vector
    INT4 = 1    # signed, codes -7..7, FP8 scale per vector
    MXINT8 = 2  # codes -127..127, E8M0 scale per block of 32

    @property
    def mode(self) -> Mode:
        """The mode of a layer whose input has this format (MXINT8 exactly for MXINT8)."""
        return Mode.MXINT8 if self is Format.MXINT8 else Mode.INT4

    def block(self, vector: int) -> int:
        """Elements per scale along the channel axis (32 for MXINT8, else ``vector``)."""
        return nx.MX_BLOCK if self is Format.MXINT8 else vector


#: Precision names of a plan file, in :class:`Mode` order.
PRECISIONS = tuple(m.plan for m in Mode)


def block_size(fmt: Format, vector: int) -> int:
    """Elements per scale along the channel axis for ``fmt``."""
    return Format(fmt).block(vector)


# --------------------------------------------------------------------------- integer rounding

def rne_shift(n, shift: int) -> np.ndarray:
    """Exact round-half-even of ``n * 2**shift`` for an integer array.

    Returns int64 when ``n`` is int64 and the result provably fits, else Python ints in an
    object array (no width limit). Positive shifts are exact left shifts.
    """
    n = np.asarray(n)
    if n.dtype != np.int64 or shift > 0:
        n = n.astype(object)
    if shift >= 0:
        return n * (1 << shift)
    k = -shift
    q = n >> k                      # floor division by 2**k
    r = n - (q << k)                # remainder in [0, 2**k)
    half = 1 << (k - 1)
    up = (r > half) | ((r == half) & (q % 2 == 1))
    return q + up.astype(np.int64)


# --------------------------------------------------------------------------- convolution

@dataclasses.dataclass(frozen=True)
class ConvShape:
    """Geometry of one convolution in channel-last layout."""
    height: int
    width: int
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int

    def __post_init__(self):
        for name in ("height", "width", "cin", "cout"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {self.kernel!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride!r}")
        if self.padding not in range(self.kernel):
            raise ValueError(f"padding must be in [0, {self.kernel - 1}] for kernel "
                             f"{self.kernel}, got {self.padding!r}")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"a {self.height}x{self.width} input is smaller than the "
                             f"{self.kernel}x{self.kernel} kernel with padding {self.padding}")

    @property
    def out_height(self) -> int:
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    def taps(self):
        """Kernel taps (ky, kx) in the order the accelerator walks them."""
        return [(ky, kx) for ky in range(self.kernel) for kx in range(self.kernel)]


def _check_codes(name, arr, shape, dtype, lo, hi):
    arr = np.asarray(arr)
    if arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name} holds values outside [{lo}, {hi}] "
                         f"(min {arr.min()}, max {arr.max()})")
    return arr


def _code_range(fmt: Format):
    return {Format.UINT4: (np.uint8, 0, nx.UINT4_MAX),
            Format.INT4: (np.int8, -nx.INT4_MAX, nx.INT4_MAX),
            Format.MXINT8: (np.int8, -nx.MX_ELEMENT_MAX, nx.MX_ELEMENT_MAX)}[fmt]


def _scale_mantissa_exponent(scale_codes: np.ndarray, fmt: Format):
    """Integer (M, E) with scale value M * 2**E (FP8 for VSQ, 1 * 2**(s-127-6) for MXINT8)."""
    if fmt == Format.MXINT8:
        e = scale_codes.astype(np.int64) - nx.MX_SCALE_BIAS - nx.MX_ELEMENT_FRAC_BITS
        return np.ones_like(e), e
    return nx._fp8_mantissa_exponent(scale_codes)


def conv2d_acc(shape: ConvShape, x_codes, x_scales, w_codes, w_scales, *,
               x_format: Format, vector: int = 16):
    """Exact integer convolution. Returns ``(acc, saturated_terms)``.

    ``acc`` is int64 ``[out_height, out_width, cout]`` on the grid 2**-ACC_FRAC_BITS;
    ``saturated_terms`` counts terms clamped to +-TERM_LIMIT. Weights are INT4 (x_format UINT4
    or INT4) or MXINT8 (x_format MXINT8); padding pixels are zero.
    """
    vec = nx._check_vector(vector)
    x_format = Format(x_format)
    blk = block_size(x_format, vec)
    w_format = Format(x_format).mode.weight_format
    nblk = -(-shape.cin // blk)
    k = shape.kernel
    x_dtype, x_lo, x_hi = _code_range(x_format)
    w_dtype, w_lo, w_hi = _code_range(w_format)
    scale_hi = 255 if x_format == Format.MXINT8 else nx.FP8_MAX_CODE
    scale_lo_x = 0
    x_codes = _check_codes("x_codes", x_codes, (shape.height, shape.width, shape.cin),
                           x_dtype, x_lo, x_hi)
    x_scales = _check_codes("x_scales", x_scales, (shape.height, shape.width, nblk),
                            np.uint8, scale_lo_x, scale_hi - (x_format == Format.MXINT8))
    w_codes = _check_codes("w_codes", w_codes, (shape.cout, k, k, shape.cin),
                           w_dtype, w_lo, w_hi)
    w_scales = _check_codes("w_scales", w_scales, (shape.cout, k, k, nblk),
                            np.uint8, 0, scale_hi - (x_format == Format.MXINT8))
    if k * k * nblk > MAX_TERMS:
        raise ValueError(f"{k * k * nblk} terms per output exceed MAX_TERMS={MAX_TERMS}")

    p = shape.padding
    xq = np.pad(x_codes.astype(np.int64), ((p, p), (p, p), (0, nblk * blk - shape.cin)))
    xm, xe = _scale_mantissa_exponent(x_scales, x_format)
    xm = np.pad(xm, ((p, p), (p, p), (0, 0)))  # padding pixels: mantissa 0 -> value 0
    xe = np.pad(xe, ((p, p), (p, p), (0, 0)))
    wq = np.pad(w_codes.astype(np.int64), ((0, 0), (0, 0), (0, 0), (0, nblk * blk - shape.cin)))
    wm, we = _scale_mantissa_exponent(w_scales, w_format)

    ho, wo, s = shape.out_height, shape.out_width, shape.stride
    acc = np.zeros((ho, wo, shape.cout), dtype=np.int64)
    saturated = 0
    for ky, kx in shape.taps():
        window = (slice(ky, ky + s * (ho - 1) + 1, s), slice(kx, kx + s * (wo - 1) + 1, s))
        xv = xq[window].reshape(ho, wo, nblk, blk)
        wv = wq[:, ky, kx].reshape(shape.cout, nblk, blk)
        dot = np.einsum("hwnv,cnv->hwcn", xv, wv)           # |dot| < 2**19
        mant = dot * xm[window][:, :, None, :] * wm[None, None, :, ky, kx, :]  # < 2**19
        shift = xe[window][:, :, None, :] + we[None, None, :, ky, kx, :] + ACC_FRAC_BITS
        term = np.rint(np.ldexp(mant.astype(np.float64), shift))  # exact scaling, then RNE
        clamped = np.abs(term) > TERM_LIMIT
        saturated += int(clamped.sum())
        term = np.clip(term, -TERM_LIMIT, TERM_LIMIT).astype(np.int64)
        acc += term.sum(axis=-1)
    return acc, saturated


# --------------------------------------------------------------------------- post-processing

@dataclasses.dataclass(frozen=True)
class PpuResult:
    codes: np.ndarray        # [h, w, c] uint8 (UINT4) or int8 (INT4, MXINT8)
    scales: np.ndarray       # [h, w, ceil(c / block)] uint8 (FP8 or E8M0 codes)
    zero_counts: np.ndarray  # [c] int64: output codes equal to zero, over all pixels
    saturated: int           # PPU values clamped to the signed PPU_WIDTH range


def ppu_fixed(acc, scale_mant, scale_shift: int, bias, residual=None, *, relu: bool):
    """The PPU's fixed-point stage: ``Y = RNE(acc * K[c] / 2**shift) + B[c] (+ R)``, then
    saturation to signed PPU_WIDTH bits and optional ReLU. Returns ``(Y int64, saturated)``.

    ``Y`` is on the grid 2**-PPU_FRAC_BITS; so are ``bias`` and ``residual``.
    """
    acc = np.asarray(acc)
    if acc.dtype != np.int64 or acc.ndim < 1:
        raise TypeError(f"acc must be an int64 [..., c] array, got {acc.dtype} {acc.shape}")
    c = acc.shape[-1]
    scale_mant = _check_codes("scale_mant", scale_mant, (c,), np.int32, -_SCALE_MAX, _SCALE_MAX)
    bias = _check_codes("bias", bias, (c,), np.int32, _PPU_MIN, _PPU_MAX)
    if isinstance(scale_shift, bool) or not isinstance(scale_shift, (int, np.integer)) \
            or not 0 <= scale_shift <= SCALE_SHIFT_MAX:
        raise ValueError(f"scale_shift must be an int in [0, {SCALE_SHIFT_MAX}], "
                         f"got {scale_shift!r}")
    # magnitudes as Python ints: np.abs(-2**63) is still negative in int64
    peak = max(int(acc.max(initial=0)), -int(acc.min(initial=0))) \
        * int(np.abs(scale_mant).max(initial=0))
    if peak < 2 ** 62:   # fast path: exact in int64
        prod = acc * scale_mant.astype(np.int64)
    else:
        prod = acc.astype(object) * scale_mant.astype(np.int64).astype(object)
    y = rne_shift(prod, -int(scale_shift)) + bias.astype(np.int64)
    if residual is not None:
        residual = _check_codes("residual", residual, acc.shape, np.int32, _PPU_MIN, _PPU_MAX)
        y = y + residual.astype(np.int64)
    saturated = int(np.count_nonzero((y > _PPU_MAX) | (y < _PPU_MIN)))
    y = np.clip(y, _PPU_MIN, _PPU_MAX).astype(np.int64)
    if relu:
        y = np.maximum(y, 0)
    return y, saturated


def quantize_output(y, out_format: Format, vector: int = 16):
    """Re-quantize PPU values (int, grid 2**-PPU_FRAC_BITS) along channels with the numerics
    library: the values are exact in float64, so the integer rules of ``numerics`` apply."""
    out_format = Format(out_format)
    real = np.ldexp(np.asarray(y, dtype=np.int64).astype(np.float64), -PPU_FRAC_BITS)
    if out_format == Format.UINT4:
        return nx.uint4_quantize(real, axis=-1, vector=vector)
    if out_format == Format.INT4:
        return nx.int4_quantize(real, axis=-1, vector=vector)
    return nx.mxint8_quantize(real, axis=-1)


def ppu(acc, scale_mant, scale_shift, bias, residual=None, *, relu: bool,
        out_format: Format, vector: int = 16) -> PpuResult:
    """Post-processing of one layer output: fixed-point scale/bias/residual/ReLU, then
    re-quantization and per-channel zero counting."""
    out_format = Format(out_format)
    if out_format == Format.UINT4 and not relu:
        raise ValueError("out_format UINT4 needs relu=True (UINT4 holds no negative values)")
    y, saturated = ppu_fixed(acc, scale_mant, scale_shift, bias, residual, relu=relu)
    codes, scales = quantize_output(y, out_format, vector)
    zero_counts = (codes == 0).reshape(-1, codes.shape[-1]).sum(axis=0).astype(np.int64)
    return PpuResult(codes, scales, zero_counts, saturated)


# --------------------------------------------------------------------------- sparsity detector

def channel_map(zero_counts, pixels: int, *, threshold_pct: int = THRESHOLD_DEFAULT_PCT,
                vector: int = 16) -> np.ndarray:
    """Dense/sparse label per channel group of ``vector`` channels (True = sparse).

    A group is sparse when ``100 * (zeros + (vector - channels) * pixels) >= threshold_pct *
    vector * pixels``, where ``zeros`` sums the group's per-channel zero counts and ``channels``
    is the number of real channels in the group (the last group may be short): the missing
    channels of a short group are zero in every activation word, so they count as zeros (the
    sparse engine skips them, the dense one multiplies them).
    """
    vec = nx._check_vector(vector)
    zc = np.asarray(zero_counts)
    if zc.ndim != 1 or not np.issubdtype(zc.dtype, np.integer):
        raise TypeError(f"zero_counts must be a 1-D integer array, got {zc.dtype} {zc.shape}")
    if isinstance(threshold_pct, bool) or not isinstance(threshold_pct, (int, np.integer)) \
            or not 0 <= threshold_pct <= 100:
        raise ValueError(f"threshold_pct must be an int in [0, 100], got {threshold_pct!r}")
    if not isinstance(pixels, (int, np.integer)) or pixels < 1:
        raise ValueError(f"pixels must be a positive int, got {pixels!r}")
    if zc.size and (zc.min() < 0 or zc.max() > pixels):
        raise ValueError(f"zero_counts must lie in [0, {pixels}]")
    groups = -(-zc.size // vec)
    padded = np.zeros(groups * vec, dtype=np.int64)
    padded[: zc.size] = zc
    zeros = padded.reshape(groups, vec).sum(axis=1)
    channels = np.minimum(vec, zc.size - vec * np.arange(groups))
    return 100 * (zeros + (vec - channels) * pixels) >= threshold_pct * vec * pixels


# --------------------------------------------------------------------------- one layer

@dataclasses.dataclass(frozen=True)
class LayerResult:
    acc: np.ndarray
    out: PpuResult
    next_map: np.ndarray     # [ceil(cout / vector)] bool, True = sparse
    saturated_terms: int


def run_layer(shape: ConvShape, x_codes, x_scales, w_codes, w_scales, scale_mant,
              scale_shift, bias, residual=None, *, x_format: Format, out_format: Format,
              relu: bool, threshold_pct: int = THRESHOLD_DEFAULT_PCT,
              vector: int = 16) -> LayerResult:
    """conv2d_acc -> ppu -> channel_map: everything one accelerator layer execution computes.

    The dense/sparse channel map of the *input* does not appear: it changes only where the
    work runs, never the result.
    """
    acc, saturated_terms = conv2d_acc(shape, x_codes, x_scales, w_codes, w_scales,
                                      x_format=x_format, vector=vector)
    out = ppu(acc, scale_mant, scale_shift, bias, residual, relu=relu,
              out_format=out_format, vector=vector)
    pixels = shape.out_height * shape.out_width
    next_map = channel_map(out.zero_counts, pixels, threshold_pct=threshold_pct,
                           vector=vector)
    return LayerResult(acc, out, next_map, saturated_terms)

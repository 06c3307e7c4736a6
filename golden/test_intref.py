"""Tests of the integer layer reference against float64 / exact-rational formulations."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import intref as ir
from golden import numerics as nx
from golden.test_numerics import rne_fraction

F = ir.Format


def random_layer(rng, shape: ir.ConvShape, x_format: F, sparsity: float = 0.5):
    """Quantized random activations and weights for ``shape`` (channel-last)."""
    x = rng.standard_normal((shape.height, shape.width, shape.cin)) * rng.uniform(0.1, 4)
    if x_format == F.UINT4:
        x = np.maximum(x, 0) * (rng.random(x.shape) >= sparsity)
    w = rng.standard_normal((shape.cout, shape.kernel, shape.kernel, shape.cin)) * 0.2
    if x_format == F.MXINT8:
        return (*nx.mxint8_quantize(x), *nx.mxint8_quantize(w))
    quant = nx.uint4_quantize if x_format == F.UINT4 else nx.int4_quantize
    return (*quant(x), *nx.int4_quantize(w))


def dequantized(x_format, xc, xs, wc, ws):
    if x_format == F.MXINT8:
        return nx.mxint8_dequantize(xc, xs), nx.mxint8_dequantize(wc, ws)
    deq = nx.uint4_dequantize if x_format == F.UINT4 else nx.int4_dequantize
    return deq(xc, xs), nx.int4_dequantize(wc, ws)


def padded_taps(shape, x):
    """Yield (oy, ox, ky, kx, activation vector) with zero padding, float64."""
    p = shape.padding
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    for oy in range(shape.out_height):
        for ox in range(shape.out_width):
            for ky, kx in shape.taps():
                yield oy, ox, ky, kx, xp[oy * shape.stride + ky, ox * shape.stride + kx]


@st.composite
def conv_shapes(draw, max_size=6, max_cin=40):
    kernel = draw(st.sampled_from([1, 3]))
    padding = draw(st.integers(0, kernel - 1))
    smallest = max(1, kernel - 2 * padding)
    return ir.ConvShape(draw(st.integers(smallest, max_size)),
                        draw(st.integers(smallest, max_size)), draw(st.integers(1, max_cin)),
                        draw(st.integers(1, 5)), kernel, draw(st.sampled_from([1, 2])), padding)


shapes = conv_shapes()


@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from([F.UINT4, F.INT4]), st.integers(0, 2 ** 32 - 1))
def test_int4_accumulation_equals_exact_float_conv(shape, x_format, seed):
    rng = np.random.default_rng(seed)
    xc, xs, wc, ws = random_layer(rng, shape, x_format)
    acc, saturated = ir.conv2d_acc(shape, xc, xs, wc, ws, x_format=x_format)
    x, w = dequantized(x_format, xc, xs, wc, ws)
    assert saturated == 0 and acc.dtype == np.int64
    exact = np.zeros(acc.shape)
    for co in range(shape.cout):
        terms: dict = {}
        for oy, ox, ky, kx, vec in padded_taps(shape, x):
            terms.setdefault((oy, ox), []).extend((vec * w[co, ky, kx]).tolist())
        for (oy, ox), products in terms.items():
            exact[oy, ox, co] = math.fsum(products)   # correctly rounded exact sum
    assert np.array_equal(np.ldexp(acc.astype(np.float64), -ir.ACC_FRAC_BITS), exact)


@settings(max_examples=25, deadline=None)
@given(shapes, st.integers(0, 2 ** 32 - 1))
def test_mxint8_accumulation_rounds_each_block_term(shape, seed):
    rng = np.random.default_rng(seed)
    xc, xs, wc, ws = random_layer(rng, shape, F.MXINT8)
    acc, _ = ir.conv2d_acc(shape, xc, xs, wc, ws, x_format=F.MXINT8)
    x, w = dequantized(F.MXINT8, xc, xs, wc, ws)
    expected = np.zeros(acc.shape, dtype=np.int64)
    for oy, ox, ky, kx, vec in padded_taps(shape, x):
        for co in range(shape.cout):
            for b in range(0, shape.cin, 32):
                block = math.fsum((vec[b:b + 32] * w[co, ky, kx, b:b + 32]).tolist())
                expected[oy, ox, co] += int(np.rint(np.ldexp(block, ir.ACC_FRAC_BITS)))
    assert np.array_equal(acc, expected)


@pytest.mark.parametrize("w_code, ex, ew", [(3, -12, -12), (3, 0, -13), (1, 0, -13),
                                            (5, 0, -13), (-3, 0, -13), (7, 2, -10)])
def test_mxint8_terms_finer_than_the_grid_round_to_even(w_code, ex, ew):
    shape = ir.ConvShape(1, 1, 32, 1, 1, 1, 0)
    xc = np.zeros((1, 1, 32), np.int8)
    wc = np.zeros((1, 1, 1, 32), np.int8)
    xc[0, 0, 0], wc[0, 0, 0, 0] = 1, w_code
    xs = np.array([[[127 + ex]]], np.uint8)
    ws = np.array([[[[127 + ew]]]], np.uint8)
    acc, _ = ir.conv2d_acc(shape, xc, xs, wc, ws, x_format=F.MXINT8)
    exact = Fraction(1, 64) * Fraction(2) ** ex * Fraction(w_code, 64) * Fraction(2) ** ew
    assert acc[0, 0, 0] == rne_fraction(exact * 2 ** ir.ACC_FRAC_BITS)


def test_term_saturation_is_counted():
    shape = ir.ConvShape(1, 1, 32, 1, 1, 1, 0)
    xc = np.full((1, 1, 32), 127, np.int8)
    wc = np.full((1, 1, 1, 32), 127, np.int8)
    big = np.array([[[254]]], np.uint8)
    acc, saturated = ir.conv2d_acc(shape, xc, big, wc, big[None], x_format=F.MXINT8)
    assert saturated == 1 and acc[0, 0, 0] == ir.TERM_LIMIT


def test_accumulation_is_order_independent():
    """Summing the terms of any permutation of (tap, vector) gives the same integer."""
    rng = np.random.default_rng(7)
    shape = ir.ConvShape(5, 5, 48, 3, 3, 1, 1)
    xc, xs, wc, ws = random_layer(rng, shape, F.UINT4)
    acc, _ = ir.conv2d_acc(shape, xc, xs, wc, ws, x_format=F.UINT4)
    # split the input channel vectors into two halves, as DPE and SPE would, and add
    parts = []
    for keep in ([0, 2], [1]):
        xm = xc.copy()
        mask = np.zeros(48, bool)
        for v in keep:
            mask[16 * v:16 * v + 16] = True
        xm[..., ~mask] = 0
        parts.append(ir.conv2d_acc(shape, xm, xs, wc, ws, x_format=F.UINT4)[0])
    assert np.array_equal(parts[0] + parts[1], acc)


def ppu_reference(acc, k, shift, bias, residual, relu):
    """The PPU's fixed-point stage with exact rationals."""
    y = np.empty(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        c = idx[-1]
        v = rne_fraction(Fraction(int(acc[idx]) * int(k[c]), 2 ** shift)) + int(bias[c])
        v += 0 if residual is None else int(residual[idx])
        v = max(-2 ** 31, min(2 ** 31 - 1, v))
        y[idx] = max(v, 0) if relu else v
    return y


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.booleans(), st.booleans(), st.integers(0, 63))
def test_ppu_fixed_point_matches_rationals(seed, relu, with_residual, shift):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2 ** 62, 2 ** 62, (2, 3, 20), dtype=np.int64) >> rng.integers(0, 62)
    k = rng.integers(-2 ** 15 + 1, 2 ** 15, 20).astype(np.int32)
    bias = rng.integers(-2 ** 20, 2 ** 20, 20).astype(np.int32)
    residual = rng.integers(-2 ** 20, 2 ** 20, acc.shape).astype(np.int32) \
        if with_residual else None
    y, saturated = ir.ppu_fixed(acc, k, shift, bias, residual, relu=relu)
    assert np.array_equal(y, ppu_reference(acc, k, shift, bias, residual, relu))
    if relu:
        assert y.min() >= 0


def test_ppu_saturation_is_counted():
    acc = np.array([[[2 ** 40, -2 ** 40, 5]]], np.int64)
    y, saturated = ir.ppu_fixed(acc, np.ones(3, np.int32), 0, np.zeros(3, np.int32), relu=False)
    assert saturated == 2 and y.tolist() == [[[2 ** 31 - 1, -2 ** 31, 5]]]


def test_ppu_extreme_accumulator_is_exact():
    """The most negative int64 accumulator times a negative scale is a large positive product
    (np.abs of it is negative in int64: the exact path must still be taken)."""
    acc = np.array([-2 ** 63, -2 ** 63], np.int64)
    y, saturated = ir.ppu_fixed(acc, np.array([-32767, 1], np.int32), 0,
                                np.zeros(2, np.int32), relu=False)
    assert saturated == 2 and y.tolist() == [2 ** 31 - 1, -2 ** 31]
    y, saturated = ir.ppu_fixed(acc, np.array([-32767, 1], np.int32), 63,
                                np.zeros(2, np.int32), relu=False)
    assert saturated == 0 and y.tolist() == [32767, -1]


@pytest.mark.parametrize("fmt", list(F))
def test_ppu_output_formats_and_zero_counts(fmt):
    rng = np.random.default_rng(int(fmt))
    acc = rng.integers(-2 ** 30, 2 ** 30, (4, 4, 40)).astype(np.int64)
    k = np.full(40, 1 << 12, np.int32)
    relu = fmt == F.UINT4
    out = ir.ppu(acc, k, 20, np.zeros(40, np.int32), relu=relu, out_format=fmt)
    y, _ = ir.ppu_fixed(acc, k, 20, np.zeros(40, np.int32), relu=relu)
    real = np.ldexp(y.astype(np.float64), -16)
    if fmt == F.MXINT8:
        deq = nx.mxint8_dequantize(out.codes, out.scales)
        assert out.scales.shape == (4, 4, 2)
    else:
        deq = (nx.uint4_dequantize if relu else nx.int4_dequantize)(out.codes, out.scales)
        assert out.scales.shape == (4, 4, 3)
        s = np.repeat(nx.fp8_e4m3_decode(out.scales), 16, axis=-1)[..., :40]
        assert np.all(np.abs(deq - real) <= s / 2)
    assert np.array_equal(out.zero_counts, (out.codes == 0).sum(axis=(0, 1)))
    if relu:
        assert out.zero_counts.sum() >= (y == 0).sum()


def test_channel_map_threshold_and_short_group():
    zeros = np.array([3] * 16 + [10] * 16 + [10, 0])     # pixels = 10
    sparse = ir.channel_map(zeros, 10, threshold_pct=30)
    # 48/160 = 30 %, 100 %; the short group: 10 zeros + 14 missing channels x 10 = 150/160
    assert sparse.tolist() == [True, True, True]
    assert ir.channel_map(zeros, 10, threshold_pct=31).tolist() == [False, True, True]
    assert ir.channel_map(zeros, 10, threshold_pct=93).tolist() == [False, True, True]
    assert ir.channel_map(zeros, 10, threshold_pct=94).tolist() == [False, True, False]
    assert ir.channel_map(zeros, 10, threshold_pct=0).all()
    # one real channel without zeros (the model's conv_in input): 15/16 missing = 93.75 %
    assert ir.channel_map(np.array([0]), 256, threshold_pct=30).tolist() == [True]
    assert ir.channel_map(np.array([0]), 256, threshold_pct=94).tolist() == [False]


def test_run_layer_composes_the_stages():
    rng = np.random.default_rng(11)
    shape = ir.ConvShape(6, 7, 20, 18, 3, 2, 1)
    xc, xs, wc, ws = random_layer(rng, shape, F.UINT4)
    k = rng.integers(1, 2 ** 14, 18).astype(np.int32)
    bias = rng.integers(-2 ** 16, 2 ** 16, 18).astype(np.int32)
    res = ir.run_layer(shape, xc, xs, wc, ws, k, 24, bias, x_format=F.UINT4,
                       out_format=F.UINT4, relu=True)
    assert res.out.codes.shape == (3, 4, 18) and res.next_map.shape == (2,)
    acc, _ = ir.conv2d_acc(shape, xc, xs, wc, ws, x_format=F.UINT4)
    assert np.array_equal(res.acc, acc)
    assert np.array_equal(res.next_map, ir.channel_map(res.out.zero_counts, 12))


def test_rejects_bad_layers_and_operands():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kernel"):
        ir.ConvShape(4, 4, 16, 16, 5, 1, 0)
    with pytest.raises(ValueError, match="stride"):
        ir.ConvShape(4, 4, 16, 16, 3, 3, 1)
    with pytest.raises(ValueError, match="padding"):
        ir.ConvShape(4, 4, 16, 16, 1, 1, 1)
    with pytest.raises(ValueError, match="cin"):
        ir.ConvShape(4, 4, 0, 16, 1, 1, 0)
    with pytest.raises(ValueError, match="smaller"):
        ir.ConvShape(2, 2, 16, 16, 3, 1, 0)
    shape = ir.ConvShape(4, 4, 20, 8, 3, 1, 1)
    xc, xs, wc, ws = random_layer(rng, shape, F.UINT4)
    with pytest.raises(ValueError, match="x_codes has shape"):
        ir.conv2d_acc(shape, xc[:, :, :16], xs, wc, ws, x_format=F.UINT4)
    with pytest.raises(TypeError, match="x_codes must have dtype uint8"):
        ir.conv2d_acc(shape, xc.astype(np.int8), xs, wc, ws, x_format=F.UINT4)
    bad = xc.copy()
    bad[0, 0, 0] = 16
    with pytest.raises(ValueError, match="x_codes holds values outside"):
        ir.conv2d_acc(shape, bad, xs, wc, ws, x_format=F.UINT4)
    bad_scale = xs.copy()
    bad_scale[0, 0, 0] = 0x7F
    with pytest.raises(ValueError, match="x_scales holds values outside"):
        ir.conv2d_acc(shape, xc, bad_scale, wc, ws, x_format=F.UINT4)
    with pytest.raises(ValueError, match="MAX_TERMS"):
        big = ir.ConvShape(3, 3, 16 * 228, 1, 3, 1, 1)
        ir.conv2d_acc(big, np.zeros((3, 3, big.cin), np.uint8), np.zeros((3, 3, 228), np.uint8),
                      np.zeros((1, 3, 3, big.cin), np.int8),
                      np.zeros((1, 3, 3, 228), np.uint8), x_format=F.UINT4)
    acc = np.zeros((2, 2, 4), np.int64)
    with pytest.raises(ValueError, match="scale_shift"):
        ir.ppu_fixed(acc, np.ones(4, np.int32), 64, np.zeros(4, np.int32), relu=True)
    with pytest.raises(ValueError, match="scale_mant holds values outside"):
        ir.ppu_fixed(acc, np.full(4, -2 ** 15, np.int32), 0, np.zeros(4, np.int32), relu=True)
    with pytest.raises(ValueError, match="needs relu"):
        ir.ppu(acc, np.ones(4, np.int32), 0, np.zeros(4, np.int32), relu=False,
               out_format=F.UINT4)
    with pytest.raises(ValueError, match="threshold_pct"):
        ir.channel_map(np.zeros(4, np.int64), 4, threshold_pct=101)
    with pytest.raises(ValueError, match="zero_counts"):
        ir.channel_map(np.array([5]), 4)

"""Tests of the number formats against independent references (ml_dtypes, fractions)."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from golden import numerics as nx

ALL_CODES = np.arange(256, dtype=np.uint8)


def ml_encode(x) -> np.ndarray:
    """ml_dtypes' FP8 codes for float32 input, with -0 canonicalised to 0x00."""
    codes = np.asarray(x, np.float32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    return np.where(codes == 0x80, 0, codes).astype(np.uint8)


def rne_fraction(f: Fraction) -> int:
    """Round half to even of an exact rational (independent of numpy)."""
    fl = f.numerator // f.denominator
    rem = f - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2):
        return fl + 1
    return fl


# --------------------------------------------------------------------------- FP8

def test_fp8_decode_all_codes_match_ml_dtypes():
    ours = nx.fp8_e4m3_decode(ALL_CODES)
    ref = ALL_CODES.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    assert np.array_equal(ours, ref, equal_nan=True)
    assert np.array_equal(np.signbit(ours), np.signbit(ref))


def test_fp8_encode_roundtrips_every_finite_code():
    finite = ALL_CODES[(ALL_CODES & 0x7F) != 0x7F]
    back = nx.fp8_e4m3_encode(nx.fp8_e4m3_decode(finite))
    assert np.array_equal(back, np.where(finite == 0x80, 0, finite))


def _midpoint_cases() -> np.ndarray:
    """Every midpoint between adjacent finite FP8 values, and the float32 values around it."""
    vals = nx.fp8_e4m3_decode(np.arange(0x7F, dtype=np.uint8))  # 0 .. 448, increasing
    mids = (vals[:-1] + vals[1:]) / 2  # exact: FP8 values have 4 significant bits
    m32 = mids.astype(np.float32)
    assert np.array_equal(m32.astype(np.float64), mids)
    cases = np.concatenate([m32, np.nextafter(m32, np.float32(0)),
                            np.nextafter(m32, np.float32(np.inf)), vals.astype(np.float32)])
    return np.concatenate([cases, -cases])


def test_fp8_encode_every_tie_and_subnormal_matches_ml_dtypes():
    cases = _midpoint_cases()
    assert np.array_equal(nx.fp8_e4m3_encode(cases), ml_encode(cases))


def test_fp8_ties_go_to_even_mantissa():
    vals = nx.fp8_e4m3_decode(np.arange(0x7F, dtype=np.uint8))
    codes = nx.fp8_e4m3_encode((vals[:-1] + vals[1:]) / 2)
    assert np.all(codes % 2 == 0)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float32, 64, elements=st.floats(-448, 448, width=32)))
def test_fp8_encode_matches_ml_dtypes_in_range(x):
    assert np.array_equal(nx.fp8_e4m3_encode(x), ml_encode(x))


@pytest.mark.parametrize("value, code", [(448.0, 0x7E), (463.9, 0x7E), (464.0, 0x7E),
                                         (1e30, 0x7E), (-1e30, 0xFE), (-449.0, 0xFE),
                                         (2.0 ** -10, 0x00), (-(2.0 ** -10), 0x00),
                                         (2.0 ** -10 * 1.0000001, 0x01), (0.0, 0x00),
                                         (-0.0, 0x00), (2.0 ** -6, 0x08)])
def test_fp8_encode_saturation_and_zero(value, code):
    assert nx.fp8_e4m3_encode(np.array([value]))[0] == code


def test_fp8_encode_float64_is_rounded_once():
    # a float64 one ulp above a midpoint rounds up; ml_dtypes (via float32) would double-round
    mid = (1.0 + 1.125) / 2
    assert nx.fp8_e4m3_encode(np.array([np.nextafter(mid, 2.0)]))[0] == 0x39
    assert nx.fp8_e4m3_encode(np.array([mid]))[0] == 0x38


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fp8_encode_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="non-finite"):
        nx.fp8_e4m3_encode(np.array([1.0, bad]))


def test_fp8_rejects_wrong_dtypes():
    with pytest.raises(TypeError, match="floating-point"):
        nx.fp8_e4m3_encode(np.array([1, 2]))
    with pytest.raises(TypeError, match="uint8"):
        nx.fp8_e4m3_decode(np.array([1, 2], dtype=np.int32))


# --------------------------------------------------------------------------- MXINT8

def mx_reference(block: list[float]) -> tuple[list[int], int]:
    """Independent MXINT8 of one block of floats with Python's exact float tools."""
    import math
    amax = max(abs(v) for v in block)
    e = math.frexp(amax)[1] - 1 if amax > 0 else -127
    e = max(-127, min(127, e))
    codes = [max(-127, min(127, rne_fraction(Fraction(v) * Fraction(2) ** (6 - e))))
             for v in block]
    return codes, e + 127


def test_mxint8_one_ulp_below_power_of_two_keeps_lower_exponent():
    below_two = np.nextafter(np.float32(2.0), np.float32(0.0))
    codes, scales = nx.mxint8_quantize(np.array([below_two, 1.0, -0.5], np.float32))
    assert scales.tolist() == [127]            # e = 0, not 1
    assert codes.tolist() == [127, 64, -32]    # RNE(127.99999) = 128 clamps to 127


def test_mxint8_all_zero_block():
    codes, scales = nx.mxint8_quantize(np.zeros((2, 40)))
    assert scales.tolist() == [[0, 0], [0, 0]] and not codes.any()
    assert not nx.mxint8_dequantize(codes, scales).any()


def test_mxint8_one_huge_element_flushes_the_rest():
    block = np.full(32, 1e-3)
    block[5] = 3e6
    codes, scales = nx.mxint8_quantize(block)
    assert scales[0] == 127 + 21           # 2**21 <= 3e6 < 2**22
    assert codes[5] == 92 and np.count_nonzero(codes) == 1


def test_mxint8_never_produces_minus_128_or_nan_scale():
    x = np.array([-1.999, -1.0, 1.0] + [0.0] * 29)  # -127.94 rounds to -128
    codes, scales = nx.mxint8_quantize(x)
    assert codes.min() == -127 and scales[0] != 0xFF


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 80),
                  elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=True)))
def test_mxint8_matches_independent_reference_and_bounds(x):
    codes, scales = nx.mxint8_quantize(x)
    assert codes.shape == x.shape and scales.shape == (-(-x.size // 32),)
    deq = nx.mxint8_dequantize(codes, scales)
    for b in range(scales.size):
        block = x[32 * b: 32 * (b + 1)].astype(np.float64).tolist()
        ref_codes, ref_scale = mx_reference(block)
        assert codes[32 * b: 32 * (b + 1)].tolist() == ref_codes
        assert scales[b] == ref_scale
        e = ref_scale - 127
        err = np.abs(deq[32 * b: 32 * (b + 1)] - np.array(block))
        clamped = np.abs(codes[32 * b: 32 * (b + 1)]) == 127
        assert np.all(err[~clamped] <= 2.0 ** (e - 7))
        assert np.all(err[clamped] <= 2.0 ** (e - 6))


def test_mxint8_axis_and_padding():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((45, 3))
    codes, scales = nx.mxint8_quantize(x, axis=0)
    codes_t, scales_t = nx.mxint8_quantize(x.T, axis=-1)
    assert scales.shape == (2, 3)
    assert np.array_equal(codes, codes_t.T) and np.array_equal(scales, scales_t.T)
    assert np.array_equal(nx.mxint8_dequantize(codes, scales, axis=0),
                          nx.mxint8_dequantize(codes_t, scales_t).T)


def test_mxint8_dequantize_nan_scale_and_shape_check():
    codes = np.ones(32, np.int8)
    assert np.all(np.isnan(nx.mxint8_dequantize(codes, np.array([0xFF], np.uint8))))
    with pytest.raises(ValueError, match="expected"):
        nx.mxint8_dequantize(codes, np.array([127, 127], np.uint8))


def test_mxint8_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        nx.mxint8_quantize(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="non-finite"):
        nx.mxint8_quantize(np.array([np.inf]))
    with pytest.raises(TypeError):
        nx.mxint8_quantize(np.arange(4))
    with pytest.raises(ValueError, match="axis"):
        nx.mxint8_quantize(np.ones((2, 2)), axis=2)
    with pytest.raises(TypeError, match="axis"):
        nx.mxint8_quantize(np.ones(2), axis=0.5)
    with pytest.raises(TypeError, match="int8"):
        nx.mxint8_dequantize(np.ones(32, np.int16), np.array([1], np.uint8))


# --------------------------------------------------------------------------- INT4 / UINT4

def vsq_reference(vec: list[float], qmax: int) -> tuple[list[int], int]:
    """Independent VSQ of one vector: exhaustive search for the scale, Fraction rounding."""
    values = [Fraction(float(v)) for v in nx.fp8_e4m3_decode(np.arange(0x7F, dtype=np.uint8))]
    amax = max(abs(Fraction(v)) for v in vec)
    code = next((c for c, s in enumerate(values) if qmax * s >= amax), 0x7E)
    s = values[code]
    if s == 0:
        return [0] * len(vec), code
    q = [max(-qmax, min(qmax, rne_fraction(Fraction(v) / s))) for v in vec]
    return q, code


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40),
                  elements=st.floats(-7000, 7000, allow_subnormal=True)),
       st.sampled_from([4, 8, 16]))
def test_int4_matches_independent_reference(x, vector):
    codes, scales = nx.int4_quantize(x, vector=vector)
    for b in range(scales.size):
        vec = x[vector * b: vector * (b + 1)].tolist()
        ref_codes, ref_scale = vsq_reference(vec, 7)
        assert codes[vector * b: vector * (b + 1)].tolist() == [int(c) for c in ref_codes]
        assert scales[b] == ref_scale


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 40),
                  elements=st.floats(0, 1e4, allow_subnormal=True)))
def test_uint4_matches_independent_reference(x):
    codes, scales = nx.uint4_quantize(x)
    for b in range(scales.size):
        ref_codes, ref_scale = vsq_reference(x[16 * b: 16 * (b + 1)].tolist(), 15)
        assert codes[16 * b: 16 * (b + 1)].tolist() == ref_codes
        assert scales[b] == ref_scale


def test_vsq_ties_round_to_even():
    # scale 1.0 (code 0x38) is the smallest with 15 * s >= 15; 2.5 -> 2, 3.5 -> 4
    x = np.array([15.0, 2.5, 3.5, 0.5, 1.5] + [0.0] * 11)
    codes, scales = nx.uint4_quantize(x)
    assert scales.tolist() == [0x38]
    assert codes[:5].tolist() == [15, 2, 4, 0, 2]


def test_vsq_scale_is_smallest_that_does_not_clip():
    rng = np.random.default_rng(2)
    x = np.abs(rng.standard_normal((500, 16))) * rng.uniform(1e-3, 100, (500, 1))
    _, scales = nx.uint4_quantize(x)
    s = nx.fp8_e4m3_decode(scales[:, 0])
    below = nx.fp8_e4m3_decode(scales[:, 0] - 1)
    amax = x.max(axis=1)
    assert np.all(15 * s >= amax) and np.all(15 * below < amax)


def test_uint4_largest_element_uses_top_levels():
    rng = np.random.default_rng(3)
    x = np.abs(rng.standard_normal((1000, 16))) * rng.uniform(0.25, 100, (1000, 1))
    codes, scales = nx.uint4_quantize(x)
    assert scales.min() >= 0x08                       # normal scales only
    assert codes.max(axis=1).min() >= 13


def test_vsq_dequantize_error_bound():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 37)) * 3
    codes, scales = nx.int4_quantize(x, axis=1)
    deq = nx.int4_dequantize(codes, scales, axis=1)
    s = np.repeat(nx.fp8_e4m3_decode(scales), 16, axis=1)[:, :37]
    assert np.all(np.abs(deq - x) <= s / 2)


def test_vsq_underflow_overflow_and_zero():
    tiny = np.full(16, 1e-7)
    codes, scales = nx.uint4_quantize(tiny)
    assert scales.tolist() == [0x01] and not codes.any()
    huge = np.array([1e5, 50.0] + [0.0] * 14)
    codes, scales = nx.uint4_quantize(huge)
    assert scales.tolist() == [0x7E] and codes[0] == 15 and codes[1] == 0
    codes, scales = nx.int4_quantize(np.zeros(16))
    assert scales.tolist() == [0] and not codes.any()
    assert not nx.int4_dequantize(codes, scales).any()


def test_vsq_second_level_scale_per_channel():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((8, 3, 3, 20)) * np.logspace(-6, 1, 8)[:, None, None, None]
    s2 = np.abs(w).max(axis=(1, 2, 3), keepdims=True)
    codes, scales = nx.int4_quantize(w, axis=-1, scale2=s2)
    ref_codes, ref_scales = nx.int4_quantize(w / s2, axis=-1)
    assert np.array_equal(codes, ref_codes) and np.array_equal(scales, ref_scales)
    deq = nx.int4_dequantize(codes, scales, axis=-1, scale2=s2)
    s = np.repeat(nx.fp8_e4m3_decode(scales), 16, axis=-1)[..., :20]
    assert np.all(np.abs(deq - w) <= s * s2 / 2 * (1 + 1e-12))  # one rounding from scale2
    assert np.all(np.abs(deq - w) <= s2 * 0.09)    # s <= 9/8 * max / 7: relative to the channel
    with pytest.raises(ValueError, match="size 1 along"):
        nx.int4_quantize(w, axis=-1, scale2=np.ones(20))
    with pytest.raises(ValueError, match="positive"):
        nx.int4_quantize(w, scale2=0.0)
    with pytest.raises(TypeError, match="scale2"):
        nx.int4_quantize(w, scale2="1")


def test_vsq_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        nx.uint4_quantize(np.array([1.0, -0.5]))
    with pytest.raises(TypeError, match="floating-point"):
        nx.int4_quantize(np.array([1, 2], dtype=np.int32))
    with pytest.raises(ValueError, match="vector"):
        nx.int4_quantize(np.ones(16), vector=10)
    with pytest.raises(TypeError, match="vector"):
        nx.int4_quantize(np.ones(16), vector=16.0)
    with pytest.raises(ValueError, match="axis"):
        nx.uint4_quantize(np.ones((2, 16)), axis=-3)
    with pytest.raises(ValueError, match="non-finite"):
        nx.uint4_quantize(np.array([np.inf]))
    with pytest.raises(ValueError, match="outside"):
        nx.uint4_dequantize(np.array([16], np.uint8), np.array([1], np.uint8))
    with pytest.raises(TypeError, match="int8"):
        nx.int4_dequantize(np.array([1], np.uint8), np.array([1], np.uint8))
    with pytest.raises(ValueError, match="outside"):
        nx.int4_dequantize(np.array([1], np.int8), np.array([0x7F], np.uint8))
    with pytest.raises(ValueError, match="dimension"):
        nx.int4_quantize(np.float64(1.0))


def exact_sq_error(vec, codes, scale_code) -> Fraction:
    s = Fraction(float(nx.fp8_e4m3_decode(np.array([scale_code], np.uint8))[0]))
    return sum((int(q) * s - Fraction(float(v))) ** 2 for q, v in zip(codes, vec))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float16, st.integers(1, 40),
                  elements=st.floats(-300, 300, width=16)))
def test_int4_mse_picks_the_least_error_scale(x):
    """Independent check: each vector's scale is, among the no-clip scale and the 7 codes below
    it, one with the least exact squared error, and its codes are RNE(v / s) clamped to 7."""
    x = x.astype(np.float64)
    codes, scales = nx.int4_quantize_mse(x)
    base_codes, base = nx.int4_quantize(x)
    for b in range(scales.size):
        vec = x[16 * b: 16 * (b + 1)].tolist()
        if base[b] == 0:
            assert scales[b] == 0 and not codes[16 * b: 16 * (b + 1)].any()
            continue
        cands = sorted({max(int(base[b]) - k, 1) for k in range(nx.MSE_CANDIDATES)})
        assert int(scales[b]) in cands
        s = Fraction(float(nx.fp8_e4m3_decode(scales[b:b + 1])[0]))
        ref_codes = [max(-7, min(7, rne_fraction(Fraction(v) / s))) for v in vec]
        assert codes[16 * b: 16 * (b + 1)].tolist() == ref_codes
        best = min(exact_sq_error(vec, [max(-7, min(7, rne_fraction(
            Fraction(v) / Fraction(float(nx.fp8_e4m3_decode(np.array([c], np.uint8))[0])))))
            for v in vec], c) for c in cands)
        got = exact_sq_error(vec, ref_codes, int(scales[b]))
        assert got <= best * (1 + Fraction(1, 10 ** 9))
        assert got <= exact_sq_error(vec, base_codes[16 * b: 16 * (b + 1)].tolist(), int(base[b]))


def test_int4_mse_with_one_candidate_is_the_no_clip_rule():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 3, 3, 40))
    s2 = np.ldexp(1.0, rng.integers(-3, 3, 8))[:, None, None, None]
    for a, b in zip(nx.int4_quantize_mse(w, vector=16, scale2=s2, candidates=1),
                    nx.int4_quantize(w, vector=16, scale2=s2)):
        assert np.array_equal(a, b)
    codes, scales = nx.int4_quantize_mse(w, vector=16, scale2=s2)
    deq = nx.int4_dequantize(codes, scales, vector=16, scale2=s2)
    deq_max = nx.int4_dequantize(*nx.int4_quantize(w, vector=16, scale2=s2), vector=16,
                                 scale2=s2)
    assert ((deq - w) ** 2).sum() < 0.9 * ((deq_max - w) ** 2).sum()   # clipping pays here


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_int4_mse_rejects_bad_candidates(bad):
    with pytest.raises(ValueError, match="candidates must be an int >= 1"):
        nx.int4_quantize_mse(np.ones(16), candidates=bad)

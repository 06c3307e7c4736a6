"""Random layer executions through the golden integer reference (for fuzzing the RTL)."""

from __future__ import annotations

import numpy as np

from golden import intref as ir
from golden import numerics as nx
from hw.descriptor import DIM_BITS
from traces.format import Descriptor, Execution, expected_arrays

CHANNEL_MAPS = ("detect", "dense", "sparse", "random")
#: Most values (inputs + weights + outputs) of a random layer: ~2 GB of float64 temporaries.
MAX_VALUES = 2 ** 26


def random_execution(*, cin: int, cout: int, height: int, width: int, kernel: int,
                     stride: int, sparsity: float, mode: str, seed: int,
                     padding: int | None = None, residual: bool = False,
                     out_format: str | None = None, channel_map: str = "detect",
                     threshold_pct: int = ir.THRESHOLD_DEFAULT_PCT,
                     vector: int = 16, saturate: bool = False) -> Execution:
    """One random layer execution of any legal shape.

    Activations are UINT4 (INT4 mode) with a fraction ``sparsity`` of zeros, or MXINT8;
    weights INT4 / MXINT8. The PPU scale is chosen from the accumulator so the output spans
    the output format's range. ``channel_map``: "detect" labels the input groups with the
    sparsity detector's rule, "dense"/"sparse" force one label, "random" draws each.
    ``saturate`` drives both saturation paths: MXINT8 inputs get their first 32-channel block
    scaled by 2**60 (those accumulator terms clamp to +-TERM_LIMIT) and the PPU shift is 16
    bits below the fitting one (large values clamp to 32 bits).
    Raises ValueError for illegal arguments.
    """
    if mode not in ("int4", "mxint8"):
        raise ValueError(f"mode must be 'int4' or 'mxint8', got {mode!r}")
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    if channel_map not in CHANNEL_MAPS:
        raise ValueError(f"channel_map must be one of {CHANNEL_MAPS}, got {channel_map!r}")
    padding = kernel // 2 if padding is None else padding
    shape = ir.ConvShape(height, width, cin, cout, kernel, stride, padding)  # validates
    for name in ("height", "width", "cin", "cout"):  # the descriptor's field width
        if getattr(shape, name) >= 2 ** DIM_BITS:
            raise ValueError(f"{name} must be < {2 ** DIM_BITS} (a descriptor field), got "
                             f"{getattr(shape, name)}")
    values = (height * width * cin + cout * kernel ** 2 * cin
              + shape.out_height * shape.out_width * cout)
    if values > MAX_VALUES:  # float64 temporaries: refuse before allocating them
        raise ValueError(f"a {height}x{width}x{cin} -> {cout} k{kernel} layer has {values:,} "
                         f"values; a random layer is limited to {MAX_VALUES:,}")
    x_format = ir.Format.UINT4 if mode == "int4" else ir.Format.MXINT8
    fmt = {"uint4": ir.Format.UINT4, "int4": ir.Format.INT4, "mxint8": ir.Format.MXINT8}
    if out_format is None:
        out_fmt = ir.Format.UINT4 if mode == "int4" else ir.Format.MXINT8
    elif out_format in fmt:
        out_fmt = fmt[out_format]
    else:
        raise ValueError(f"out_format must be one of {sorted(fmt)}, got {out_format!r}")
    relu = out_fmt == ir.Format.UINT4 or mode == "int4"

    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((height, width, cin))) * rng.uniform(0.2, 3.0, cin)
    x *= rng.random(x.shape) >= sparsity
    w = rng.standard_normal((cout, kernel, kernel, cin)) / np.sqrt(cin * kernel * kernel)
    if x_format == ir.Format.MXINT8:
        x = x * np.where(rng.random(x.shape) < 0.5, -1, 1)
        if saturate:
            x[:, :, :nx.MX_BLOCK] *= 2.0 ** 60
        x_codes, x_scales = nx.mxint8_quantize(x)
        w_codes, w_scales = nx.mxint8_quantize(w)
    else:
        x_codes, x_scales = nx.uint4_quantize(x, vector=vector)
        w_codes, w_scales = nx.int4_quantize(w, vector=vector)

    acc, _ = ir.conv2d_acc(shape, x_codes, x_scales, w_codes, w_scales, x_format=x_format,
                           vector=vector)
    scale_mant = rng.integers(2 ** 13, 2 ** 14, cout).astype(np.int32)
    scale_mant *= np.where(rng.random(cout) < 0.1, -1, 1).astype(np.int32)
    # choose the shift so that the largest |acc * K| lands near 4.0 on the 2**-16 grid
    peak = int(np.abs(acc).max()) * 2 ** 14
    scale_shift = int(np.clip(peak.bit_length() - 18 - (16 if saturate else 0), 0,
                              ir.SCALE_SHIFT_MAX))
    bias = rng.integers(-2 ** 15, 2 ** 15, cout).astype(np.int32)
    arrays = dict(x_codes=x_codes, x_scales=x_scales, w_codes=w_codes, w_scales=w_scales,
                  scale_mant=scale_mant, bias=bias)
    if residual:
        arrays["residual"] = rng.integers(-2 ** 17, 2 ** 17, (shape.out_height,
                                                              shape.out_width, cout),
                                          dtype=np.int32)
    groups = -(-cin // vector)
    if channel_map == "detect":
        zeros = (x_codes == 0).sum(axis=(0, 1)).astype(np.int64)
        in_map = ir.channel_map(zeros, height * width, threshold_pct=threshold_pct,
                                vector=vector)
    elif channel_map == "random":
        in_map = rng.random(groups) < 0.5
    else:
        in_map = np.full(groups, channel_map == "sparse")
    arrays["channel_map"] = in_map.astype(np.bool_)

    desc = Descriptor(height=height, width=width, cin=cin, cout=cout, kernel=kernel,
                      stride=stride, padding=padding, x_format=int(x_format),
                      out_format=int(out_fmt), relu=relu, residual=residual,
                      scale_shift=scale_shift, threshold_pct=threshold_pct, vector=vector)
    result = ir.run_layer(**Execution("", desc, arrays).inputs())
    arrays.update(expected_arrays(result))
    name = (f"random.{mode}.c{cin}k{cout}.{height}x{width}.k{kernel}s{stride}"
            f".p{int(round(100 * sparsity))}{'.sat' if saturate else ''}.seed{seed}")
    meta = {"source": "random-layer", "seed": seed, "sparsity": sparsity,
            "channel_map": channel_map, "saturate": saturate}
    return Execution(name, desc, arrays, meta)

"""Full-layer tests of the accelerator top against golden.intref.run_layer."""

import numpy as np
import pytest

from golden import intref

from .cyclemodel import predict_layer
from .descriptor import descriptor_for, descriptor_layout
from .layout import (act_words, pack_vector, param_words, residual_words, unpack_outputs,
                     weight_words, write_memh)
from .simtest import run_sim, seeded
from .top import COUNTERS, Accelerator, MemSel

SMALL = dict(vector=16, dpe_cols=4, spe_lanes=2, tile=4, max_cin=64, max_cout=48,
             max_pixels=64, act_depth=512, weight_depth=256, res_depth=1024, out_depth=256)


def make_layer(seed, shape, x_format, out_format, relu, residual, sparsity=0.5):
    """Random valid inputs of one layer (codes, scales, parameters) and its golden result."""
    _, nrng = seeded(seed)
    fmt = intref.Format(x_format)
    blk = intref.block_size(fmt, 16)
    nvec = -(-shape.cin // blk)
    k = shape.kernel
    if fmt == intref.Format.MXINT8:
        x = nrng.integers(-127, 128, (shape.height, shape.width, shape.cin)).astype(np.int8)
        w = nrng.integers(-127, 128, (shape.cout, k, k, shape.cin)).astype(np.int8)
        xs = nrng.integers(118, 128, (shape.height, shape.width, nvec))
        ws = nrng.integers(112, 124, (shape.cout, k, k, nvec))
    else:
        lo, hi, dt = (0, 15, np.uint8) if fmt == intref.Format.UINT4 else (-7, 7, np.int8)
        x = nrng.integers(lo, hi + 1, (shape.height, shape.width, shape.cin)).astype(dt)
        w = nrng.integers(-7, 8, (shape.cout, k, k, shape.cin)).astype(np.int8)
        xs = nrng.integers(0x20, 0x48, (shape.height, shape.width, nvec))
        ws = nrng.integers(0x20, 0x48, (shape.cout, k, k, nvec))
    x[nrng.random(x.shape) < sparsity] = 0
    xs, ws = xs.astype(np.uint8), ws.astype(np.uint8)
    acc, _ = intref.conv2d_acc(shape, x, xs, w, ws, x_format=fmt)
    kmant = nrng.integers(1000, 32768, shape.cout).astype(np.int32)
    peak = max(1, int(np.abs(acc).max())) * 32768
    shift = int(min(63, max(0, peak.bit_length() - 22)))
    bias = nrng.integers(-2 ** 18, 2 ** 18, shape.cout).astype(np.int32)
    res = None
    if residual:
        res = nrng.integers(-2 ** 20, 2 ** 20, (shape.out_height, shape.out_width, shape.cout))
        res = res.astype(np.int32)
    ref = intref.run_layer(shape, x, xs, w, ws, kmant, shift, bias, res, x_format=fmt,
                           out_format=out_format, relu=relu)
    return dict(shape=shape, x=x, xs=xs, w=w, ws=ws, k=kmant, shift=shift, bias=bias,
                res=res, x_format=fmt, out_format=intref.Format(out_format), relu=relu,
                ref=ref)


def run_top(layer, routes, params=SMALL):
    """Run one layer once per channel map in ``routes``, back to back in one simulation
    (memories initialised at generation time). Returns one result dict per run."""
    tile = params["tile"]
    fmt = layer["x_format"]
    init = {"act": act_words(layer["x"], layer["xs"], x_format=fmt),
            "weight": weight_words(layer["w"], layer["ws"], x_format=fmt, tile=tile),
            "param": param_words(layer["k"], layer["bias"])}
    if layer["res"] is not None:
        init["res"] = residual_words(layer["res"])
    dut = Accelerator(**params, init=init)
    shape = layer["shape"]
    desc = descriptor_layout().const(descriptor_for(
        shape, x_format=fmt, out_format=layer["out_format"], relu=layer["relu"],
        residual=layer["res"] is not None, shift=layer["shift"]))
    outs = []

    async def bench(ctx):
        for route in routes:
            out = {}
            ctx.set(dut.desc, desc)
            ctx.set(dut.map, sum(int(b) << g for g, b in enumerate(route)))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            out["counters"] = {n: ctx.get(getattr(dut, f"cnt_{n}")) for n in COUNTERS}
            blk = intref.block_size(layer["out_format"], 16)
            nwords = shape.out_height * shape.out_width * -(-shape.cout // blk)
            out["words"] = [ctx.get(dut.mems["out"].data[i]) for i in range(nwords)]
            zc = []
            for c in range(shape.cout):
                ctx.set(dut.zc_chan, c)
                zc.append(ctx.get(dut.zc_count))
            out["zero_counts"] = zc
            out["next_map"] = [(ctx.get(dut.next_map) >> g) & 1
                               for g in range(dut.groups_out)]
            outs.append(out)

    run_sim(dut, [bench])
    return outs


def check_against_golden(layer, out):
    ref, shape = layer["ref"], layer["shape"]
    codes, scales = unpack_outputs(out["words"], out_height=shape.out_height,
                                   out_width=shape.out_width, cout=shape.cout,
                                   out_format=layer["out_format"])
    assert np.array_equal(codes, ref.out.codes.astype(np.int64))
    assert np.array_equal(scales, ref.out.scales.astype(np.int64))
    assert out["zero_counts"] == [int(z) for z in ref.out.zero_counts]
    groups = len(ref.next_map)
    assert out["next_map"][:groups] == [int(b) for b in ref.next_map]
    cnt = out["counters"]
    assert cnt["sat_terms"] == ref.saturated_terms
    assert cnt["sat_ppu"] == ref.out.saturated


def predicted(layer, route, params=SMALL):
    """Every counter from the cycle model (hw/cyclemodel.py)."""
    return predict_layer(layer["shape"], route, x_format=layer["x_format"],
                         out_format=layer["out_format"], residual=layer["res"] is not None,
                         act_words=act_words(layer["x"], layer["xs"], x_format=layer["x_format"]),
                         dpe_cols=params["dpe_cols"], spe_lanes=params["spe_lanes"],
                         tile=params["tile"])


LAYERS = [  # (h, w, cin, cout, k, s, p), x_format, out_format, relu, residual
    ((4, 3, 20, 6, 3, 1, 1), intref.Format.UINT4, intref.Format.UINT4, True, False),
    ((5, 4, 24, 5, 3, 2, 2), intref.Format.INT4, intref.Format.INT4, False, True),
    ((2, 2, 40, 36, 1, 1, 0), intref.Format.MXINT8, intref.Format.MXINT8, False, True),
    ((4, 3, 18, 3, 3, 2, 1), intref.Format.MXINT8, intref.Format.UINT4, True, False),
    ((3, 4, 9, 17, 1, 2, 0), intref.Format.UINT4, intref.Format.MXINT8, True, False),
]


@pytest.mark.parametrize("n", range(len(LAYERS)))
def test_layer_matches_golden(n):
    dims, xf, of, relu, res = LAYERS[n]
    layer = make_layer(300 + n, intref.ConvShape(*dims), xf, of, relu, res)
    _, nrng = seeded(n)
    route = [int(b) for b in nrng.integers(0, 2, SMALL["max_cin"] // 16)]
    out, = run_top(layer, [route])
    check_against_golden(layer, out)
    want = predicted(layer, route)
    got = {k: out["counters"][k] for k in want}
    assert got == want


@pytest.mark.parametrize("x_format", [intref.Format.UINT4, intref.Format.MXINT8])
def test_result_independent_of_channel_map(x_format):
    """All dense, all sparse and a mixed map give identical outputs; only cycles change."""
    kernel = 1 if x_format == intref.Format.MXINT8 else 3  # MXINT8 costs 8 DPE passes/item
    layer = make_layer(77, intref.ConvShape(3, 3, 40, 4, kernel, 1, kernel // 2), x_format,
                       intref.Format.UINT4, True, False, sparsity=0.65)
    groups = SMALL["max_cin"] // 16
    maps = {"dense": [0] * groups, "sparse": [1] * groups, "mixed": [1, 0, 1, 0][:groups]}
    outs = dict(zip(maps, run_top(layer, list(maps.values()))))
    for name, out in outs.items():
        check_against_golden(layer, out)
        want = predicted(layer, maps[name])
        assert {k: out["counters"][k] for k in want} == want, name
        assert out["words"] == outs["dense"]["words"], name
        assert out["next_map"] == outs["dense"]["next_map"], name
    cycles = {name: out["counters"]["cycles"] for name, out in outs.items()}
    assert len(set(cycles.values())) > 1, cycles


def test_host_port_and_init_file(tmp_path):
    """An init file fills a memory; host writes land in the selected input memory only; the
    host reads the out memory (one cycle of latency)."""
    words = [pack_vector([1, -2, 3], 0x38), pack_vector([-128, 127], 0x7E)]
    path = tmp_path / "act.hex"
    write_memh(path, words, 264)
    dut = Accelerator(**SMALL, init={"act": str(path), "out": words[::-1]})
    got = {}

    async def bench(ctx):
        got["act"] = [ctx.get(dut.mems["act"].data[a]) for a in range(2)]
        for a in range(2):
            ctx.set(dut.host_addr, a)
            await ctx.tick()
            got.setdefault("out", []).append(ctx.get(dut.host_rdata))
        ctx.set(dut.host_sel, MemSel.PARAM)
        ctx.set(dut.host_addr, 5)
        ctx.set(dut.host_wdata, 0xABCDEF)
        ctx.set(dut.host_we, 1)
        await ctx.tick()
        ctx.set(dut.host_we, 0)
        await ctx.tick()
        got["param"] = ctx.get(dut.mems["param"].data[5])
        got["res"] = ctx.get(dut.mems["res"].data[5])

    run_sim(dut, [bench])
    assert got == {"act": words, "out": words[::-1], "param": 0xABCDEF, "res": 0}
    assert len(dut.host_rdata) == 264


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"tile": 12}, ValueError, "tile must be a multiple of dpe_cols=8, got 12"),
    ({"dpe_cols": 0}, ValueError, r"dpe_cols must be in \[1, 64\], got 0"),
    ({"spe_lanes": 40}, ValueError, r"spe_lanes must be in \[1, 32\], got 40"),
    ({"max_cout": 8}, ValueError, r"max_cout must be in \[16, 2048\], got 8"),
    ({"act_depth": 0}, ValueError, r"act_depth must be in \[1, 1048576\], got 0"),
    ({"weight_depth": "x"}, TypeError, "weight_depth must be an int"),
    ({"init": []}, TypeError, "init must be a dict or None"),
    ({"init": {"foo": []}}, ValueError, "init key must be one of"),
    ({"init": {"param": [1 << 48]}}, ValueError, r"init\['param'\] holds a word outside 48"),
])
def test_top_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Accelerator(**kwargs)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_layer(seed):
    """Random geometry, formats, flags and channel map (small, fixed seeds)."""
    rnd, nrng = seeded(seed)
    k = rnd.choice([1, 3])
    s = rnd.choice([1, 2])
    shape = intref.ConvShape(rnd.randint(k, 4), rnd.randint(k, 4), rnd.randint(1, 40),
                             rnd.randint(1, 9), k, s, rnd.randint(0, k - 1))
    xf = rnd.choice(list(intref.Format))
    of = rnd.choice(list(intref.Format))
    relu = of == intref.Format.UINT4 or rnd.random() < 0.5
    layer = make_layer(seed, shape, xf, of, relu, rnd.random() < 0.5,
                       sparsity=rnd.uniform(0.2, 0.8))
    route = [int(b) for b in nrng.integers(0, 2, SMALL["max_cin"] // 16)]
    out, = run_top(layer, [route])
    check_against_golden(layer, out)
    want = predicted(layer, route)
    assert {k: out["counters"][k] for k in want} == want

"""Full-layer tests of the accelerator top against golden.intref.run_layer."""

import numpy as np
import pytest

from golden import intref

from .config import COUNTERS, PRESETS, AcceleratorConfig
from .job import Descriptor, JobError, make_job
from .layout import ACT_WORD_BITS, pack_vector, unpack_outputs, write_memh
from .ppu_fixed import SPLIT_REGISTERS
from .simtest import run_sim, seeded
from .streamcheck import stream_checker
from .top import Accelerator, MemSel

SMALL = PRESETS["unit"]


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
    desc = Descriptor.of_layer(shape, x_format=fmt, out_format=out_format, relu=relu,
                               residual=residual, scale_shift=shift)
    arrays = dict(x_codes=x, x_scales=xs, w_codes=w, w_scales=ws, scale_mant=kmant, bias=bias)
    if residual:
        arrays["residual"] = res
    return dict(shape=shape, desc=desc, arrays=arrays, x_format=fmt,
                out_format=intref.Format(out_format), ref=ref)


def run_top(layer, routes, config=SMALL):
    """Run one layer once per channel map in ``routes``, back to back in one simulation
    (memories initialised at generation time, from the job layer's images). Returns one
    result dict per run, with the job."""
    jobs = [make_job(layer["desc"], layer["arrays"], config, route=r) for r in routes]
    dut = Accelerator(config, init=jobs[0].images)
    outs = []

    async def bench(ctx):
        for job in jobs:
            out = {"job": job}
            ctx.set(dut.desc, job.descriptor.register_const())
            ctx.set(dut.map, job.map_value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            out["counters"] = {n: ctx.get(getattr(dut, f"cnt_{n}")) for n in COUNTERS}
            out["words"] = [ctx.get(dut.mems["out"].data[i]) for i in range(job.out_words)]
            zc = []
            for c in range(job.descriptor.cout):
                ctx.set(dut.zc_chan, c)
                zc.append(ctx.get(dut.zc_count))
            out["zero_counts"] = zc
            out["next_map"] = [(ctx.get(dut.next_map) >> g) & 1
                               for g in range(config.groups_out)]
            outs.append(out)

    run_sim(dut, [bench], engine_checkers(dut))
    return outs


def engine_checkers(dut):
    """Stream checkers on the engines' input and result streams and the PPU's input (the
    submodules exist once the simulator has elaborated ``dut``; a dense top's null engine
    included)."""
    return [stream_checker(lambda b=block, s=port: getattr(dut.blocks[b], s), f"{block}.{port}")
            for block, port in (("dpe", "i"), ("dpe", "o"), ("spe", "i"), ("spe", "o"),
                                ("ppu", "i"))]


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
    route = [int(b) for b in nrng.integers(0, 2, SMALL.groups_in)]
    out, = run_top(layer, [route])
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    got = {k: out["counters"][k] for k in want}
    assert got == want


DENSE_TOP = SMALL.replace(spe_lanes=0)


@pytest.mark.parametrize("n", [0, 2, 3])
def test_dense_top_matches_golden_and_model(n):
    """The dense top (spe_lanes=0: no SPE, hw.nullspe in its place) computes every layer
    exactly, with the cycles and counters of the full top with an all-dense map (and no SPE
    activity)."""
    dims, xf, of, relu, res = LAYERS[n]
    layer = make_layer(300 + n, intref.ConvShape(*dims), xf, of, relu, res)
    dense = [0] * SMALL.groups_in
    out, = run_top(layer, [dense], config=DENSE_TOP)
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want
    full = make_job(layer["desc"], layer["arrays"], SMALL, route=dense).predicted_counters()
    assert want == {**full, "spe_busy": 0}
    assert out["counters"]["zeros_skipped"] == 0


def test_dense_top_refuses_a_sparse_map():
    layer = make_layer(1, intref.ConvShape(*LAYERS[0][0]), *LAYERS[0][1:])
    with pytest.raises(JobError, match=r"no SPE \(spe_lanes=0\).*all dense"):
        make_job(layer["desc"], layer["arrays"], DENSE_TOP, route=[1] * SMALL.groups_in)


@pytest.mark.parametrize("x_format", [intref.Format.UINT4, intref.Format.MXINT8])
def test_result_independent_of_channel_map(x_format):
    """All dense, all sparse and a mixed map give identical outputs; only cycles change."""
    kernel = 1 if x_format == intref.Format.MXINT8 else 3  # MXINT8 costs 8 DPE passes/item
    layer = make_layer(77, intref.ConvShape(3, 3, 40, 4, kernel, 1, kernel // 2), x_format,
                       intref.Format.UINT4, True, False, sparsity=0.65)
    groups = SMALL.groups_in
    maps = {"dense": [0] * groups, "sparse": [1] * groups, "mixed": [1, 0, 1, 0][:groups]}
    outs = dict(zip(maps, run_top(layer, list(maps.values()))))
    for name, out in outs.items():
        check_against_golden(layer, out)
        want = out["job"].predicted_counters()
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
    write_memh(path, words, ACT_WORD_BITS)
    dut = Accelerator(SMALL, init={"act": str(path), "out": words[::-1]})
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
    assert len(dut.host_rdata) == ACT_WORD_BITS


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"tile": 12}, ValueError, "tile must be a multiple of dpe_cols=8, got 12"),
    ({"tile": 0}, ValueError, r"tile must be in \[8, 256\], got 0"),
    ({"dpe_cols": 0}, ValueError, r"dpe_cols must be in \[1, 64\], got 0"),
    ({"spe_lanes": 40}, ValueError, r"spe_lanes must be in \[0, 32\], got 40"),
    ({"spe_lanes": -1}, ValueError, r"spe_lanes must be in \[0, 32\], got -1"),
    ({"max_cout": 8}, ValueError, r"max_cout must be in \[16, 2048\], got 8"),
    ({"act_depth": 0}, ValueError, r"act_depth must be in \[1, 1048576\], got 0"),
    ({"weight_depth": "x"}, TypeError, "weight_depth must be an int"),
    ({"balance": 2}, ValueError, r"balance must be in \[0, 1\], got 2"),
    ({"col_skip": True}, TypeError, "col_skip must be an int"),
    ({"spe_lanes": 0, "balance": 1}, ValueError, r"balance=1 needs an SPE \(spe_lanes >= 1\)"),
    ({"spe_lanes": 0, "balance": 0, "nibble_skip": 1}, ValueError, "nibble_skip=1 needs an SPE"),
    ({"timing_regs": 2}, ValueError, r"timing_regs must be in \[0, 1\], got 2"),
    ({"timing_regs": False}, TypeError, "timing_regs must be an int"),
    ({"dsp_regs": 2}, ValueError, r"dsp_regs must be in \[0, 1\], got 2"),
    ({"dsp_regs": True}, TypeError, "dsp_regs must be an int"),
])
def test_config_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        AcceleratorConfig(**kwargs)
    with pytest.raises(exc, match=msg):
        PRESETS["default"].replace(**kwargs)


@pytest.mark.parametrize("config,init,exc,msg", [
    ({"tile": 8}, None, TypeError, "config must be an hw.config.AcceleratorConfig"),
    (None, [], TypeError, "init must be a dict or None"),
    (None, {"foo": []}, ValueError, "init key must be one of"),
    (None, {"param": [1 << 48]}, ValueError, r"init\['param'\] holds a word outside 48"),
])
def test_top_rejects_bad_arguments(config, init, exc, msg):
    with pytest.raises(exc, match=msg):
        Accelerator(config, init=init)


def test_later_fields_leave_the_dict_as_it_was():
    """A field added later (dsp_regs) is in a configuration's dict only when it is used, so
    the identities of the configurations before it (their config_id) stay the same."""
    import dataclasses
    from .config import LATER_FIELDS
    defaults = {f.name: f.default for f in dataclasses.fields(AcceleratorConfig)}
    assert all(defaults[k] == v for k, v in LATER_FIELDS.items())
    board = PRESETS["board"].replace(dsp_regs=0)
    assert set(board.to_dict()) == set(defaults) - set(LATER_FIELDS)
    assert board.replace(dsp_regs=1).to_dict() == {**board.to_dict(), "dsp_regs": 1}
    for config in (board, board.replace(dsp_regs=1)):
        assert AcceleratorConfig.from_dict(config.to_dict()) == config


def test_presets_and_overrides():
    from .config import parse_overrides, preset
    assert preset("paper") == AcceleratorConfig()
    assert preset("default") == AcceleratorConfig(balance=1, col_skip=1, nibble_skip=1)
    assert preset("paper+balance").balance == 1 and preset("paper+balance").col_skip == 0
    assert preset("tiny", tile=16).tile == 16 and PRESETS["tiny"].tile == 8
    # the FPGA board's registers; every ASIC configuration keeps its cycles without them
    assert preset("board").timing_regs == 1 and preset("board").dsp_regs == 1
    assert all(PRESETS[p].timing_regs == 0 == PRESETS[p].dsp_regs
               for p in PRESETS if p != "board")
    with pytest.raises(ValueError, match="configuration must be one of"):
        preset("huge")
    with pytest.raises(ValueError, match=r"unknown Accelerator parameter\(s\) \['tiles'\]"):
        preset("default", tiles=4)
    assert parse_overrides(["tile=0x10", "dpe_cols = 4"]) == {"tile": 16, "dpe_cols": 4}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_overrides(["tile"])
    cfg = PRESETS["default"]
    assert AcceleratorConfig.from_dict(cfg.to_dict()) == cfg
    assert (cfg.groups_in, cfg.groups_out, cfg.column_groups) == (32, 16, 4)
    assert cfg.dpe_multipliers == cfg.spe_multipliers == 128
    # a workload's memories on any top: deeper memories kept, the datapath unchanged
    from .config import for_workload
    assert for_workload(cfg, "mnist") == PRESETS["mnist"] and for_workload(cfg, "digits") == cfg
    big = for_workload(PRESETS["dense"].replace(res_depth=65536), "mnist")
    assert (big.res_depth, big.act_depth, big.dpe_cols, big.spe_lanes) == (65536, 4096, 16, 0)
    with pytest.raises(ValueError, match="model must be one of"):
        for_workload(cfg, "cifar")


def test_job_layer_fit_check():
    """A layer that does not fit names every reason; a bad channel map is refused."""
    from .job import JobError
    layer = make_layer(5, intref.ConvShape(9, 9, 80, 50, 3, 1, 1), intref.Format.UINT4,
                       intref.Format.UINT4, True, True)
    problems = layer["desc"].fit_problems(SMALL)
    assert any("max_cin >= 80" in p for p in problems)
    assert any("max_cout >= 50" in p for p in problems)
    assert any("max_pixels >= 81" in p for p in problems)
    with pytest.raises(JobError, match="does not fit"):
        make_job(layer["desc"], layer["arrays"], SMALL, route=[0] * 5)
    small = make_layer(6, intref.ConvShape(2, 2, 20, 4, 1, 1, 0), intref.Format.UINT4,
                       intref.Format.UINT4, True, False)
    with pytest.raises(JobError, match="channel map must hold 2 to 4 bits"):
        make_job(small["desc"], small["arrays"], SMALL, route=[0])
    job = make_job(small["desc"], small["arrays"], SMALL, route=[1, 0])
    assert job.map_value == 1 and job.out_words == 4
    assert sorted(job.images) == ["act", "param", "weight"]


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
    route = [int(b) for b in nrng.integers(0, 2, SMALL.groups_in)]
    out, = run_top(layer, [route])
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want


@pytest.mark.parametrize("x_format", [intref.Format.UINT4, intref.Format.MXINT8])
def test_non_power_of_two_tile(x_format):
    """tile 6 = 3 column groups of 2 (a non-power-of-two Array in the DPE, the serializer's
    channel index up to 5): bit-exact, and every counter equal to the cycle model. (amaranth.sim
    compiles a memory word of a 12-column tile into a Python expression too deep to compile.)"""
    config = SMALL.replace(tile=6, dpe_cols=2)
    layer = make_layer(41, intref.ConvShape(3, 3, 40, 14, 3, 1, 1), x_format,
                       intref.Format.UINT4, True, True)
    out, = run_top(layer, [[1, 0, 1, 0]], config)
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want


V2_UNIT = SMALL.replace(dpe_cols=2, balance=1, col_skip=1, nibble_skip=1)


@pytest.mark.parametrize("regs", [{"timing_regs": 0}, {"timing_regs": 1},
                                  {"timing_regs": 1, "dsp_regs": 1}],
                         ids=["plain", "timing_regs", "dsp_regs"])
@pytest.mark.parametrize("n", range(len(LAYERS)))
def test_v2_mechanisms_match_golden_and_model(n, regs):
    """The architecture-v2 mechanisms together (one walker + dispatcher, DPE column-group
    skipping with 2 groups of 2 columns, SPE nibble skipping), as in the ``board`` preset also
    with ``timing_regs`` and ``dsp_regs``: bit-exact, and every counter equal to the cycle
    model, with a random channel map (the dispatcher's tie-breaker)."""
    dims, xf, of, relu, res = LAYERS[n]
    layer = make_layer(300 + n, intref.ConvShape(*dims), xf, of, relu, res)
    _, nrng = seeded(n)
    route = [int(b) for b in nrng.integers(0, 2, SMALL.groups_in)]
    out, = run_top(layer, [route], config=V2_UNIT.replace(**regs))
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want


# layers whose cycles the join's second unit register changes (found by a search with the cycle
# model): seed, (h, w, cin, cout, k, s, p), x_format, sparsity, channel map, cycles without /
# with ``timing_regs`` on the small top and on its v2 variant (there also the dispatcher's
# input register)
READY_LAYERS = [
    (6, (5, 4, 16, 5, 1, 1, 0), intref.Format.UINT4, 0.7, [1, 1, 1, 0], (141, 144), (126, 135)),
    (21, (5, 5, 32, 9, 1, 1, 0), intref.Format.UINT4, 0.89, [1, 0, 0, 0], (254, 261), (279, 265)),
    (33, (4, 4, 40, 6, 3, 1, 1), intref.Format.MXINT8, 0.6, [1, 0, 1, 0], (7219, 7226),
     (2726, 2735)),
]


@pytest.mark.parametrize("v2", [False, True], ids=["paper", "v2"])
@pytest.mark.parametrize("n", range(len(READY_LAYERS)))
def test_timing_regs_matches_golden_and_model(n, v2):
    """The ``timing_regs`` registers (the join's second unit register, the fetch's second
    register, the engines' product and second result registers, the PPU's five fixed-point
    registers; on v2 also
    the dispatcher's input register and the fetch's counts register): bit-exact, and every
    counter equal to the cycle model, which steps them all. The fetch's register delays the
    first item by a cycle (and on v2 the dispatcher's and the counts' by two more), the
    product register each result by one, the PPU's registers the last block by five; without
    a dispatcher the join's register and the engines' second result register can win cycles
    back (the engines are released while the serializer works, and run a result ahead of the
    join); on v2 the dispatcher's choices follow the engines' timing, so a layer can take
    cycles more or fewer."""
    seed, dims, xf, sparsity, route, small, v2_cycles = READY_LAYERS[n]
    base = V2_UNIT if v2 else SMALL
    layer = make_layer(seed, intref.ConvShape(*dims), xf, intref.Format.UINT4, True, False,
                       sparsity=sparsity)
    out, = run_top(layer, [route], config=base.replace(timing_regs=1))
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want
    old = make_job(layer["desc"], layer["arrays"], base, route=route).predicted_counters()
    assert (old["cycles"], want["cycles"]) == (v2_cycles if v2 else small)


@pytest.mark.parametrize("dsp_regs", [0, 1])
def test_timing_regs_on_a_dense_top(dsp_regs):
    """The dense top (hw.nullspe in the SPE's place) with the ``timing_regs`` registers:
    bit-exact, every counter equal to the cycle model, and at most the seven cycles more of the
    fetch's second register, the engines' product register and the PPU's five fixed-point
    registers (the join's second unit register only ever saves cycles); with ``dsp_regs``
    (hw.nullspe's two flag registers more) at most two more."""
    seed, dims, xf, sparsity, _, _, _ = READY_LAYERS[1]
    layer = make_layer(seed, intref.ConvShape(*dims), xf, intref.Format.UINT4, True, False,
                       sparsity=sparsity)
    dense = [0] * SMALL.groups_in
    out, = run_top(layer, [dense], config=DENSE_TOP.replace(timing_regs=1, dsp_regs=dsp_regs))
    check_against_golden(layer, out)
    want = out["job"].predicted_counters()
    assert {k: out["counters"][k] for k in want} == want
    old = make_job(layer["desc"], layer["arrays"], DENSE_TOP, route=dense).predicted_counters()
    assert want["cycles"] <= old["cycles"] + 1 + 1 + SPLIT_REGISTERS + 2 * dsp_regs

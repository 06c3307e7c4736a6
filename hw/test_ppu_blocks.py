"""The PPU's components on their own (hw/ppu_fixed.py, hw/ppu_queue.py, hw/ppu_drain.py):
the fixed-point stage and the quantizer against golden.intref, the block queue cycle by cycle
against a small Python model, all under random backpressure with the streams' handshakes
checked (hw.simtest.run_sim)."""

import random
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal, signed

from golden import intref
from golden import numerics as nx

from .common import ACC_WIDTH, MX_BLOCK, barrel_shl
from .cyclemodel import BlockQueueModel
from .ppu_drain import DRAIN_LATENCY, BlockQuantizer
from .ppu_fixed import (PPUFixedPoint, fixed_latency, fixed_point_value, partial_products,
                        product_sum, scale_code_parts)
from .ppu_queue import BUFFER_DEPTH, QUEUE_LATENCY, BlockQueue
from .simtest import run_sim, stream_get, stream_put
from .toolchain import yosys_executable

F = intref.Format
_FP8 = nx.fp8_e4m3_decode(np.arange(nx.FP8_MAX_CODE + 1, dtype=np.uint8))


def _watchdog(limit):
    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise AssertionError(f"not finished after {limit} cycles")
    return watchdog


def _random_values(rng, n, fmt):
    """``n`` PPU values (ints within signed 32 bits): magnitudes spread over 2**0..2**31, some
    zeros, none negative for UINT4."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            y = 0
        elif r < 0.2:
            y = rng.choice([2 ** 31 - 1, -(2 ** 31)])
        else:
            y = int(2 ** rng.uniform(0, 31)) * rng.choice([1, -1])
            y = max(min(y, 2 ** 31 - 1), -(2 ** 31))
        out.append(abs(y) if fmt == F.UINT4 else y)
    return out


def _block_params(mx, fmt):
    """The golden scale code of a block with ``max |Y| = mx`` (golden.intref.quantize_output of
    one element ``mx``) and the quantizer parameters it implies: ``zero``, the UINT4/INT4
    thresholds ``(2j + 1) * value * 2**16`` (compared with ``2|Y|``) and the MXINT8 shift
    ``32 + 6 - floor(log2 mx)`` (computed, unused, in every format)."""
    n = F(fmt).block(16)
    _, scales = intref.quantize_output(np.array([[mx] + [0] * (n - 1)], np.int64), fmt, 16)
    scale = int(scales[0, 0])
    params = {"scale": scale, "zero": int(mx == 0),
              "mx_sh": intref.PPU_WIDTH + nx.MX_ELEMENT_FRAC_BITS - max(mx.bit_length() - 1, 0)}
    if fmt != F.MXINT8:
        params["thr"] = [int((2 * j + 1) * _FP8[scale] * 2 ** intref.PPU_FRAC_BITS)
                         for j in range(nx.UINT4_MAX)]
    else:
        params["thr"] = [0] * nx.UINT4_MAX  # unused by MXINT8
    return params


# --------------------------------------------------------------------------- fixed-point stage

def _fixed_point_run(elements, *, shift, relu, res_en, rng, split=False):
    """``elements`` ((acc, k, bias, residual) each) through a PPUFixedPoint with random gaps on
    both sides: every value (``|Y|``, sign, ``sat``) must equal golden.intref.ppu_fixed, and
    ``chan`` / ``last`` pass through; ``i.ready`` is ``o.ready`` in every cycle."""
    n = len(elements)
    inputs, want = [], []
    for acc, k, bias, res in elements:
        y, sat = intref.ppu_fixed(np.array([acc], np.int64), np.array([k], np.int32), shift,
                                  np.array([bias], np.int32),
                                  np.array([res], np.int32) if res_en else None, relu=relu)
        y = int(y[0])
        chan, last = rng.randint(0, 63), rng.randint(0, 1)
        inputs.append({"acc": acc, "k": k, "bias": bias, "residual": res, "chan": chan,
                       "last": last})
        want.append((abs(y), int(y < 0), sat, chan, last))
    dut = PPUFixedPoint(max_channels=64, split=split)
    got = []

    async def producer(ctx):
        ctx.set(dut.shift, shift)
        ctx.set(dut.relu, relu)
        ctx.set(dut.res_en, res_en)
        for payload in inputs:
            await stream_put(ctx, dut.i, payload, rng, 0.3)

    async def consumer(ctx):
        for _ in range(n):
            p = await stream_get(ctx, dut.o, rng, 0.3)
            got.append((int(p.mag), int(p.neg), int(p.sat), int(p.chan), int(p.last)))

    async def lockstep(ctx):
        async for _, _, i_ready, o_ready in ctx.tick().sample(dut.i.ready, dut.o.ready):
            assert i_ready == o_ready

    run_sim(dut, [producer, consumer], [lockstep, _watchdog(20 * n)])
    assert got == want


@pytest.mark.parametrize("relu,res_en,shift,split", [
    (False, True, 0, False), (True, True, 17, True), (False, False, 40, False),
    (True, False, 63, True), (False, True, 24, True)])
def test_fixed_point_matches_reference(relu, res_en, shift, split):
    """Random elements: accumulators of every magnitude, small and large scales, biases and
    residuals of both signs."""
    rng = random.Random(shift)
    elements = []
    for e in range(150):
        acc = int(2 ** rng.uniform(0, 62)) * rng.choice([1, -1]) if rng.random() > 0.1 else 0
        k = rng.randint(-3, 3) if e % 4 == 0 else rng.randint(-32767, 32767)
        bias, res = rng.randint(-2 ** 31, 2 ** 31 - 1), rng.randint(-2 ** 31, 2 ** 31 - 1)
        if e % 3:
            bias //= 2 ** 12
        elements.append((acc, k, bias, res))
    _fixed_point_run(elements, shift=shift, relu=relu, res_en=res_en, rng=rng, split=split)


@pytest.mark.parametrize("shift,split", [(0, False), (1, True), (2, False), (2, True)])
def test_fixed_point_edges(shift, split):
    """The edges of the datapath: whole parts around the 34 signed bits beyond which the value
    saturates whatever is added, sums around the 32-bit clamp, the extreme bias + residual,
    rounding ties (odd and even), the largest accumulator and scale."""
    rng = random.Random(100 + shift)
    wholes = [0, 1, -1, 2 ** 31 - 1, 2 ** 31, -2 ** 31, -2 ** 31 - 1, 2 ** 32, -2 ** 32,
              2 ** 33 - 1, 2 ** 33, -2 ** 33, -2 ** 33 - 1, 2 ** 34, -2 ** 34, 2 ** 40, -2 ** 40]
    adds = [(0, 0), (2 ** 31 - 1, 2 ** 31 - 1), (-2 ** 31, -2 ** 31), (-2 ** 31, 0),
            (2 ** 31 - 1, 0), (1, -2)]
    elements = []
    for w in wholes:
        for frac in sorted({0, 2 ** shift // 2, 2 ** shift - 1}):   # ties at half
            acc = w * 2 ** shift + frac
            for bias, res in adds:
                elements.append((acc, 1, bias, res))
    elements += [(2 ** 63 - 1, 32767, 0, 0), (-2 ** 63, 32767, 0, 0), (-2 ** 63, -32767, 0, 0),
                 (2 ** 63 - 1, -32767, -2 ** 31, -2 ** 31)]
    _fixed_point_run(elements, shift=shift, relu=False, res_en=True, rng=rng, split=split)


class _FixedPointMiter(Elaboratable):
    """:func:`hw.ppu_fixed.fixed_point_value` next to the plain full-width formulation: the
    80-bit whole part plus the rounding bit plus ``add`` in 83 bits, compared with the
    clamp bounds."""

    def __init__(self, fixed_point_value):
        self.value = fixed_point_value
        self.prod = Signal(signed(ACC_WIDTH + intref.SCALE_MANT_BITS), name="prod")
        self.add = Signal(signed(intref.PPU_WIDTH + 1), name="add")
        self.shift = Signal(range(intref.SCALE_SHIFT_MAX + 1), name="shift")
        self.y_ref = Signal(signed(intref.PPU_WIDTH), name="y_ref")
        self.y_dut = Signal(signed(intref.PPU_WIDTH), name="y_dut")
        self.sat_ref, self.sat_dut = Signal(name="sat_ref"), Signal(name="sat_dut")
        self.ports = [self.prod, self.add, self.shift, self.y_ref, self.y_dut, self.sat_ref,
                      self.sat_dut]

    def elaborate(self, platform):
        m = Module()
        fb = intref.SCALE_SHIFT_MAX
        hi, lo = 2 ** (intref.PPU_WIDTH - 1) - 1, -2 ** (intref.PPU_WIDTH - 1)
        wide = barrel_shl(m, self.prod, fb - self.shift, fb, "ref")
        whole, frac = wide[fb:].as_signed(), wide[:fb]
        up = (frac > (1 << (fb - 1))) | ((frac == (1 << (fb - 1))) & whole[0])
        ysum = Signal(signed(len(whole) + 3))
        m.d.comb += ysum.eq(whole + up + self.add)
        m.d.comb += [self.sat_ref.eq((ysum > hi) | (ysum < lo)),
                     self.y_ref.eq(Mux(ysum > hi, hi, Mux(ysum < lo, lo, ysum)))]
        y, sat = self.value(m, self.prod, self.add, self.shift)
        m.d.comb += [self.y_dut.eq(y), self.sat_dut.eq(sat)]
        return m


def _sat_prove_fixed_point(value, tmp_path):
    yosys = yosys_executable()
    miter = _FixedPointMiter(value)
    il = tmp_path / "miter.il"
    il.write_text(rtlil.convert(miter, ports=miter.ports, name="miter"))
    script = (f"read_rtlil {il}; hierarchy -top miter; proc; flatten; opt -fast; "
              "sat -prove y_ref y_dut -prove sat_ref sat_dut -verify miter")
    return subprocess.run([yosys, "-p", script], capture_output=True, text=True, timeout=600)


def test_fixed_point_value_equals_full_width_formally(tmp_path):
    """A SAT proof over every product, shift and bias + residual that the narrow sum of
    fixed_point_value equals the full-width one (value and saturation); and that the proof
    catches a slip that only some inputs show."""
    run = _sat_prove_fixed_point(fixed_point_value, tmp_path)
    assert run.returncode == 0 and "SUCCESS!" in run.stdout, run.stdout[-2000:] + run.stderr

    def slipped(m, prod, add, shift):   # one more where shift is 1 and one product bit set
        y, sat = fixed_point_value(m, prod, add, shift)
        return Mux(prod[intref.SCALE_SHIFT_MAX - 1] & (shift == 1), y + 1, y), sat
    run = _sat_prove_fixed_point(slipped, tmp_path)
    assert run.returncode != 0 and "proof did fail" in run.stdout + run.stderr


class _ScaleCodeMiter(Elaboratable):
    """:func:`hw.ppu_fixed.scale_code_parts` (``dut``) next to the plain comparisons of
    ``y``'s signed high and unsigned low halves with each threshold's (``ref``)."""

    def __init__(self):
        self.y = Signal(signed(intref.PPU_WIDTH), name="y")
        self.fmt = Signal(F, name="fmt")
        self.ref, self.dut = Signal(948, name="ref"), Signal(948, name="dut")
        self.ports = [self.y, self.fmt, self.ref, self.dut]

    def elaborate(self, platform):
        m = Module()
        y_hi, y_lo = self.y[16:].as_signed(), self.y[:16]

        def parts(t):
            return [y_hi > (t >> 16), y_hi == (t >> 16), y_lo > (t & 0xFFFF),
                    y_hi < (-t >> 16), y_hi == (-t >> 16), y_lo < (-t & 0xFFFF)]
        rest = [2 ** b - 1 for b in range(1, intref.PPU_WIDTH)] + [0]
        ref = []
        for tu, ti in zip(*[[int(q * _FP8[c] * 2 ** intref.PPU_FRAC_BITS)
                              for c in range(nx.FP8_MAX_CODE)] + rest
                             for q in (nx.UINT4_MAX, nx.INT4_MAX)]):
            ref += [Mux(self.fmt == F.UINT4, u, i) for u, i in zip(parts(tu), parts(ti))]
        assert len(ref) == len(self.ref)
        m.d.comb += [self.ref.eq(Cat(*ref)), self.dut.eq(scale_code_parts(m, self.y, self.fmt))]
        return m


def test_scale_code_parts_equal_plain_comparisons_formally(tmp_path):
    """A SAT proof over every value and format that the nibble-tree comparisons of
    scale_code_parts equal the plain 16-bit comparisons."""
    miter = _ScaleCodeMiter()
    il = tmp_path / "codes.il"
    il.write_text(rtlil.convert(miter, ports=miter.ports, name="codes"))
    script = (f"read_rtlil {il}; hierarchy -top codes; proc; flatten; opt -fast; "
              "sat -prove ref dut -verify codes")
    run = subprocess.run([yosys_executable(), "-p", script], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0 and "SUCCESS!" in run.stdout, run.stdout[-2000:] + run.stderr


def test_partial_products_sum_to_the_product():
    """The split stage's multiplier: the partial products' sum equals ``acc * k`` around every
    part's edges (the carries between parts, the signed top part) and at random."""
    acc, k = Signal(signed(ACC_WIDTH)), Signal(signed(intref.SCALE_MANT_BITS))
    m = Module()
    prod = Signal(signed(ACC_WIDTH + intref.SCALE_MANT_BITS))
    m.d.comb += prod.eq(product_sum(partial_products(acc, k)))
    rng = random.Random(7)
    edges = [0, 1, -1, 2 ** 63 - 1, -2 ** 63]
    edges += [s * (2 ** b + d) for b in (15, 16, 31, 32, 47, 48, 62) for d in (-1, 0, 1)
              for s in (1, -1)]
    edges += [rng.randint(-2 ** 63, 2 ** 63 - 1) for _ in range(40)]
    ks = [0, 1, -1, 2 ** 15 - 1, -2 ** 15, 12345, -2 ** 14 - 3]
    cases = [(a, kk) for a in edges for kk in ks]

    async def tb(ctx):
        for a, kk in cases:
            ctx.set(acc, a)
            ctx.set(k, kk)
            await ctx.delay(1e-9)
            assert ctx.get(prod) == a * kk, (a, kk)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("split", [False, True])
def test_fixed_point_latency(split):
    """Back to back with ``o`` always ready: element ``n`` is on ``o`` in cycle ``n + 2``
    (``split``: ``n + 7``)."""
    dut = PPUFixedPoint(max_channels=8, split=split)
    latency = fixed_latency(split)
    assert latency == (7 if split else 2)
    n = 20
    seen = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(n + latency + 2):
            ctx.set(dut.i.valid, cycle < n)
            ctx.set(dut.i.payload, {"acc": cycle << 8, "k": 1, "bias": 0, "residual": 0,
                                    "chan": cycle % 8, "last": 0})
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload.mag)))
            await ctx.tick()

    run_sim(dut, [tb])
    assert seen == [(e + latency, e << 8) for e in range(n)]


# --------------------------------------------------------------------------- block queue

def _scale_code(y, fmt):
    """The queue's running-scale input for the value ``y`` (hw.ppu_fixed.scale_code_parts):
    for each threshold ``t`` (those of the FP8 codes, ``qmax * value * 2**16``, then ``2**b -
    1`` for b = 1..31, then 0), ``y > t`` and ``y < -t`` compared in signed high / unsigned low
    16-bit halves."""
    qmax = nx.UINT4_MAX if fmt == F.UINT4 else nx.INT4_MAX
    ts = [int(qmax * _FP8[c] * 2 ** intref.PPU_FRAC_BITS) for c in range(nx.FP8_MAX_CODE)]
    ts += [2 ** b - 1 for b in range(1, intref.PPU_WIDTH)] + [0]
    yh, yl = y >> 16, y & 0xFFFF
    return [{"gt_hi": yh > t >> 16, "eq_hi": yh == t >> 16, "gt_lo": yl > t & 0xFFFF,
             "lt_hi": yh < -t >> 16, "eqn_hi": yh == -t >> 16, "lt_lo": yl < -t & 0xFFFF}
            for t in ts]


def _queue_blocks(rng, fmt, nblocks, max_len):
    blocks, index = [], 0
    for _ in range(nblocks):
        count = rng.choice([1, max_len, max_len, rng.randint(1, max_len)])
        ys = _random_values(rng, count, fmt) if rng.random() > 0.1 else [0] * count
        vals = [{"mag": abs(y), "neg": int(y < 0), "sat": rng.randint(0, 1),
                 "chan": rng.randint(0, 63), "last": int(k == count - 1),
                 "code": _scale_code(y, fmt)}
                for k, y in enumerate(ys)]
        blocks.append((index % BUFFER_DEPTH, vals))
        index += count
    return blocks


@pytest.mark.parametrize("fmt,max_len,seed,running", [
    (F.INT4, 16, 1, False), (F.UINT4, 8, 2, True), (F.MXINT8, 32, 3, False),
    (F.MXINT8, 3, 4, True), (F.INT4, 32, 5, True), (F.UINT4, 16, 6, False),
    (F.MXINT8, 32, 7, True)])
def test_block_queue_against_model(fmt, max_len, seed, running):
    """Random block lengths, input gaps and ``o.ready`` (phases from always ready to mostly
    stalled): ``i.ready`` and ``o.valid`` equal the cycle model's
    (:class:`hw.cyclemodel.BlockQueueModel`, the one inside ``PPUModel``) in every cycle; every
    value comes out once, in order, with its position, ``last``, its block's first slot, count,
    saturations and first channel, the golden scale code and the quantizer parameters. The
    queue reaches both input stalls (b0 taken, buffer full)."""
    rng = random.Random(seed)
    blocks = _queue_blocks(rng, fmt, 40 if running else 60, max_len)  # running: a slow sim
    inputs = [v for _, vals in blocks for v in vals]
    want = []
    for start, vals in blocks:
        params = _block_params(max(v["mag"] for v in vals), fmt)
        meta = {"start": start, "count": len(vals), "sat": sum(v["sat"] for v in vals),
                "base": vals[0]["chan"]}
        for k, v in enumerate(vals):
            want.append(((v["mag"], v["neg"]), k, int(k == len(vals) - 1), meta, params))
    dut = BlockQueue(max_channels=64, running_scale=running)
    # each input as the payload's bits, encoded once (a struct of 159 comparisons set field by
    # field in every cycle would dominate the simulation)
    layout = dut.i.payload.shape()
    encoded = {id(v): Const.cast(layout.const(
        v if running else {n: x for n, x in v.items() if n != "code"})).value for v in inputs}
    model = BlockQueueModel()
    got = []
    seen = {"b0": 0, "full": 0}

    def params_of(blk):
        return {"scale": int(blk.scale), "zero": int(blk.zero),
                "mx_sh": int(blk.mx_sh),
                "thr": [int(t) for t in blk.thr] if fmt != F.MXINT8 else [0] * nx.UINT4_MAX}

    async def tb(ctx):
        ctx.set(dut.out_format, fmt)
        pending, nxt, cycle = None, 0, 0
        pos = 0  # position of the next value in its block
        p_in, p_out = 0.8, 0.5
        while len(got) < len(inputs):
            if cycle % 150 == 0:
                p_in, p_out = rng.choice([(1.0, 1.0), (0.8, 0.5), (1.0, 0.05), (0.3, 0.9)])
            if pending is None and nxt < len(inputs) and rng.random() < p_in:
                pending, nxt = inputs[nxt], nxt + 1
            o_ready = int(rng.random() < p_out)
            ctx.set(dut.i.valid, pending is not None)
            if pending is not None:
                ctx.set(dut.i.payload.as_value(), encoded[id(pending)])
            ctx.set(dut.o.ready, o_ready)
            i_ready = ctx.get(dut.i.ready)
            ctx.set(dut.accepted, int(pending is not None and i_ready))
            model.comb(o_ready)
            assert (i_ready, ctx.get(dut.o.valid)) == (model.i_ready, model.o_valid), cycle
            seen["b0"] += model.b[0] is not None
            seen["full"] += model.held == BUFFER_DEPTH
            if model.drain:
                p = ctx.get(dut.o.payload)
                meta = {n: int(getattr(p.blk.meta, n)) for n in ("start", "count", "sat",
                                                                 "base")}
                got.append(((int(p.e.mag), int(p.e.neg)), int(p.rd), int(p.last), meta,
                            params_of(p.blk)))
                assert got[-1] == want[len(got) - 1], len(got) - 1
                assert p.rd == model.rd
            await ctx.tick()
            take = pending is not None and i_ready
            closing = None
            if take:
                closing = pos + 1 if pending["last"] else None
                pos = 0 if pending["last"] else pos + 1
                pending = None
            model.edge(take, closing)
            cycle += 1

    run_sim(dut, [tb], [_watchdog(100 * len(inputs))])
    assert got == want
    # b0 takes a block that closes while b1 is stalled; the buffer fills only with long blocks
    assert seen["b0"] or max_len < 16, seen
    assert seen["full"] or max_len < 32, seen


@pytest.mark.parametrize("running", [False, True])
def test_block_queue_latency(running):
    """A block's last value taken in cycle ``n`` (queue empty, ``o`` ready): its first element
    is on ``o`` in cycle ``n + QUEUE_LATENCY``, the others back to back (``running_scale``
    too)."""
    dut = BlockQueue(max_channels=8, running_scale=running)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(12):
            ctx.set(dut.i.valid, cycle < 3)
            ctx.set(dut.accepted, cycle < 3)
            value = {"mag": cycle + 1, "neg": 0, "sat": 0, "chan": 0, "last": cycle == 2}
            if running:
                value["code"] = _scale_code(cycle + 1, F.INT4)
            ctx.set(dut.i.payload, value)
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload.e.mag)))
            await ctx.tick()

    run_sim(dut, [tb])
    assert seen == [(2 + QUEUE_LATENCY + k, k + 1) for k in range(3)]


# --------------------------------------------------------------------------- quantizer

def _quantizer_blocks(rng, fmt, nblocks):
    size = F(fmt).block(16)
    blocks = []
    for b in range(nblocks):
        count = rng.choice([1, size, rng.randint(1, size)])
        ys = _random_values(rng, count, fmt) if b % 7 else [0] * count
        codes, scales = intref.quantize_output(np.array([ys + [0] * (size - count)], np.int64),
                                               fmt, 16)
        blk = {"meta": {"start": rng.randint(0, BUFFER_DEPTH - 1), "count": count,
                        "sat": rng.randint(0, count), "base": rng.randint(0, 63)},
               **_block_params(max(abs(y) for y in ys), fmt)}
        assert blk["scale"] == int(scales[0, 0])
        elems = [{"e": {"mag": abs(y), "neg": int(y < 0)}, "rd": k, "last": int(k == count - 1),
                  "blk": blk} for k, y in enumerate(ys)]
        blocks.append((elems, [int(c) for c in codes[0, :count]], blk))
    return blocks


def _quantizer_run(fmt, blocks, rng, p_in, p_out):
    """The elements of ``blocks`` (a list of element lists) through a BlockQuantizer in
    ``fmt``, with random gaps on the input (probability ``p_in``) and output (``p_out``)
    sides: the output blocks."""
    dut = BlockQuantizer(max_channels=64)
    got = []

    async def producer(ctx):
        ctx.set(dut.out_format, fmt)
        for elems in blocks:
            for el in elems:
                await stream_put(ctx, dut.i, el, rng, p_in)

    async def consumer(ctx):
        for _ in blocks:
            got.append(await stream_get(ctx, dut.o, rng, p_out))

    run_sim(dut, [producer, consumer], [_watchdog(200 * len(blocks))])
    return got


@pytest.mark.parametrize("fmt,seed", [(F.UINT4, 1), (F.INT4, 2), (F.MXINT8, 3)])
def test_quantizer_matches_reference(fmt, seed):
    """Blocks with their parameters, random gaps on both sides: each output block's codes equal
    golden.intref.quantize_output, the other slots are 0, the zero flags match the codes, and
    scale, count, base and saturations are the block's."""
    rng = random.Random(seed)
    blocks = _quantizer_blocks(rng, fmt, 40)
    got = _quantizer_run(fmt, [elems for elems, _, _ in blocks], rng, 0.3, 0.4)
    for n, (out, (elems, codes, blk)) in enumerate(zip(got, blocks)):
        count = len(codes)
        assert [int(c) for c in out.codes] == codes + [0] * (MX_BLOCK - count), n
        assert int(out.zeros) == sum(1 << j for j, c in enumerate(codes) if c == 0), n
        assert (int(out.scale), int(out.count), int(out.base), int(out.sat)) == (
            blk["scale"], count, blk["meta"]["base"], blk["meta"]["sat"]), n


def _mx_code(mag, neg, sh):
    """MXINT8 code of ``|Y| = mag`` with the block's shift ``sh``: clamp(RNE((mag << sh) /
    2**32), 127) with the sign."""
    v = mag << sh
    q, f = v >> 32, v & (2 ** 32 - 1)
    half = 2 ** 31
    m = min(q + int(f > half or (f == half and q & 1)), nx.MX_ELEMENT_MAX)
    return -m if neg else m


def test_quantizer_mxint8_every_shift():
    """MXINT8 codes at every shift 0..38 (the split shift: two bits on the way into Q, the
    multiple of 4 in Q, the masked "a one below / above" bits), with magnitudes at rounding
    ties, just off them, at the clamp and at random, both signs; and all-zero blocks."""
    rng = random.Random(21)
    width = intref.PPU_WIDTH
    sh_max = width + nx.MX_ELEMENT_FRAC_BITS
    blocks = []
    for sh in list(range(sh_max + 1)) * 2 + [0, sh_max]:
        mags = []
        for _ in range(MX_BLOCK):
            q = rng.choice([0, 1, 2, 63, 64, 125, 126, 127, 128, rng.randint(0, 200)])
            f = rng.choice([0, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, rng.getrandbits(32)])
            mag = ((q << 32) | f) >> sh if rng.random() < 0.8 else rng.getrandbits(width)
            mags.append(min(mag, 2 ** width - 1))
        zero = int(len(blocks) % 13 == 5)
        blk = {"meta": {"start": 0, "count": MX_BLOCK, "sat": 0, "base": 0}, "scale": 127,
               "zero": zero, "mx_sh": sh, "thr": [0] * nx.UINT4_MAX}
        signs = [rng.randint(0, 1) for _ in mags]
        elems = [{"e": {"mag": mag, "neg": neg}, "rd": k, "last": int(k == MX_BLOCK - 1),
                  "blk": blk} for k, (mag, neg) in enumerate(zip(mags, signs))]
        want = [0 if zero else _mx_code(mag, neg, sh) for mag, neg in zip(mags, signs)]
        blocks.append((elems, want))
    got = _quantizer_run(F.MXINT8, [elems for elems, _ in blocks], rng, 0.1, 0.1)
    for n, (out, (_, want)) in enumerate(zip(got, blocks)):
        assert [int(c) for c in out.codes] == want, n
        assert int(out.zeros) == sum(1 << j for j, c in enumerate(want) if c == 0), n


def test_quantizer_latency():
    """Elements back to back, ``o`` always ready: a block whose element 0 is taken in cycle
    ``n`` is on ``o`` in cycle ``n + DRAIN_LATENCY + count``, and ``i`` never stalls."""
    rng = random.Random(9)
    blocks = _quantizer_blocks(rng, F.INT4, 6)
    dut = BlockQuantizer(max_channels=64)
    firsts, outs = [], []

    async def tb(ctx):
        ctx.set(dut.out_format, F.INT4)
        ctx.set(dut.o.ready, 1)
        stream = [el for elems, _, _ in blocks for el in elems]
        for cycle in range(len(stream) + 40):
            ctx.set(dut.i.valid, cycle < len(stream))
            if cycle < len(stream):
                ctx.set(dut.i.payload, stream[cycle])
                assert ctx.get(dut.i.ready)
                if stream[cycle]["rd"] == 0:
                    firsts.append(cycle)
            if ctx.get(dut.o.valid):
                outs.append(cycle)
            await ctx.tick()

    run_sim(dut, [tb])
    assert outs == [n + DRAIN_LATENCY + len(codes) for n, (_, codes, _) in zip(firsts, blocks)]


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("cls", [PPUFixedPoint, BlockQueue, BlockQuantizer])
@pytest.mark.parametrize("value,exc,msg", [
    (0, ValueError, r"max_channels must be in \[1, 4096\], got 0"),
    (4097, ValueError, r"max_channels must be in \[1, 4096\], got 4097"),
    ("8", TypeError, "max_channels must be an int"),
])
def test_components_reject_bad_parameters(cls, value, exc, msg):
    with pytest.raises(exc, match=msg):
        cls(max_channels=value)

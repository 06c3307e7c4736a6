"""Helpers shared by the gateware unit tests (amaranth.sim async testbenches) and the
cocotb block tests (tb/cocotb_blocks.py, on the emitted Verilog).

Stream drivers with random valid/ready gaps from a seeded ``random.Random``, a cycle counter
for busy-style signals, the conversion of golden-model arrays into engine work items, and
:class:`StreamCase`: one block test (configuration, input transfers, expected output check)
that either simulator runs.
"""

import dataclasses
import random
from typing import Callable

import numpy as np
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory
from amaranth.sim import Simulator

from golden import intref

from .common import MX_BLOCK, connect_read_port
from .streamcheck import stream_checker, stream_members

__all__ = ["default_args", "WithMemories", "stream_put", "stream_get", "stream_put_polled",
           "stream_get_polled", "run_sim", "seeded", "make_unit_data", "unit_items",
           "reference_unit", "StreamCase", "run_stream_case", "engine_case", "engine_check",
           "dpe_cycles", "spe_cycles", "ppu_case", "detector_case", "addrgen_case",
           "serializer_case", "fetch_case", "writer_case"]


def default_args(submodule, **overrides):
    """Keyword arguments of the top's block ``submodule`` (``dpe``, ``spe``, ``ag``, ``det``,
    ``fetch_d``, ``ser``, ``wr``, ``ppu``) at the default configuration, with ``overrides``:
    the blocks have no defaults of their own (``hw.top.block_args``)."""
    from .config import PRESETS
    from .top import block_args
    return {**block_args(PRESETS["default"])[submodule][1], **overrides}


async def stream_put(ctx, port, payload, rng=None, gap=0.0):
    """Drive one transfer on ``port`` (a stream interface), after random idle cycles."""
    while rng is not None and rng.random() < gap:
        await ctx.tick()
    ctx.set(port.valid, 1)
    ctx.set(port.payload, payload)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, rng=None, gap=0.0):
    """Accept one transfer from ``port``, holding ``ready`` low for random cycles first."""
    while rng is not None and rng.random() < gap:
        ctx.set(port.ready, 0)
        await ctx.tick()
    ctx.set(port.ready, 1)
    payload, = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload


async def stream_put_polled(ctx, port, payload, rng, gap):
    """:func:`stream_put` polling ``ready`` instead of ``until()``: a background testbench
    abandoned inside ``until()`` (a stuck transfer) raises "aclose(): asynchronous generator is
    already running" instead of the test's own failure."""
    while rng.random() < gap:
        await ctx.tick()
    ctx.set(port.valid, 1)
    ctx.set(port.payload, payload)
    while not (await ctx.tick().sample(port.ready))[2]:
        pass
    ctx.set(port.valid, 0)


async def stream_get_polled(ctx, port, rng, gap):
    """:func:`stream_get` polling ``valid`` (see :func:`stream_put_polled`)."""
    while rng.random() < gap:
        ctx.set(port.ready, 0)
        await ctx.tick()
    ctx.set(port.ready, 1)
    while True:
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid:
            ctx.set(port.ready, 0)
            return payload


class WithMemories(Elaboratable):
    """A block under test with synchronous-read memories on its read ports (as the top
    connects them): ``memories`` is a list of ``(width, depth, words, ports)``, ``ports`` a list
    of ``(en, addr, data)`` signals of ``dut`` (:func:`hw.common.connect_read_port`)."""

    def __init__(self, dut, memories):
        self.dut = dut
        self.memories = [(memory.Memory(shape=unsigned(width), depth=depth, init=words), ports)
                         for width, depth, words, ports in memories]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        for k, (mem, ports) in enumerate(self.memories):
            m.submodules[f"mem{k}"] = mem
            for en, addr, data in ports:
                connect_read_port(m, mem, en=en, addr=addr, data=data)
        return m


def run_sim(dut, testbenches, monitors=(), deadline_cycles=None, check_streams=True):
    """Run ``testbenches`` (async functions of ``ctx``) to completion with background
    ``monitors``; a 1 MHz clock on ``sync``. With ``check_streams``, every top-level
    ``lib.stream`` member of ``dut`` (e.g. a block's ``i`` and ``o``) is also watched by a
    :func:`hw.streamcheck.stream_checker`: a handshake violation fails the simulation."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    if check_streams:
        monitors = [stream_checker(port, name)
                    for name, port in stream_members(dut).items()] + list(monitors)
    for mon in monitors:
        sim.add_testbench(mon, background=True)
    for tb in testbenches:
        sim.add_testbench(tb)
    if deadline_cycles is None:
        sim.run()
    else:
        sim.run_until(deadline_cycles * 1e-6)


# --------------------------------------------------------------------------- engine work items

def make_unit_data(rng, *, x_format, nvec, cols, sparsity=0.0, vector=16):
    """Random codes and scales of one unit (one output pixel, ``cols`` output channels,
    ``nvec`` input vectors/blocks) in the shapes of :func:`golden.intref.conv2d_acc`."""
    fmt = intref.Format(x_format)
    blk = intref.block_size(fmt, vector)
    cin = nvec * blk
    if fmt == intref.Format.UINT4:
        x = rng.integers(0, 16, (1, 1, cin)).astype(np.uint8)
    elif fmt == intref.Format.INT4:
        x = rng.integers(-7, 8, (1, 1, cin)).astype(np.int8)
    else:
        x = rng.integers(-127, 128, (1, 1, cin)).astype(np.int8)
    x[rng.random(x.shape) < sparsity] = 0
    if fmt == intref.Format.MXINT8:
        w = rng.integers(-127, 128, (cols, 1, 1, cin)).astype(np.int8)
        # shift E + 24 = sx + sw - 242: spread it over rounding, exact and saturating terms
        target = rng.integers(-26, 40, (nvec,))
        xs = np.clip(121 + target // 2 + rng.integers(-3, 4, (nvec,)), 0, 254)
        ws = np.clip(242 + target[None, :] - xs[None, :] + rng.integers(-2, 3, (cols, nvec)),
                     0, 254)
        xs = xs.astype(np.uint8).reshape(1, 1, nvec)
        ws = ws.astype(np.uint8).reshape(cols, 1, 1, nvec)
    else:
        w = rng.integers(-7, 8, (cols, 1, 1, cin)).astype(np.int8)
        xs = rng.integers(0, 0x7F, (1, 1, nvec)).astype(np.uint8)
        ws = rng.integers(0, 0x7F, (cols, 1, 1, nvec)).astype(np.uint8)
        if rng.random() < 0.2:  # near-full-scale unit: INT4 terms saturate only up here
            x[x != 0] = 15 if fmt == intref.Format.UINT4 else 7
            sign = np.where(rng.random((cols, 1, 1, 1)) < 0.5, -1, 1)
            w = (sign * np.where(rng.random(w.shape) < 0.9, 7, -7)).astype(np.int8)
            xs[:] = 0x7E
            ws[:] = rng.integers(0x76, 0x7F, ws.shape)
    return x, xs, w, ws


def reference_unit(x, xs, w, ws, *, x_format, vector=16):
    """Accumulators and saturated-term count of one unit, from :func:`intref.conv2d_acc`."""
    if x.shape[-1] == 0:  # a unit with no vector (all null items): the empty sum
        return [0] * w.shape[0], 0
    shape = intref.ConvShape(1, 1, x.shape[-1], w.shape[0], 1, 1, 0)
    acc, sat = intref.conv2d_acc(shape, x, xs, w, ws, x_format=x_format, vector=vector)
    return [int(a) for a in acc[0, 0]], sat


def unit_items(x, xs, w, ws, *, x_format, vector=16, tile=None, rng=None, null_rate=0.0,
               filler=0):
    """Engine items (dicts for ``item_layout``) of one unit; null items are inserted at random.

    In INT4 mode the 32-element containers beyond ``vector`` get ``filler`` values, which the
    engines must ignore."""
    fmt = intref.Format(x_format)
    blk = intref.block_size(fmt, vector)
    cols = w.shape[0]
    tile = cols if tile is None else tile
    nvec = xs.shape[-1]
    items = []
    for v in range(nvec):
        if rng is not None:
            while rng.random() < null_rate:
                items.append(_null_item(tile, cols))
        xe = [int(c) for c in x[0, 0, v * blk:(v + 1) * blk]]
        xe += [filler] * (MX_BLOCK - blk)
        we = []
        for c in range(tile):
            if c < cols:
                col = [int(q) for q in w[c, 0, 0, v * blk:(v + 1) * blk]]
            else:
                col = [0] * blk
            we.append(col + [filler] * (MX_BLOCK - blk))
        wsc = [int(ws[c, 0, 0, v]) if c < cols else 0 for c in range(tile)]
        items.append({"x": xe, "x_scale": int(xs[0, 0, v]), "w": we, "w_scale": wsc,
                      "first": 0, "last": 0, "null": 0, "ncols": cols, "pref": 0})
    if not items:
        items.append(_null_item(tile, cols))
    items[0]["first"] = 1
    items[-1]["last"] = 1
    return items


def _null_item(tile, ncols=None):
    return {"x": [0] * MX_BLOCK, "x_scale": 0, "w": [[0] * MX_BLOCK] * tile,
            "w_scale": [0] * tile, "first": 0, "last": 0, "null": 1,
            "ncols": tile if ncols is None else ncols, "pref": 0}


def seeded(seed):
    """A ``random.Random`` and a numpy Generator from one seed."""
    return random.Random(seed), np.random.default_rng(seed)


@dataclasses.dataclass
class StreamCase:
    """One test of a block with an input stream ``i`` and an output stream ``o``.

    ``config``: input port name -> value, set before the first transfer and held; ``inputs``:
    payloads for ``i`` (dicts of the payload layout); ``outputs``: transfers expected on ``o``;
    ``check(results)`` raises AssertionError unless the output payloads (``data.Const`` views
    of ``o``'s layout, in order) are right; ``busy_cycles``: the exact number of cycles the
    block's ``busy`` output must be high (its cycle model), or None. ``in_gap`` / ``out_gap``:
    probability of an idle cycle before each transfer / of holding ``ready`` low, drawn from
    ``random.Random(seed)``."""
    config: dict
    inputs: list
    outputs: int
    check: Callable[[list], None]
    seed: int
    busy_cycles: int | None = None
    in_gap: float = 0.3
    out_gap: float = 0.3


def run_stream_case(dut, case):
    """Run ``case`` on ``dut`` in amaranth.sim; returns ``(busy_cycles, total_cycles)``. The
    handshakes of ``dut.i`` and ``dut.o`` are checked (:func:`run_sim`)."""
    rnd = random.Random(case.seed)
    got = []
    stats = {"busy": 0, "cycles": 0}

    async def producer(ctx):
        for name, value in case.config.items():
            ctx.set(getattr(dut, name), value)
        for payload in case.inputs:
            await stream_put(ctx, dut.i, payload, rnd, case.in_gap)

    async def consumer(ctx):
        for _ in range(case.outputs):
            got.append(await stream_get(ctx, dut.o, rnd, case.out_gap))

    async def monitor(ctx):
        async for _, _, busy in ctx.tick().sample(dut.busy):
            stats["busy"] += busy
            stats["cycles"] += 1

    # A lost or stuck transfer fails the test instead of hanging it.
    limit = 1000 * (len(case.inputs) + case.outputs + 1)

    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise AssertionError(f"{len(got)} of {case.outputs} outputs after {limit} cycles")

    monitors = [watchdog] + ([monitor] if case.busy_cycles is not None else [])
    run_sim(dut, [producer, consumer], monitors)
    assert len(got) == case.outputs
    case.check(got)
    if case.busy_cycles is not None:
        assert stats["busy"] == case.busy_cycles, (stats, case.busy_cycles)
    return stats["busy"], stats["cycles"]


def engine_case(*, tile, x_format, units, seed, item_cycles, sparsity=0.0, in_gap=0.3,
                out_gap=0.3, null_rate=0.1, vector=16, max_vec=3, filler=5, real_cols=False):
    """A :class:`StreamCase` of ``units`` random units for an engine (DPE or SPE) with
    ``tile`` output columns: every result is compared with :func:`reference_unit`;
    ``item_cycles(item, mode)`` is the block's cycle model, which ``busy`` must add up to.
    Each unit has a random number of real columns (its items' ``ncols``); with ``real_cols``
    only those are compared (a ``col_skip`` DPE leaves the others stale)."""
    _, nrng = seeded(seed)
    fmt = intref.Format(x_format)
    mode = fmt.mode
    all_items, expected, ncols = [], [], []
    for _ in range(units):
        nvec = int(nrng.integers(0, max_vec + 1))
        cols = int(nrng.integers(1, tile + 1))
        ncols.append(cols)
        x, xs, w, ws = make_unit_data(nrng, x_format=fmt, nvec=nvec, cols=cols,
                                      sparsity=sparsity, vector=vector)
        acc, sat = reference_unit(x, xs, w, ws, x_format=fmt, vector=vector)
        expected.append((acc + [0] * (tile - cols), sat))
        all_items += unit_items(x, xs, w, ws, x_format=fmt, vector=vector, tile=tile,
                                rng=nrng, null_rate=null_rate,
                                filler=filler if mode == intref.Mode.INT4 else 0)

    def check(results):
        for k, (res, (acc, sat), n) in enumerate(zip(results, expected, ncols)):
            n = n if real_cols else tile
            g = ([int(a) for a in res.acc][:n], int(res.sat))
            assert g == (acc[:n], sat), f"unit {k}: got {g}, expected {(acc[:n], sat)}"

    return StreamCase(config={"mode": mode.value}, inputs=all_items, outputs=units,
                      check=check, seed=seed, in_gap=in_gap, out_gap=out_gap,
                      busy_cycles=sum(item_cycles(it, mode) for it in all_items))


def dpe_cycles(vector, cols, tile, col_skip=False):
    """``item_cycles(item, mode)`` of a DPE (:func:`hw.dpe.dpe_item_cycles`)."""
    from .dpe import dpe_item_cycles

    def item_cycles(item, mode):
        return dpe_item_cycles(mode=mode, null=item["null"], vector=vector, cols=cols,
                               tile=tile, ncols=item["ncols"] if col_skip else None)
    return item_cycles


def spe_cycles(vector, lanes, nibble_skip=False):
    """``item_cycles(item, mode)`` of an SPE (:func:`hw.spe.spe_item_cycles`)."""
    from .spe import spe_item_cycles

    def item_cycles(item, mode):
        return spe_item_cycles(item["x"], mode=mode, null=item["null"], vector=vector,
                               lanes=lanes, nibble_skip=nibble_skip)
    return item_cycles


def engine_check(dut, *, x_format, units, seed, item_cycles, **kwargs):
    """Feed ``units`` random units to an engine (DPE or SPE) with random valid/ready gaps and
    compare every result with :func:`reference_unit` (:func:`engine_case`). Returns
    ``(busy_cycles, total_cycles)``."""
    case = engine_case(tile=len(dut.o.payload.acc), x_format=x_format, units=units, seed=seed,
                       item_cycles=item_cycles, **kwargs)
    return run_stream_case(dut, case)


def _ppu_random_layer(nrng, *, pixels, channels, residual):
    mag = nrng.uniform(0, 62, (1, pixels, channels))
    acc = (np.sign(nrng.uniform(-1, 1, mag.shape)) * np.floor(2.0 ** mag)).astype(np.int64)
    acc[nrng.random(acc.shape) < 0.15] = 0
    k = nrng.integers(-32767, 32768, channels).astype(np.int32)
    k[: channels // 4] = nrng.integers(-3, 4, channels // 4)  # small mantissas: exact ties
    bias = nrng.integers(-2 ** 20, 2 ** 20, channels).astype(np.int32)
    res = None
    if residual:
        res = nrng.integers(-2 ** 31, 2 ** 31, acc.shape, dtype=np.int64).astype(np.int32)
        res[:, :, ::3] //= 2 ** 12
    return acc, k, bias, res


def ppu_case(*, out_format, relu, residual, seed, channels=40, pixels=3, in_gap=0.3,
             out_gap=0.3, vector=16):
    """A :class:`StreamCase` for the PPU: random accumulators (up to 2**62), scale mantissas
    (small ones give exact ties), bias, residual and shift; every output block (codes, scale,
    count, base, zero flags) and the saturation total compared with :func:`intref.ppu`."""
    from .ppu import block_closed_by
    _, nrng = seeded(seed)
    shift = int(nrng.choice([0, 1, 2, int(nrng.integers(3, 64))]))
    acc, k, bias, res = _ppu_random_layer(nrng, pixels=pixels, channels=channels,
                                          residual=residual)
    if seed % 2:  # an all-zero output pixel: every block of it gets scale 0 and codes 0
        acc[0, 0, :] = 0
        bias[:] = 0
        if residual:
            res[0, 0, :] = 0
    ref = intref.ppu(acc, k, shift, bias, res, relu=relu, out_format=out_format, vector=vector)
    blk = intref.block_size(intref.Format(out_format), vector)
    inputs = []
    for px in range(pixels):
        for c in range(channels):
            last = bool(block_closed_by(c, channels, blk))
            r = int(res[0, px, c]) if residual else int(nrng.integers(-99, 99))
            inputs.append({"acc": int(acc[0, px, c]), "k": int(k[c]), "bias": int(bias[c]),
                           "residual": r, "chan": c, "last": last})
    nblk = -(-channels // blk)

    def check(results):
        sat = 0
        for n, res_blk in enumerate(results):
            px, b = divmod(n, nblk)
            count = min(blk, channels - b * blk)
            assert res_blk.base == b * blk and res_blk.count == count
            want = [int(c) for c in ref.codes[0, px, b * blk:b * blk + count]]
            assert [int(c) for c in res_blk.codes][:count] == want, (px, b)
            assert all(int(c) == 0 for c in res_blk.codes[count:])
            assert res_blk.scale == int(ref.scales[0, px, b]), (px, b)
            zeros = [(int(res_blk.zeros) >> j) & 1 for j in range(count)]
            assert zeros == [int(c == 0) for c in want]
            sat += int(res_blk.sat)
        assert sat == ref.saturated

    config = {"shift": shift, "relu": int(relu), "res_en": int(residual),
              "out_format": int(intref.Format(out_format).value)}
    return StreamCase(config=config, inputs=inputs, outputs=pixels * nblk, check=check,
                      seed=seed, in_gap=in_gap, out_gap=out_gap)


def detector_case(*, out_format, channels, threshold, seed, pixels=9, vector=16):
    """Inputs and expectations for the sparsity detector: the zero flags of every output
    block of a random layer through the golden PPU (channel sparsity varies widely), the
    per-channel zero counts and the channel map (:func:`intref.channel_map`).

    Returns a dict: ``config`` (channels, pixels, threshold), ``inputs`` (``zeros`` /
    ``base`` payloads), ``counts``, ``map_bits``, ``seed``."""
    _, nrng = seeded(seed)
    acc = nrng.integers(-2 ** 40, 2 ** 40, (1, pixels, channels))
    density = nrng.uniform(0, 1, channels)
    acc[nrng.random(acc.shape) > density] = 0
    relu = out_format == intref.Format.UINT4 or nrng.random() < 0.5
    ref = intref.ppu(acc.astype(np.int64), np.full(channels, 1 << 10, np.int32), 30,
                     np.zeros(channels, np.int32), relu=relu, out_format=out_format,
                     vector=vector)
    blk = intref.block_size(intref.Format(out_format), vector)
    inputs = []
    for px in range(pixels):
        for base in range(0, channels, blk):
            codes = ref.codes[0, px, base:base + blk]
            inputs.append({"zeros": sum(1 << j for j, c in enumerate(codes) if c == 0),
                           "base": base})
    want_map = intref.channel_map(ref.zero_counts, pixels, threshold_pct=threshold,
                                  vector=vector)
    return {"config": {"channels": channels, "pixels": pixels, "threshold": threshold},
            "inputs": inputs, "counts": [int(z) for z in ref.zero_counts],
            "map_bits": [int(b) for b in want_map], "seed": seed}


def addrgen_case(shape, x_format, *, groups, seed, tile=4, vector=16, act_base=7,
                 w_base=100):
    """A random channel map for ``shape`` and the exact item streams the address generator
    must produce (:func:`hw.addrgen.walk_items`, addresses offset by the bases).

    Returns a dict: ``desc`` (the register block of :meth:`hw.job.Descriptor.register_const`),
    ``route`` (the map as an int), ``route_bits``, ``want`` (``{"d": [...], "s": [...]}`` item
    dicts), ``seed``."""
    from .addrgen import walk_items
    from .job import Descriptor

    _, nrng = seeded(seed)
    fmt = intref.Format(x_format)
    mode = fmt.mode
    route_bits = [int(b) for b in nrng.integers(0, 2, groups)]
    desc = Descriptor.of_layer(shape, x_format=fmt, out_format=intref.Format.INT4, relu=False,
                               residual=False, scale_shift=0, vector=vector).register_const(
        act_base=act_base, w_base=w_base)
    want = {}
    for name in ("d", "s"):
        items = list(walk_items(shape, route_bits, sparse=(name == "s"), mode=mode,
                                vector=vector, tile=tile))
        for it in items:
            if not it["null"]:
                it["act_addr"] += act_base
                it["w_addr"] += w_base
        want[name] = items
    return {"desc": desc, "route": sum(b << g for g, b in enumerate(route_bits)),
            "route_bits": route_bits, "want": want, "seed": seed}


def _signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def serializer_case(*, vector, tile, cout, out_format, res_en, pixels, seed, par_base=3,
                    res_base=5):
    """Random engine results of ``pixels`` x ceil(cout / tile) units for a
    :class:`hw.serializer.JoinSerializer` and the PPU elements it must emit: channel order,
    ``last`` (:func:`hw.ppu.block_closed_by`), the two accumulators' 64-bit sum, ``k`` /
    ``bias`` from the param word ``par_base + chan``, ``residual`` from the residual word
    ``res_base + pixel * cout + chan`` (only if ``res_en``).

    Returns a dict: ``config`` (input port -> value, held during the case, after a ``clear``
    pulse), ``units`` ((DPE result, SPE result) per unit: dicts of ``result_layout(tile)``),
    ``par_words`` / ``res_words`` (memory images from address 0), ``want`` (expected element
    dicts), ``reads`` (memory words the serializer must read), ``check(results)`` (raises
    AssertionError unless the ``o`` payloads, in order, are ``want``), ``seed``."""
    from .layout import PARAM_WORD_BITS, RES_WORD_BITS
    from .ppu import block_closed_by

    rnd = random.Random(seed)
    ntile = -(-cout // tile)
    par_words = [rnd.getrandbits(PARAM_WORD_BITS) for _ in range(par_base + cout)]
    res_words = [rnd.getrandbits(RES_WORD_BITS) for _ in range(res_base + pixels * cout)]
    big = 1 << 63

    def result():
        return {"acc": [rnd.randrange(-big, big) for _ in range(tile)],
                "sat": rnd.getrandbits(8)}
    units = [(result(), result()) for _ in range(pixels * ntile)]

    blk = intref.block_size(intref.Format(out_format), vector)
    want = []
    for px in range(pixels):
        for c in range(cout):
            d, s = units[px * ntile + c // tile]
            par = par_words[par_base + c]
            want.append({
                "acc": _signed(d["acc"][c % tile] + s["acc"][c % tile], 64),
                "k": _signed(par, intref.SCALE_MANT_BITS),
                "bias": _signed(par >> intref.SCALE_MANT_BITS, intref.PPU_WIDTH),
                "residual": (_signed(res_words[res_base + px * cout + c], RES_WORD_BITS)
                             if res_en else None),
                "chan": c, "last": int(block_closed_by(c, cout, blk) > 0)})

    def check(results):
        assert len(results) == len(want), (len(results), len(want))
        for n, (g, w) in enumerate(zip(results, want)):
            g = {"acc": int(g.acc), "k": int(g.k), "bias": int(g.bias),
                 "residual": int(g.residual) if res_en else None, "chan": int(g.chan),
                 "last": int(g.last)}
            assert g == w, f"element {n}: got {g}, expected {w}"

    config = {"cout": cout, "out_format": int(intref.Format(out_format).value),
              "res_en": int(res_en), "par_base": par_base, "res_base": res_base}
    return {"config": config, "units": units, "par_words": par_words, "res_words": res_words,
            "want": want, "reads": len(want) * (1 + int(res_en)), "check": check, "seed": seed}


def fetch_case(*, tile, items, seed, depth=16, null_rate=0.2, sparse=False):
    """Random address items (:func:`hw.addrgen.addr_item_layout` dicts) and memory images for
    a :class:`hw.fetch.OperandFetch`, and the work items it must emit: the flags of every
    item, and for a non-null one the elements and scales of the activation word ``act_addr``
    and of each column of the weight word ``w_addr`` (:mod:`hw.layout`). ``sparse``: each
    activation element and nibble is zero with a probability drawn per word.

    Returns a dict: ``inputs``, ``act_words`` / ``w_words`` (``depth`` words each, from
    address 0), ``want`` (expected item fields; flags only for a null item), ``reads`` (memory
    words the stage must read), ``check(results)`` (raises AssertionError unless the ``o``
    payloads, in order, are ``want``), ``seed``."""
    from .layout import ACT_WORD_BITS, ELEM_BITS, SCALE_OFFSET, weight_word_bits

    rnd = random.Random(seed)
    act_words = [rnd.getrandbits(ACT_WORD_BITS) for _ in range(depth)]
    if sparse:  # a second generator: the dense cases' words stay as they were
        zrnd = random.Random(seed + 7)
        for a in range(depth):
            rate = zrnd.random()
            for e in range(32):
                for nib in (0xF << ELEM_BITS * e, 0xF0 << ELEM_BITS * e):
                    if zrnd.random() < rate:
                        act_words[a] &= ~nib
    w_words = [rnd.getrandbits(weight_word_bits(tile)) for _ in range(depth)]
    inputs = [{"act_addr": rnd.randrange(depth), "w_addr": rnd.randrange(depth),
               "first": rnd.getrandbits(1), "last": rnd.getrandbits(1),
               "null": int(rnd.random() < null_rate)} for _ in range(items)]

    def expected(item):
        want = {"first": item["first"], "last": item["last"], "null": item["null"]}
        if item["null"]:
            return want
        a, w = act_words[item["act_addr"]], w_words[item["w_addr"]]
        cols = [(w >> (ACT_WORD_BITS * c)) & ((1 << ACT_WORD_BITS) - 1) for c in range(tile)]
        want["x"] = [_signed(a >> (ELEM_BITS * e), ELEM_BITS) for e in range(MX_BLOCK)]
        want["x_scale"] = (a >> SCALE_OFFSET) & 0xFF
        want["w"] = [[_signed(col >> (ELEM_BITS * e), ELEM_BITS) for e in range(MX_BLOCK)]
                     for col in cols]
        want["w_scale"] = [(col >> SCALE_OFFSET) & 0xFF for col in cols]
        return want
    want = [expected(it) for it in inputs]

    def observed(it, null):
        got = {"first": int(it.first), "last": int(it.last), "null": int(it.null)}
        if not null:  # a null item's operands are don't-care
            got["x"] = [int(v) for v in it.x]
            got["x_scale"] = int(it.x_scale)
            got["w"] = [[int(v) for v in col] for col in it.w]
            got["w_scale"] = [int(v) for v in it.w_scale]
        return got

    def check(results):
        assert len(results) == len(want), (len(results), len(want))
        for n, (res, item, w) in enumerate(zip(results, inputs, want)):
            g = observed(res, item["null"])
            assert g == w, f"item {n}: got {g}, expected {w}"

    return {"inputs": inputs, "act_words": act_words, "w_words": w_words, "want": want,
            "reads": 2 * sum(1 - it["null"] for it in inputs), "check": check, "seed": seed}


def writer_case(*, out_format, channels, pixels, seed, out_base=9, vector=16):
    """The output blocks of a random layer through the golden PPU (:func:`intref.ppu`) for a
    :class:`hw.writer.OutputWriter`, and the out memory image it must write
    (:func:`hw.layout.act_words` of the golden codes and scales, at ``out_base``).

    Returns a dict: ``config`` (input port -> value, held during the case, after a ``clear``
    pulse), ``inputs`` (``ppu_out_layout`` dicts, pixel outer, block inner), ``want``
    (address -> word), ``seed``; ``done`` must be high with the last transfer only."""
    from .layout import act_words

    _, nrng = seeded(seed)
    acc = nrng.integers(-2 ** 40, 2 ** 40, (1, pixels, channels))
    acc[nrng.random(acc.shape) < 0.3] = 0
    relu = out_format == intref.Format.UINT4 or nrng.random() < 0.5
    k = nrng.integers(1, 2 ** 12, channels).astype(np.int32)
    ref = intref.ppu(acc.astype(np.int64), k, 30, np.zeros(channels, np.int32), relu=relu,
                     out_format=out_format, vector=vector)
    blk = intref.block_size(intref.Format(out_format), vector)
    inputs = []
    for px in range(pixels):
        for b, base in enumerate(range(0, channels, blk)):
            codes = [int(c) for c in ref.codes[0, px, base:base + blk]]
            inputs.append({"codes": codes + [0] * (MX_BLOCK - len(codes)),
                           "scale": int(ref.scales[0, px, b]), "count": len(codes),
                           "base": base, "sat": int(nrng.integers(0, len(codes) + 1)),
                           "zeros": sum(1 << j for j, c in enumerate(codes) if c == 0)})
    words = act_words(ref.codes[0][None], ref.scales[0][None], x_format=out_format,
                      vector=vector)
    assert len(words) == len(inputs)
    config = {"out_base": out_base, "out_words": len(inputs)}
    return {"config": config, "inputs": inputs,
            "want": {out_base + n: w for n, w in enumerate(words)}, "seed": seed}

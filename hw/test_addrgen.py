"""Address generator: exact item streams (walk_items) and a functional check that the dense and
sparse streams together cover every (tap, vector) term of golden.intref.conv2d_acc once."""

import random

import numpy as np
import pytest

from golden import intref

from .addrgen import ADDRGEN_LATENCY, AddrGen, walk_items
from .common import MX_BLOCK, Mode
from .simtest import (addrgen_case, default_args, reference_unit, run_sim, seeded,
                      stream_get)

CASES = [  # height, width, cin, cout, kernel, stride, padding, x_format
    (4, 5, 20, 3, 3, 1, 1, intref.Format.UINT4),
    (5, 4, 16, 6, 3, 2, 2, intref.Format.INT4),
    (3, 3, 40, 2, 1, 2, 0, intref.Format.MXINT8),
    (4, 4, 70, 5, 3, 1, 2, intref.Format.MXINT8),
    (6, 5, 24, 4, 3, 2, 0, intref.Format.INT4),   # no padding: the windows end at the edges
]


FIELDS = ("act_addr", "w_addr", "first", "last", "null", "ncols", "pref")


def _collect(dut, desc, route, rnd, counts):
    got = {name: [] for name in counts}

    async def bench(ctx):
        ctx.set(dut.desc, desc)
        ctx.set(dut.map, route)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    def consumer(name, n):
        async def run(ctx):
            for _ in range(n):
                it = await stream_get(ctx, getattr(dut, name), rnd, 0.3)
                got[name].append({k: int(getattr(it, k)) for k in FIELDS})
        return run

    run_sim(dut, [bench] + [consumer(name, n) for name, n in counts.items()])
    return got


@pytest.mark.parametrize("case", CASES)
def test_merged_walker_emits_every_vector_with_its_map_bit(case):
    """A balance top's single walker (merged=True): every item of every unit in walk order,
    each with its vector's map bit (pref) and the unit's channel count (ncols), exactly
    walk_items(sparse=None); the dense and sparse streams interleaved per unit."""
    h, w, cin, cout, k, s, p, fmt = case
    rnd, _ = seeded(sum(case[:7]) + 1)
    shape = intref.ConvShape(h, w, cin, cout, k, s, p)
    dut = AddrGen(vector=16, tile=4, max_cin=80, merged=True)
    ag = addrgen_case(shape, fmt, groups=dut.groups, seed=sum(case[:7]), tile=4)
    want = list(walk_items(shape, ag["route_bits"], sparse=None, mode=fmt.mode, vector=16,
                           tile=4))
    for it in want:
        it["act_addr"] += 7
        it["w_addr"] += 100
    got = _collect(dut, ag["desc"], ag["route"], rnd, {"o": len(want)})
    assert got["o"] == want
    real = [it for it in want if not it["null"]]
    dense_and_sparse = [it for n in ("d", "s") for it in ag["want"][n] if not it["null"]]
    key = lambda it: (it["act_addr"], it["w_addr"])  # noqa: E731
    assert sorted(map(key, real)) == sorted(map(key, dense_and_sparse))
    sparse = {key(it) for it in ag["want"]["s"] if not it["null"]}
    assert all(it["pref"] == int(key(it) in sparse) for it in real)


@pytest.mark.parametrize("case", CASES)
def test_addrgen_streams_and_coverage(case):
    h, w, cin, cout, k, s, p, fmt = case
    rnd, nrng = seeded(sum(case[:7]))
    shape = intref.ConvShape(h, w, cin, cout, k, s, p)
    tile = 4
    dut = AddrGen(vector=16, tile=tile, max_cin=80)
    ag = addrgen_case(shape, fmt, groups=dut.groups, seed=sum(case[:7]), tile=tile)
    want = ag["want"]
    got = _collect(dut, ag["desc"], ag["route"], rnd, {n: len(want[n]) for n in ("d", "s")})
    for n in ("d", "s"):
        assert got[n] == want[n], n

    # functional: the union of both streams reproduces conv2d_acc
    blk = intref.block_size(fmt, 16)
    nvec = -(-cin // blk)
    x, xs, wt, ws = _layer(nrng, shape, fmt, nvec, blk)
    ref, _ = intref.conv2d_acc(shape, x, xs, wt, ws, x_format=fmt)
    xw = np.pad(x, ((0, 0), (0, 0), (0, nvec * blk - cin))).reshape(h * w * nvec, blk)
    xsw = xs.reshape(-1)
    wpad = np.pad(wt, ((0, (-cout) % tile), (0, 0), (0, 0), (0, nvec * blk - cin)))
    ntile = wpad.shape[0] // tile
    wwords = wpad.reshape(ntile, tile, k * k * nvec, blk).transpose(0, 2, 1, 3)
    wwords = wwords.reshape(ntile * k * k * nvec, tile, blk)
    wsp = np.pad(ws, ((0, (-cout) % tile), (0, 0), (0, 0), (0, 0)))
    wswords = wsp.reshape(ntile, tile, k * k * nvec).transpose(0, 2, 1).reshape(-1, tile)
    units = {"d": _units(got["d"]), "s": _units(got["s"])}
    assert len(units["d"]) == len(units["s"]) == shape.out_height * shape.out_width * ntile
    for u, (ud, us) in enumerate(zip(units["d"], units["s"])):
        items = [it for it in ud + us if not it["null"]]
        a = [it["act_addr"] - 7 for it in items]
        wa = [it["w_addr"] - 100 for it in items]
        ux = xw[a].reshape(1, 1, -1)
        uxs = xsw[a].reshape(1, 1, -1)
        uw = wwords[wa].transpose(1, 0, 2).reshape(tile, 1, 1, -1)
        uws = wswords[wa].T.reshape(tile, 1, 1, -1)
        acc, _ = reference_unit(ux, uxs, uw, uws, x_format=fmt)
        pix, t = divmod(u, ntile)
        oy, ox = divmod(pix, shape.out_width)
        want_acc = list(ref[oy, ox, t * tile:(t + 1) * tile])
        assert acc[:len(want_acc)] == want_acc, (oy, ox, t)


LAYERS = [  # height, width, cin, cout, kernel, stride, padding, x_format: run back to back
    (1, 1, 16, 4, 3, 1, 2, intref.Format.INT4),    # one output pixel, row and column 0 only
    (7, 3, 70, 9, 3, 2, 1, intref.Format.MXINT8),
    (2, 6, 33, 4, 1, 1, 0, intref.Format.UINT4),
    (3, 1, 80, 5, 3, 1, 1, intref.Format.INT4),    # one output column
    (5, 5, 12, 13, 3, 2, 2, intref.Format.UINT4),
]


@pytest.mark.parametrize("merged", [False, True])
def test_walkers_back_to_back_layers_exact_timing(merged):
    """Layers back to back on one address generator, a junk descriptor between them (the layer
    constants and the walkers' registers hold the previous layer's values at each start):
    every item of each layer is walk_items', the first valid 2 (ADDRGEN_LATENCY) cycles
    after start and one per cycle after it while the consumer is always ready, and the same
    items under random backpressure (a stall right at the first item included)."""
    rnd = random.Random(5)
    tile = 4
    dut = AddrGen(vector=16, tile=tile, max_cin=80, merged=merged)
    names = ["o"] if merged else ["d", "s"]
    runs = []
    for n, case in enumerate(LAYERS * 2):
        h, w, cin, cout, k, s, p, fmt = case
        shape = intref.ConvShape(h, w, cin, cout, k, s, p)
        ag = addrgen_case(shape, fmt, groups=dut.groups, seed=n, tile=tile,
                          act_base=rnd.getrandbits(20), w_base=rnd.getrandbits(20))
        want = {}
        for name in names:
            sparse = None if merged else name == "s"
            items = list(walk_items(shape, ag["route_bits"], sparse=sparse, mode=fmt.mode,
                                    vector=16, tile=tile))
            for it in items:
                if not it["null"]:
                    it["act_addr"] = (it["act_addr"] + ag["desc"]["act_base"]) % 2 ** 20
                    it["w_addr"] = (it["w_addr"] + ag["desc"]["w_base"]) % 2 ** 20
            want[name] = items
        runs.append((ag, want, n < len(LAYERS)))  # first pass: always ready, timed
    got = []

    async def bench(ctx):
        for ag, want, timed in runs:
            ctx.set(dut.desc.as_value(), rnd.getrandbits(len(dut.desc.as_value())))
            ctx.set(dut.map, rnd.getrandbits(dut.groups))
            await ctx.tick()
            ctx.set(dut.desc, ag["desc"])
            ctx.set(dut.map, ag["route"])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            items = {name: [] for name in names}
            cycle = 1
            stall = not timed
            while ctx.get(dut.busy) or cycle == 1:
                for name in names:
                    ready = 1 if timed else int(rnd.random() < 0.6 and not stall)
                    ctx.set(getattr(dut, name).ready, ready)
                stall = False
                _, _, *vals = await ctx.tick().sample(
                    *[getattr(dut, name).valid for name in names],
                    *[getattr(dut, name).ready for name in names],
                    *[getattr(dut, name).payload for name in names])
                valid, ready, payload = (vals[i * len(names):(i + 1) * len(names)]
                                         for i in range(3))
                for name, v, r, it in zip(names, valid, ready, payload):
                    if v and r:
                        items[name].append((cycle, {f: int(getattr(it, f)) for f in FIELDS}))
                cycle += 1
            for name in names:
                ctx.set(getattr(dut, name).ready, 0)
            got.append(items)

    run_sim(dut, [bench])
    for n, ((ag, want, timed), items) in enumerate(zip(runs, got)):
        for name in names:
            assert [it for _, it in items[name]] == want[name], (n, name)
            if timed:
                assert [c for c, _ in items[name]] == [
                    ADDRGEN_LATENCY + i for i in range(len(want[name]))], (n, name)


def _units(items):
    units, cur = [], []
    for it in items:
        if it["first"]:
            assert not cur
        cur.append(it)
        if it["last"]:
            units.append(cur)
            cur = []
    assert not cur
    return units


def _layer(nrng, shape, fmt, nvec, blk):
    lo, hi = {intref.Format.UINT4: (0, 15), intref.Format.INT4: (-7, 7),
              intref.Format.MXINT8: (-127, 127)}[fmt]
    dt = np.uint8 if fmt == intref.Format.UINT4 else np.int8
    x = nrng.integers(lo, hi + 1, (shape.height, shape.width, shape.cin)).astype(dt)
    wlo, whi = (-127, 127) if fmt == intref.Format.MXINT8 else (-7, 7)
    w = nrng.integers(wlo, whi + 1, (shape.cout, shape.kernel, shape.kernel, shape.cin))
    smax = 254 if fmt == intref.Format.MXINT8 else 0x7E
    slo = 110 if fmt == intref.Format.MXINT8 else 0x30
    xs = nrng.integers(slo, min(smax, slo + 20), (shape.height, shape.width, nvec))
    ws = nrng.integers(slo, min(smax, slo + 20), (shape.cout, shape.kernel, shape.kernel, nvec))
    return x, xs.astype(np.uint8), w.astype(np.int8), ws.astype(np.uint8)


def test_mxint8_routing_follows_first_group_of_block():
    shape = intref.ConvShape(1, 1, 64, 1, 1, 1, 0)
    route = [0, 1, 1, 0]  # blocks 0 (bits 0, 1) and 1 (bits 2, 3)
    dense = list(walk_items(shape, route, sparse=False, mode=Mode.MXINT8, vector=16, tile=32))
    sparse = list(walk_items(shape, route, sparse=True, mode=Mode.MXINT8, vector=16, tile=32))
    assert [it["act_addr"] for it in dense] == [0]
    assert [it["act_addr"] for it in sparse] == [1]
    assert MX_BLOCK // 16 == 2


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 64}, ValueError, r"vector must be one of \(4, 8, 16\), got 64"),
    ({"tile": 0}, ValueError, r"tile must be in \[1, 256\], got 0"),
    ({"max_cin": 4}, ValueError, r"max_cin must be in \[16, 2048\], got 4"),
    ({"max_cin": None}, TypeError, "max_cin must be an int"),
])
def test_addrgen_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        AddrGen(**default_args("ag", **kwargs))

"""Dispatcher (a balance top): cycle by cycle equal to hw.cyclemodel.DispatcherModel, one
first..last run per unit and engine, every item to exactly one engine."""

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import stream

from .common import Mode, item_layout
from .cyclemodel import DispatcherModel
from .dispatch import Dispatcher, below_bounds, below_table, choose_spe
from .dpe import dpe_item_cycles
from .simtest import run_sim, seeded, stream_put
from .spe import spe_item_cycles

V, COLS, LANES, TILE = 16, 2, 3, 6


def _units(nrng, count, mode):
    """Random units of random items (non-zero density, ncols and map bits vary per unit)."""
    items = []
    for u in range(count):
        n = int(nrng.integers(1, 6))
        ncols = int(nrng.integers(1, TILE + 1))
        density = nrng.uniform(0.0, 1.0)
        unit = []
        for _ in range(n):
            lo, hi = (-127, 128) if mode == Mode.MXINT8 else (0, 16)
            x = [int(v) if nrng.random() < density else 0 for v in nrng.integers(lo, hi, 32)]
            # w_scale[0] carries the item's index (the engines name what they took by it)
            unit.append({"x": x, "x_scale": 0, "w": [[0] * 32] * TILE,
                         "w_scale": [len(items) + len(unit)] + [0] * (TILE - 1),
                         "first": 0, "last": 0, "null": 0, "ncols": ncols,
                         "pref": int(nrng.integers(0, 2)), "tag": (u, len(unit))})
        unit[0]["first"] = 1
        unit[-1]["last"] = 1
        items += unit
    return items


def _costs(mode, col_skip, nibble_skip):
    def dpe(it):
        return dpe_item_cycles(mode=mode, null=it["null"], vector=V, cols=COLS, tile=TILE,
                               ncols=it["ncols"] if col_skip else None)

    def spe(it):
        return spe_item_cycles(it["x"], mode=mode, null=it["null"], vector=V, lanes=LANES,
                               nibble_skip=nibble_skip)
    return {"d": dpe, "s": spe}


class LateWeights(Elaboratable):
    """A dispatcher whose input's weight fields arrive a cycle after the handshake, held until
    the next one, as the weight memory's read port delivers them
    (``OperandFetch(w_late=True)``): ``i`` takes whole items; ``dut.i`` gets their weight fields
    from a register loaded on its handshake."""

    def __init__(self, dut):
        self.dut = dut
        self.i = stream.Signature(item_layout(dut.tile)).flip().create()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        late = {f: Signal.like(self.i.payload[f], name=f"late_{f}") for f in ("w", "w_scale")}
        m.d.comb += [dut.i.valid.eq(self.i.valid), self.i.ready.eq(dut.i.ready),
                     *(dut.i.payload[f].eq(late.get(f, self.i.payload[f]))
                       for f in self.i.payload.shape().members)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [late[f].eq(self.i.payload[f]) for f in late]
        return m


@pytest.mark.parametrize("mode", [Mode.INT4, Mode.MXINT8])
@pytest.mark.parametrize("col_skip,nibble_skip,seed", [(True, True, 1), (False, False, 2)])
@pytest.mark.parametrize("head_reg,w_late,choice_regs,predict_ready", [
    (False, False, False, False), (True, False, False, False), (True, True, False, False),
    (True, True, True, False), (True, True, True, True)])
def test_dispatcher_matches_its_model(mode, col_skip, nibble_skip, seed, head_reg, w_late,
                                      choice_regs, predict_ready):
    """With ``w_late`` the engines name the items they take by a weight field (``w_scale``),
    so an item carrying another item's weights fails the check. ``choice_regs`` and
    ``predict_ready`` change no cycle (the same model); with ``predict_ready`` the engines
    below take an item on their own ``ready``, so a wrong prediction loses or repeats one."""
    rnd, nrng = seeded(seed)
    items = _units(nrng, 14, mode)
    assert len(items) < 256
    dut = Dispatcher(vector=V, dpe_cols=COLS, spe_lanes=LANES, tile=TILE, col_skip=col_skip,
                     nibble_skip=nibble_skip, head_reg=head_reg, w_late=w_late,
                     choice_regs=choice_regs, predict_ready=predict_ready)
    top = LateWeights(dut) if w_late else dut
    cost = _costs(mode, col_skip, nibble_skip)
    trace, taken = [], {"d": [], "s": []}
    units = len({it["tag"][0] for it in items})

    async def producer(ctx):
        ctx.set(dut.mode, mode)
        for it in items:
            await stream_put(ctx, top.i, {k: v for k, v in it.items() if k != "tag"}, rnd, 0.2)

    async def engines(ctx):
        """Two engines as the DPE / SPE behave: busy for the item's cost, the next item taken
        in the final cycle, random stalls (a full result register) in any busy cycle."""
        left = {"d": 0, "s": 0}
        head = 0
        while min(sum(1 for t in taken[e] if t["last"]) for e in "ds") < units:
            assert len(trace) < 100 * len(items), f"not done after {len(trace)} cycles"
            ready, adv = {}, {}
            for e in "ds":
                stall = left[e] > 0 and rnd.random() < 0.15
                adv[e] = left[e] > 0 and not stall
                ready[e] = left[e] == 0 or (left[e] == 1 and not stall)
                ctx.set(getattr(dut, e).ready, ready[e])
                ctx.set(getattr(dut, f"{e}_adv"), adv[e])
            _, _, iv, ir, dv, dp, sv, sp = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.d.valid, dut.d.payload, dut.s.valid, dut.s.payload)
            out = {"d": (dv, dp), "s": (sv, sp)}
            rec = {"i_valid": iv, "i_ready": ir, "ready": ready, "adv": adv,
                   "head": items[head] if iv else None, "out": {}}
            for e in "ds":
                valid, p = out[e]
                rec["out"][e] = (dict(first=p.first, last=p.last, null=p.null)
                                 if valid else None)
                if adv[e]:
                    left[e] -= 1
                if valid and ready[e]:
                    it = (dict(items[p.w_scale[0]]) if not p.null
                          else {"null": 1, "ncols": 0, "x": []})
                    it.update(first=p.first, last=p.last)
                    taken[e].append(it)
                    left[e] = cost[e](it)
            if iv and ir:
                head += 1
            trace.append(rec)

    run_sim(top, [producer, engines])

    # the model, stepped with the recorded engine signals, makes the same choices
    model = DispatcherModel(cost, head_reg=head_reg)
    for n, rec in enumerate(trace):
        model.comb(rec["i_valid"], rec["head"], rec["ready"])
        got = {e: model.out[e] and {k: model.out[e][k] for k in ("first", "last", "null")}
               for e in "ds"}
        assert got == rec["out"], (n, got, rec["out"])
        if rec["i_valid"]:
            assert model.i_ready == bool(rec["i_ready"]), n
        model.edge(rec["adv"])

    # per engine one first..last run per unit; every item to exactly one engine
    seen = []
    for e in "ds":
        runs, open_run = 0, False
        for it in taken[e]:
            assert bool(it["first"]) != open_run, (e, it)
            open_run = not it["last"]
            runs += bool(it["last"])
            if not it["null"]:
                seen.append(it["tag"])
        assert runs == units and not open_run, e
    assert sorted(seen) == [it["tag"] for it in items]
    assert taken["d"] and taken["s"]


def test_choose_spe_rule():
    both = dict(dpe_free=True, spe_free=True, dpe_cost=4)
    assert choose_spe(spe_cost=3, pref=0, **both) is True
    assert choose_spe(spe_cost=5, pref=1, **both) is False
    assert choose_spe(spe_cost=4, pref=1, **both) and not choose_spe(spe_cost=4, pref=0, **both)
    # one free engine takes the item whatever it costs there; none free: wait
    assert choose_spe(dpe_free=True, spe_free=False, dpe_cost=32, spe_cost=1, pref=1) is False
    assert choose_spe(dpe_free=False, spe_free=True, dpe_cost=1, spe_cost=16, pref=0) is True
    assert choose_spe(dpe_free=False, spe_free=False, dpe_cost=1, spe_cost=1, pref=0) is None


@pytest.mark.parametrize("lanes", [1, 3, 32])
def test_below_tables_match_the_comparison(lanes):
    """The flag tables of ``Dispatcher(choice_regs=True)``'s "SPE cheaper" (no adder after
    the tables) against the comparison of the costs, for every count and every limit an
    item cost can take."""
    sweep = [max(1, -(-n // lanes)) for n in range(33)]
    for limit in range(1, 4 * sweep[-1] + 3):
        flags = below_table(lambda n: sweep[n], limit)
        assert [flags[n] for n in range(33)] == [int(sweep[n] < limit) for n in range(33)]
        bounds = below_bounds(lambda hi, lo: 2 * (sweep[hi] + sweep[lo]), limit)
        assert all((hi < bounds[lo]) == (2 * (sweep[hi] + sweep[lo]) < limit)
                   for hi in range(33) for lo in range(33)), limit


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"spe_lanes": 0}, ValueError, r"spe_lanes must be in \[1, 32\], got 0"),
    ({"tile": 1}, ValueError, r"tile must be in \[2, 256\], got 1"),
    ({"vector": 12}, ValueError, "vector must be one of"),
    ({"head_reg": 1}, TypeError, "head_reg must be a bool, got 1"),
    ({"w_late": 1, "head_reg": True}, TypeError, "w_late must be a bool, got 1"),
    ({"w_late": True}, ValueError, "w_late needs head_reg"),
    ({"choice_regs": True}, ValueError, "choice_regs needs head_reg"),
    ({"spe_info": True}, ValueError, "spe_info needs head_reg"),
    ({"predict_ready": True, "head_reg": True}, ValueError, "predict_ready needs choice_regs"),
    ({"predict_ready": 1}, TypeError, "predict_ready must be a bool, got 1"),
    ({"choice_regs": 1, "head_reg": True}, TypeError, "choice_regs must be a bool, got 1"),
    ({"col_skip": None}, TypeError, "col_skip must be a bool, got None"),
])
def test_dispatcher_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Dispatcher(**{**dict(vector=V, dpe_cols=COLS, spe_lanes=LANES, tile=TILE), **kwargs})

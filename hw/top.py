"""Accelerator top: controller, memories, address generator, DPE + SPE, PPU, sparsity detector
and performance counters. One layer execution per ``start``."""

from pathlib import Path

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from golden import intref

from .addrgen import AddrGen
from .common import MX_BLOCK, Format, validating
from .config import COUNTER_BITS, COUNTERS, MEMORIES, AcceleratorConfig
from .descriptor import ADDR_BITS, descriptor_layout
from .detector import SparsityDetector
from .dpe import DPE
from .layout import ACT_WORD_BITS, ELEM_BITS, SCALE_OFFSET, read_memh
from .ppu import PPU
from .spe import SPE

__all__ = ["Accelerator", "MemSel", "block_args"]


def _pack_struct(layout, fields):
    """``Cat`` of one value per field of the struct ``layout`` (each exactly the field's width),
    for assigning a whole struct signal in one statement."""
    parts, pos = [], 0
    for name, field in sorted(layout, key=lambda nf: nf[1].offset):
        value = Value.cast(fields[name])
        assert field.offset == pos and len(value) == field.width, name
        parts.append(value)
        pos += field.width
    assert pos == layout.size and set(fields) == {name for name, _ in layout}
    return Cat(*parts)


class MemSel(enum.Enum, shape=3):
    """Memory selected by the host port (the order of :data:`hw.config.MEMORIES`)."""
    ACT = 0
    WEIGHT = 1
    PARAM = 2
    RES = 3
    OUT = 4


assert [m.name.lower() for m in MemSel] == list(MEMORIES)


def block_args(config):
    """``{submodule name: (class, kwargs)}`` of the blocks :class:`Accelerator` builds for
    ``config``: the one mapping from the accelerator's parameters to its blocks' (the FPGA
    kit builds the same blocks alone for synthesis)."""
    c = config
    V, T, C = c.vector, c.tile, c.max_cout
    return {
        "ag": (AddrGen, dict(vector=V, tile=T, max_cin=c.max_cin)),
        "dpe": (DPE, dict(vector=V, cols=c.dpe_cols, tile=T)),
        "spe": (SPE, dict(vector=V, lanes=c.spe_lanes, cols=T)),
        "ppu": (PPU, dict(vector=V, max_channels=C)),
        "det": (SparsityDetector, dict(vector=V, max_channels=C, max_pixels=c.max_pixels)),
    }


class Accelerator(wiring.Component):
    """The SQ-DM accelerator for one convolution layer at a time (docs/hardware.md).

    Parameters
    ----------
    config : :class:`hw.config.AcceleratorConfig` (default: ``AcceleratorConfig()``)
        Every generator parameter, already validated.
    init : dict or None (keyword-only)
        Maps "act", "weight", "param", "res", "out" to a list of words or to the path of a
        ``$readmemh`` file (parsed at generation time).

    Members
    -------
    desc : In(descriptor_layout()), map : In(config.groups_in)
        Layer descriptor and the input's channel map (1 = sparse), sampled at ``start``.
    start : In(1)
        Pulse (while not busy): registers desc/map, clears the counters and the zero counters.
    busy, done : Out(1)
        ``busy`` from the cycle after ``start`` until the last output word is written;
        ``done`` then stays high until the next ``start``.
    next_map : Out(config.groups_out), zc_chan : In, zc_count : Out
        Channel map computed from this layer's output (valid when ``done``) and a read port of
        the per-channel zero counters.
    host_sel, host_addr, host_wdata, host_we : In; host_rdata : Out
        Host port: writes ``host_wdata`` to the selected input memory (ACT, WEIGHT, PARAM,
        RES) when ``host_we``; the word at ``host_addr`` of the OUT memory appears on
        ``host_rdata`` one cycle later (the input memories have no host read port: on an FPGA
        each read port is a copy of the memory). Use while idle.
    cnt_<name> : Out(COUNTER_BITS) for each name in :data:`hw.config.COUNTERS`.

    After elaboration ``self.mems`` maps "act", "weight", "param", "res", "out" to the
    ``lib.memory.Memory`` instances (an amaranth.sim testbench may ``ctx.get``/``ctx.set``
    their ``data``). Timing: docs/hardware.md section 4.7; :mod:`hw.cyclemodel` predicts
    every counter.
    """

    def __init__(self, config=None, *, init=None):
        config = AcceleratorConfig() if config is None else config
        with validating(self):
            if not isinstance(config, AcceleratorConfig):
                raise TypeError(f"config must be an hw.config.AcceleratorConfig, got "
                                f"{config!r}")
            self.config = config
            self.depths, self.widths = config.depths, config.widths
            self.init = self._check_init(init)
        self.groups_in, self.groups_out = config.groups_in, config.groups_out
        ports = {
            "desc": In(descriptor_layout()),
            "map": In(self.groups_in),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "next_map": Out(self.groups_out),
            "zc_chan": In(range(config.max_cout)),
            "zc_count": Out(range(config.max_pixels + 1)),
            "host_sel": In(MemSel),
            "host_addr": In(ADDR_BITS),
            "host_wdata": In(config.host_width),
            "host_we": In(1),
            "host_rdata": Out(self.widths["out"]),
        }
        for name in COUNTERS:
            ports[f"cnt_{name}"] = Out(COUNTER_BITS)
        super().__init__(ports)

    def _check_init(self, init):
        if init is None:
            return {}
        if not isinstance(init, dict):
            raise TypeError(f"init must be a dict or None, got {type(init).__name__}")
        out = {}
        for name, value in init.items():
            if name not in MEMORIES:
                raise ValueError(f"init key must be one of {MEMORIES}, got {name!r}")
            width, depth = self.widths[name], self.depths[name]
            if isinstance(value, (str, Path)):
                words = read_memh(value, width, depth)
            else:
                words = [int(w) for w in value]
                if len(words) > depth:
                    raise ValueError(f"init[{name!r}] has {len(words)} words, depth is {depth}")
                if any(w < 0 or w >> width for w in words):
                    raise ValueError(f"init[{name!r}] holds a word outside {width} bits")
            out[name] = words
        return out

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        V, T = cfg.vector, cfg.tile
        blocks = block_args(cfg)

        def build(name):
            cls, kwargs = blocks[name]
            return cls(**kwargs)

        mems = {}
        for name in MEMORIES:
            mem = memory.Memory(shape=unsigned(self.widths[name]), depth=self.depths[name],
                                init=self.init.get(name, []))
            m.submodules[f"mem_{name}"] = mems[name] = mem
        self.mems = mems

        # ---- controller: descriptor registers, start / busy / done
        desc = Signal(descriptor_layout())
        route = Signal(self.groups_in)
        busy = Signal()
        done = Signal()
        launch = Signal()  # one cycle after start: the walkers start on the registered desc
        m.d.sync += launch.eq(0)
        with m.If(self.start & ~busy):
            m.d.sync += [desc.eq(self.desc), route.eq(self.map), busy.eq(1), done.eq(0),
                         launch.eq(1)]
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        is_mx_out = desc.out_format == Format.MXINT8
        out_h = Signal(13)
        out_w = Signal(13)
        s2 = desc.stride == 2
        m.d.comb += [
            out_h.eq(((desc.height + 2 * desc.padding - desc.kernel) >> s2) + 1),
            out_w.eq(((desc.width + 2 * desc.padding - desc.kernel) >> s2) + 1),
        ]
        nblk_out = Signal(range(cfg.max_cout + 1))
        m.d.comb += nblk_out.eq(Mux(is_mx_out, (desc.cout + MX_BLOCK - 1) // MX_BLOCK,
                                    (desc.cout + V - 1) // V))
        # layer constants through registers (valid from cycle 2, needed only at the end): the
        # multiplies stay off the paths that use them
        pixels = Signal(range(2 ** 26))
        out_words = Signal(range(2 ** 26 * (cfg.max_cout + 1)))
        m.d.sync += [pixels.eq(out_h * out_w), out_words.eq(pixels * nblk_out)]

        # ---- address generator and operand fetch
        m.submodules.ag = ag = build("ag")
        m.d.comb += [ag.desc.eq(desc), ag.map.eq(route), ag.start.eq(launch)]
        m.submodules.dpe = dpe = build("dpe")
        m.submodules.spe = spe = build("spe")
        m.d.comb += [dpe.mode.eq(desc.mode), spe.mode.eq(desc.mode)]
        reads = []
        for walk, eng in ((ag.d, dpe), (ag.s, spe)):
            act_rp = mems["act"].read_port()
            w_rp = mems["weight"].read_port()
            valid = Signal()
            flags = Signal(3)
            take = ~valid | eng.i.ready
            fetch = take & walk.valid & ~walk.payload.null
            m.d.comb += [
                walk.ready.eq(take),
                act_rp.en.eq(fetch), act_rp.addr.eq(walk.payload.act_addr),
                w_rp.en.eq(fetch), w_rp.addr.eq(walk.payload.w_addr),
            ]
            with m.If(take):
                m.d.sync += [valid.eq(walk.valid),
                             flags.eq(Cat(walk.payload.first, walk.payload.last,
                                          walk.payload.null))]
            # One assignment of the whole item, not one per field: field by field, the
            # Verilog drives the ~2.4 kbit payload wire with ~300 part-select assigns, which
            # Icarus re-resolves (and fans out) once per part (docs/hardware.md, "Simulator
            # notes").
            cols = [w_rp.data[ACT_WORD_BITS * c:ACT_WORD_BITS * (c + 1)] for c in range(T)]
            item = _pack_struct(eng.i.payload.shape(), {
                "x": Cat(act_rp.data[ELEM_BITS * e:ELEM_BITS * (e + 1)]
                         for e in range(MX_BLOCK)),
                "x_scale": act_rp.data[SCALE_OFFSET:SCALE_OFFSET + 8],
                "w": Cat(col[ELEM_BITS * e:ELEM_BITS * (e + 1)]
                         for col in cols for e in range(MX_BLOCK)),
                "w_scale": Cat(col[SCALE_OFFSET:SCALE_OFFSET + 8] for col in cols),
                "first": flags[0], "last": flags[1], "null": flags[2],
            })
            m.d.comb += [eng.i.valid.eq(valid), eng.i.payload.eq(item)]
            reads.append(Mux(fetch, 2, 0))

        # ---- join of the two partial results of a unit
        uval = Signal()
        uacc = [Signal.like(dpe.o.payload.acc[0], name=f"uacc{c}") for c in range(T)]
        usat = Signal.like(dpe.o.payload.sat)
        ser_done = Signal()
        join = dpe.o.valid & spe.o.valid & (~uval | ser_done)
        m.d.comb += [dpe.o.ready.eq(join), spe.o.ready.eq(join)]
        with m.If(join):
            m.d.sync += uval.eq(1)
            m.d.sync += [uacc[c].eq(dpe.o.payload.acc[c] + spe.o.payload.acc[c])
                         for c in range(T)]
            m.d.sync += usat.eq(dpe.o.payload.sat + spe.o.payload.sat)
        with m.Elif(ser_done):
            m.d.sync += uval.eq(0)

        # ---- serializer: one channel per cycle into the PPU, with its parameters
        m.submodules.ppu = ppu = build("ppu")
        m.d.comb += [ppu.shift.eq(desc.shift), ppu.relu.eq(desc.relu),
                     ppu.res_en.eq(desc.res_en), ppu.out_format.eq(desc.out_format)]
        c_idx = Signal(range(T))
        tc = Signal(13)
        # chan (= tc + c_idx), the residual row (= pixel x cout) and tile_end are registers, so
        # the serializer's handshake chain (ser_done -> join -> engine stalls) starts at a flop;
        # tile_end is recomputed every cycle for the state after this cycle's step (from the
        # registered desc, so it is right from cycle 2 of a layer; the first step is at cycle
        # 4 + ENGINE_STAGES + 1 at the earliest).
        chan = Signal(13)
        res_row = Signal(ADDR_BITS)
        tile_end = Signal()
        par_rp = mems["param"].read_port()
        res_rp = mems["res"].read_port()
        pf_valid = Signal()
        pf_acc = Signal.like(uacc[0])
        pf_chan = Signal(range(cfg.max_cout))
        pf_last = Signal()
        take_p = ~pf_valid | ppu.i.ready
        step = take_p & uval
        last_chan = desc.cout - 1
        tile_wraps = tc + T >= desc.cout
        next_tc = Mux(tile_wraps, 0, tc + T)
        end_now = (c_idx == T - 1) | (chan == last_chan)
        end_after_inc = (c_idx == T - 2) | (chan + 1 == last_chan)
        end_after_wrap = (T == 1) | (next_tc == last_chan)
        m.d.sync += tile_end.eq(Mux(step, Mux(tile_end, end_after_wrap, end_after_inc), end_now))
        blk_end = Mux(is_mx_out, chan[:5] == MX_BLOCK - 1, (chan & (V - 1)) == V - 1)
        m.d.comb += [
            ser_done.eq(step & tile_end),
            par_rp.en.eq(step), par_rp.addr.eq(desc.par_base + chan),
            res_rp.en.eq(step & desc.res_en),
            res_rp.addr.eq(desc.res_base + res_row + chan),
        ]
        with m.If(take_p):
            m.d.sync += [pf_valid.eq(uval), pf_acc.eq(Array(uacc)[c_idx]), pf_chan.eq(chan),
                         pf_last.eq(blk_end | (chan == last_chan))]
        with m.If(step):
            with m.If(tile_end):
                m.d.sync += [c_idx.eq(0), tc.eq(next_tc), chan.eq(next_tc)]
                with m.If(tile_wraps):
                    m.d.sync += res_row.eq(res_row + desc.cout)
            with m.Else():
                m.d.sync += [c_idx.eq(c_idx + 1), chan.eq(chan + 1)]
        pp = ppu.i.payload
        m.d.comb += [
            ppu.i.valid.eq(pf_valid), pp.acc.eq(pf_acc), pp.chan.eq(pf_chan),
            pp.last.eq(pf_last),
            pp.k.eq(par_rp.data[:intref.SCALE_MANT_BITS]),
            pp.bias.eq(par_rp.data[intref.SCALE_MANT_BITS:]),
            pp.residual.eq(res_rp.data),
        ]
        reads.append(Mux(step, 1, 0) + Mux(step & desc.res_en, 1, 0))

        # ---- output writer and sparsity detector
        out_wp = mems["out"].write_port()
        ob = Signal(range(cfg.max_cout + 1))
        opix = Signal(range(2 ** 26))
        written = Signal(range(2 ** 32))
        po = ppu.o.payload
        m.d.comb += [
            ppu.o.ready.eq(1),
            out_wp.en.eq(ppu.o.valid),
            out_wp.addr.eq(desc.out_base + opix * nblk_out + ob),
            out_wp.data.eq(Cat(*[po.codes[e] for e in range(MX_BLOCK)], po.scale)),
        ]
        m.submodules.det = det = build("det")
        m.d.comb += [
            det.clear.eq(self.start & ~busy),
            det.i.valid.eq(ppu.o.valid), det.i.payload.zeros.eq(po.zeros),
            det.i.payload.base.eq(po.base),
            det.channels.eq(desc.cout), det.pixels.eq(pixels), det.threshold.eq(desc.threshold),
            self.next_map.eq(det.map), det.rd_chan.eq(self.zc_chan),
            self.zc_count.eq(det.rd_count),
        ]
        with m.If(ppu.o.valid):
            m.d.sync += written.eq(written + 1)
            with m.If(ob == nblk_out - 1):
                m.d.sync += [ob.eq(0), opix.eq(opix + 1)]
            with m.Else():
                m.d.sync += ob.eq(ob + 1)
            with m.If(written + 1 == out_words):
                m.d.sync += [busy.eq(0), done.eq(1)]

        with m.If(self.start & ~busy):
            m.d.sync += [c_idx.eq(0), tc.eq(0), chan.eq(0), res_row.eq(0), ob.eq(0), opix.eq(0),
                         written.eq(0)]

        # ---- performance counters
        incs = {
            "cycles": busy,
            "dpe_busy": dpe.busy,
            "spe_busy": spe.busy,
            "macs": dpe.macs + spe.macs,
            "zeros_skipped": spe.skipped,
            "mem_reads": reads[0] + reads[1] + reads[2],
            "mem_writes": ppu.o.valid,
            "sat_terms": Mux(join, dpe.o.payload.sat + spe.o.payload.sat, 0),
            "sat_ppu": Mux(ppu.o.valid, po.sat, 0),
        }
        for name in COUNTERS:
            reg = getattr(self, f"cnt_{name}")
            with m.If(self.start & ~busy):
                m.d.sync += reg.eq(0)
            with m.Else():
                m.d.sync += reg.eq(reg + incs[name])

        # ---- host port: writes to the input memories, reads of the out memory only (a read
        # port on the others would cost a copy of each, e.g. of the weight memory, on FPGAs)
        for k, name in enumerate(MEMORIES):
            if name != "out":
                wp = mems[name].write_port()
                m.d.comb += [wp.addr.eq(self.host_addr), wp.data.eq(self.host_wdata),
                             wp.en.eq(self.host_we & (self.host_sel == MemSel(k)))]
        out_rp = mems["out"].read_port()
        m.d.comb += [out_rp.addr.eq(self.host_addr), self.host_rdata.eq(out_rp.data)]
        return m

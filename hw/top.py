"""Accelerator top: controller, memories, address generator, operand fetch, DPE + SPE, join and
serializer, PPU, output writer, sparsity detector and performance counters. One layer execution
per ``start``. With ``spe_lanes=0`` the same generator builds a dense top: the DPE alone, the
SPE's place taken by :class:`hw.nullspe.NullSPE`."""

from pathlib import Path

from amaranth.hdl import Module, Mux, Signal, Value, unsigned
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .addrgen import AddrGen, addr_item_layout
from .common import MX_BLOCK, Format, connect_read_port, validating
from .config import COUNTER_BITS, COUNTERS, MEMORIES, AcceleratorConfig
from .descriptor import ADDR_BITS, descriptor_layout
from .detector import SparsityDetector
from .dispatch import Dispatcher
from .dpe import DPE
from .engine import engine_stages
from .fetch import OperandFetch, fetch_latency
from .layout import read_memh
from .nullspe import NullSPE
from .ppu import PPU, ppu_latency
from .serializer import JoinSerializer
from .skid import SkidBuffer
from .spe import SPE
from .writer import PIXEL_BITS, OutputWriter

__all__ = ["Accelerator", "MemSel", "block_args", "ENGINE_COUNTERS"]

#: The counters of engine-side events (engines, operand fetch, join, serializer reads), whose
#: increments go through a register with ``timing_regs``.
ENGINE_COUNTERS = ("dpe_busy", "spe_busy", "macs", "zeros_skipped", "mem_reads", "sat_terms")


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
    balance, col_skip, nibble_skip = bool(c.balance), bool(c.col_skip), bool(c.nibble_skip)
    if not c.has_spe:
        engines = {"spe": (NullSPE, dict(tile=T, product_reg=bool(c.timing_regs),
                                         result_queue=bool(c.timing_regs),
                                         mant_regs=bool(c.dsp_regs)))}
    else:
        engines = {"spe": (SPE, dict(vector=V, lanes=c.spe_lanes, cols=T,
                                     nibble_skip=nibble_skip,
                                     sweep_end_reg=bool(c.timing_regs),
                                     product_reg=bool(c.timing_regs),
                                     accept_reg=bool(c.timing_regs),
                                     result_queue=bool(c.timing_regs),
                                     info_in=bool(balance and c.timing_regs),
                                     mant_regs=bool(c.dsp_regs)))}
        if balance:  # one fetch (``fetch_d``) and the dispatcher
            engines["disp"] = (Dispatcher, dict(vector=V, dpe_cols=c.dpe_cols,
                                                spe_lanes=c.spe_lanes, tile=T,
                                                col_skip=col_skip, nibble_skip=nibble_skip,
                                                head_reg=bool(c.timing_regs),
                                                w_late=bool(c.timing_regs),
                                                choice_regs=bool(c.timing_regs),
                                                counts_in=bool(c.timing_regs),
                                                spe_info=bool(c.timing_regs),
                                                predict_ready=bool(c.timing_regs)))
        else:
            engines["fetch_s"] = (OperandFetch, dict(tile=T, act_reg=bool(c.timing_regs),
                                                     free_read=bool(c.timing_regs)))
    skids = {}  # with timing_regs, a skid buffer between each walker and its fetch stage
    if c.timing_regs:
        fetches = ["fetch_d"] + [n for n in engines if n.startswith("fetch_")]
        skids = {f"skid_{n[-1]}": (SkidBuffer, dict(layout=addr_item_layout())) for n in fetches}
    return {
        "ag": (AddrGen, dict(vector=V, tile=T, max_cin=c.max_cin, merged=balance)),
        "dpe": (DPE, dict(vector=V, cols=c.dpe_cols, tile=T, col_skip=col_skip,
                          product_reg=bool(c.timing_regs), result_queue=bool(c.timing_regs),
                          mant_regs=bool(c.dsp_regs))),
        # with the dispatcher's head register, the weight word is read as the item enters the
        # head, which holds no copy of its own (the fetch's read port or, with free_read, its
        # copy does)
        # the dispatcher's input counts registered by the fetch (its third register stage)
        "fetch_d": (OperandFetch, dict(tile=T, act_reg=bool(c.timing_regs),
                                       free_read=bool(c.timing_regs),
                                       w_late="disp" in engines and bool(c.timing_regs),
                                       counts_vector=(V if "disp" in engines and c.timing_regs
                                                      else None))),
        **engines,
        **skids,
        "ser": (JoinSerializer, dict(vector=V, tile=T, max_channels=C,
                                     spare_unit=bool(c.timing_regs))),
        "ppu": (PPU, dict(vector=V, max_channels=C, fixed_split=bool(c.timing_regs),
                          running_scale=bool(c.timing_regs))),
        "wr": (OutputWriter, dict(max_channels=C)),
        "det": (SparsityDetector, dict(vector=V, max_channels=C, max_pixels=c.max_pixels)),
    }


def timing_registers(config):
    """The registers of ``timing_regs`` that add cycles, as :func:`block_args` builds them for
    ``config``: ``act_reg`` (each fetch stage's second register), ``fetch_stages`` (a fetch
    stage's registers, :func:`hw.fetch.fetch_latency`: with the dispatcher's ``counts_in``
    a third, the counts' register), ``head_reg`` (the
    dispatcher's input register; False without a dispatcher), ``spare_unit`` (the join's
    second unit register), ``product_reg`` (the engines' product register), ``mant_regs``
    (their mantissa multiplier's registers, ``dsp_regs``) and, derived from them,
    ``engine_stages`` (the result pipeline's registers, :func:`hw.engine.engine_stages`),
    ``result_queue`` (the engines' second result register),
    ``fixed_split`` (the PPU's five extra fixed-point registers) and, derived from it,
    ``ppu_latency`` (:func:`hw.ppu.ppu_latency`). The cycle models read them here, so they
    follow the blocks."""
    blocks = block_args(config)
    disp = blocks.get("disp")
    product_reg = blocks["dpe"][1]["product_reg"]
    mant_regs = blocks["dpe"][1]["mant_regs"]
    result_queue = blocks["dpe"][1]["result_queue"]
    assert blocks["spe"][1]["product_reg"] == product_reg, "the engines' latencies differ"
    assert blocks["spe"][1]["mant_regs"] == mant_regs, "the engines' latencies differ"
    assert blocks["spe"][1]["result_queue"] == result_queue, "the engines' queues differ"
    fetch_d = blocks["fetch_d"][1]
    return {"act_reg": fetch_d["act_reg"],
            "fetch_stages": fetch_latency(fetch_d["act_reg"],
                                          fetch_d["counts_vector"] is not None),
            "head_reg": bool(disp and disp[1]["head_reg"]),
            "spare_unit": blocks["ser"][1]["spare_unit"],
            "product_reg": product_reg, "mant_regs": mant_regs,
            "engine_stages": engine_stages(product_reg, mant_regs),
            "result_queue": result_queue,
            "fixed_split": blocks["ppu"][1]["fixed_split"],
            "ppu_latency": ppu_latency(blocks["ppu"][1]["fixed_split"])}


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
    their ``data``) and ``self.blocks`` maps each submodule name of :func:`block_args` to the
    component (e.g. for stream checkers on the engines' ports). Timing: docs/hardware.md
    section 4.7; :mod:`hw.cyclemodel` predicts every counter.
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
        V = cfg.vector
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
        # one cycle after start: the walkers start on the registered desc, and the serializer,
        # the writer and the detector clear (nothing reaches them for many cycles more), so
        # their set/reset pins are driven from a flip-flop, not from the start handshake
        launch = Signal()
        m.d.sync += launch.eq(0)
        with m.If(self.start & ~busy):
            # a dense top (no SPE) runs every channel group on the DPE, whatever the map says
            m.d.sync += [desc.eq(self.desc), route.eq(self.map if cfg.has_spe else 0),
                         busy.eq(1), done.eq(0), launch.eq(1)]
        m.d.comb += [self.busy.eq(busy), self.done.eq(done)]

        # layer constants through registers (out_h, out_w, nblk_out valid from cycle 2, pixels
        # from 3, out_words from 4; needed only at the end): the arithmetic from the
        # descriptor and the multiplies stay off the paths that use them
        is_mx_out = desc.out_format == Format.MXINT8
        out_h = Signal(13)
        out_w = Signal(13)
        s2 = desc.stride == 2
        m.d.sync += [
            out_h.eq(((desc.height + 2 * desc.padding - desc.kernel) >> s2) + 1),
            out_w.eq(((desc.width + 2 * desc.padding - desc.kernel) >> s2) + 1),
        ]
        nblk_out = Signal(range(cfg.max_cout + 1))
        m.d.sync += nblk_out.eq(Mux(is_mx_out, (desc.cout + MX_BLOCK - 1) // MX_BLOCK,
                                    (desc.cout + V - 1) // V))
        pixels = Signal(range(2 ** PIXEL_BITS))
        out_words = Signal(range(2 ** PIXEL_BITS * (cfg.max_cout + 1)))
        m.d.sync += [pixels.eq(out_h * out_w), out_words.eq(pixels * nblk_out)]

        # ---- address generator, operand fetch, engines
        m.submodules.ag = ag = build("ag")
        m.d.comb += [ag.desc.eq(desc), ag.map.eq(route), ag.start.eq(launch)]
        m.submodules.dpe = dpe = build("dpe")
        m.submodules.spe = spe = build("spe")
        m.d.comb += dpe.mode.eq(desc.mode)
        if cfg.has_spe:
            m.d.comb += spe.mode.eq(desc.mode)
        fetches = {}

        def fetch(name, walk):
            m.submodules[name] = fe = build(name)
            skid_name = f"skid_{name[-1]}"
            if skid_name in blocks:  # block_args decides which walkers get one
                m.submodules[skid_name] = skid = build(skid_name)
                wiring.connect(m, walk, skid.i)
                walk = skid.o
            connect_read_port(m, mems["act"], en=fe.act_rd_en, addr=fe.act_addr,
                              data=fe.act_data)
            connect_read_port(m, mems["weight"], en=fe.w_rd_en, addr=fe.w_addr, data=fe.w_data)
            wiring.connect(m, walk, fe.i)
            fetches[name] = fe
            return fe

        disp = None
        if cfg.balance:  # one walker, one fetch, the dispatcher between it and the engines
            m.submodules.disp = disp = build("disp")
            fetch_d = fetch("fetch_d", ag.o)
            wiring.connect(m, fetch_d.o, disp.i)
            if disp.counts_in:
                m.d.comb += disp.i_counts.eq(fetch_d.counts)
            wiring.connect(m, disp.d, dpe.i)
            wiring.connect(m, disp.s, spe.i)
            if disp.spe_info:
                m.d.comb += spe.i_info.eq(disp.s_info)
            m.d.comb += [disp.mode.eq(desc.mode), disp.d_adv.eq(dpe.busy),
                         disp.s_adv.eq(spe.busy)]
        else:
            wiring.connect(m, fetch("fetch_d", ag.d).o, dpe.i)
            if cfg.has_spe:
                wiring.connect(m, fetch("fetch_s", ag.s).o, spe.i)
            else:  # a dense top: the null engine takes the walker's items
                wiring.connect(m, ag.s, spe.i)

        # ---- join of the two partial results and serializer into the PPU
        m.submodules.ser = ser = build("ser")
        m.submodules.ppu = ppu = build("ppu")
        wiring.connect(m, dpe.o, ser.d)
        wiring.connect(m, spe.o, ser.s)
        wiring.connect(m, ser.o, ppu.i)
        connect_read_port(m, mems["param"], en=ser.par_rd_en, addr=ser.par_rd_addr,
                          data=ser.par_rd_data)
        connect_read_port(m, mems["res"], en=ser.res_rd_en, addr=ser.res_rd_addr,
                          data=ser.res_rd_data)
        m.d.comb += [
            ser.cout.eq(desc.cout), ser.out_format.eq(desc.out_format),
            ser.res_en.eq(desc.res_en), ser.par_base.eq(desc.par_base),
            ser.res_base.eq(desc.res_base), ser.clear.eq(launch),
            ppu.shift.eq(desc.shift), ppu.relu.eq(desc.relu),
            ppu.res_en.eq(desc.res_en), ppu.out_format.eq(desc.out_format),
        ]

        # ---- output writer and sparsity detector (both take every PPU output block)
        m.submodules.wr = wr = build("wr")
        out_wp = mems["out"].write_port()
        po = ppu.o.payload
        wiring.connect(m, ppu.o, wr.i)
        m.d.comb += [
            wr.out_base.eq(desc.out_base), wr.out_words.eq(out_words),
            wr.clear.eq(launch),
            out_wp.en.eq(wr.wr_en), out_wp.addr.eq(wr.wr_addr), out_wp.data.eq(wr.wr_data),
        ]
        m.submodules.det = det = build("det")
        m.d.comb += [
            det.clear.eq(launch),
            det.i.valid.eq(ppu.o.valid), det.i.payload.zeros.eq(po.zeros),
            det.i.payload.base.eq(po.base),
            det.channels.eq(desc.cout), det.pixels.eq(pixels), det.threshold.eq(desc.threshold),
            self.next_map.eq(det.map), det.rd_chan.eq(self.zc_chan),
            self.zc_count.eq(det.rd_count),
        ]
        with m.If(wr.done):
            m.d.sync += [busy.eq(0), done.eq(1)]
        self.blocks = {"ag": ag, **fetches, "dpe": dpe, "spe": spe, "ser": ser, "ppu": ppu,
                       "wr": wr, "det": det, **({"disp": disp} if disp is not None else {})}

        # ---- performance counters
        sparse = {"busy": 0, "macs": 0, "skipped": 0, "reads": 0}  # a dense top has no SPE
        if cfg.has_spe:
            sparse = {"busy": spe.busy, "macs": spe.macs, "skipped": spe.skipped,
                      "reads": fetches["fetch_s"].reads if "fetch_s" in fetches else 0}
        incs = {
            "cycles": busy,
            "dpe_busy": dpe.busy,
            "spe_busy": sparse["busy"],
            "macs": dpe.macs + sparse["macs"],
            "zeros_skipped": sparse["skipped"],
            "mem_reads": fetches["fetch_d"].reads + sparse["reads"] + ser.reads,
            "mem_writes": ppu.o.valid,
            "sat_terms": Mux(ser.joined, dpe.o.payload.sat + spe.o.payload.sat, 0),
            "sat_ppu": Mux(ppu.o.valid, po.sat, 0),
        }
        if cfg.timing_regs:
            # the engine-side increments through a register: their last event comes tens of
            # cycles before the layer's last write, so every counter is final at ``done``
            for name in ENGINE_COUNTERS:
                inc = Signal(Value.cast(incs[name]).shape(), name=f"inc_{name}")
                m.d.sync += inc.eq(incs[name])
                incs[name] = inc
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

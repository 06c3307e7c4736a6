"""Join of the DPE and SPE partial results of a unit and the serializer that feeds the PPU one
output channel per cycle, with its parameters and residual."""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref

from .common import MX_BLOCK, VECTOR_CHOICES, Format, check_choice, check_int, result_layout
from .common import validating
from .descriptor import ADDR_BITS, descriptor_layout
from .layout import PARAM_WORD_BITS, RES_WORD_BITS
from .ppu import ppu_in_layout

__all__ = ["JoinSerializer"]


class JoinSerializer(wiring.Component):
    """Adds the two partial results of a unit and serializes its channels into the PPU.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Channels per UINT4/INT4 output block (MXINT8 blocks have 32).
    tile : int, 1..256
        Output channels per unit (width of the engine results).
    max_channels : int, 1..4096
        Largest ``cout`` (width of the PPU's ``chan``).
    spare_unit : bool
        A second unit register, so ``d.ready`` / ``s.ready`` come from registers only (see
        Timing).

    Members
    -------
    d, s : In(stream.Signature(result_layout(tile)))
        Results of the DPE and the SPE, one per unit, units in the walkers' order (output
        pixel outer, channel tile inner).
    o : Out(stream.Signature(ppu_in_layout(max_channels)))
        One channel per transfer: ``acc`` = sum of the two partial accumulators, ``k`` /
        ``bias`` from the param word, ``residual`` from the residual word (don't-care unless
        ``res_en``), ``chan`` and ``last`` (the channel closes an output block of
        :func:`hw.ppu.block_closed_by`).
    cout : In(descriptor cout), out_format : In(Format), res_en : In(1),
    par_base, res_base : In(ADDR_BITS)
        Layer configuration (descriptor fields), stable during a layer; ``cout`` >= 1.
    clear : In(1)
        Synchronous restart at channel 0 of pixel 0 (pulse before a layer, with no unit held).
    par_rd_addr, res_rd_addr : Out(ADDR_BITS); par_rd_en, res_rd_en : Out(1)
    par_rd_data : In(PARAM_WORD_BITS), res_rd_data : In(RES_WORD_BITS)
        Synchronous (one-cycle) read ports of the param memory (word ``par_base + chan``) and
        the residual memory (word ``res_base + pixel * cout + chan``, read only if
        ``res_en``); the data must hold while the enable is low.
    joined : Out(1)
        Both results are taken this cycle (``d.ready = s.ready = join``).
    reads : Out(range(3))
        Memory words read this cycle.

    Timing and backpressure
    -----------------------
    The unit register (``uval``, ``acc[c]`` sums) takes a pair of results in a ``join``
    cycle: both valid and the register empty or emptied in this cycle (``ser_done``). While it
    holds a unit, every cycle in which the output register is free (``~o.valid | o.ready``) is
    a step: channel ``chan`` goes into the output register and its param / residual words are
    read (one cycle latency, aligned with the register). The step of the unit's last channel
    (``c_idx == tile - 1`` or ``chan == cout - 1``) is ``ser_done``, in which the next pair
    can join, so units of back-to-back results stream with no bubble (one channel per cycle).
    The channel, the residual row and ``tile_end`` are registers (``tile_end`` is computed
    for the state after each cycle's step), so the handshake chain ``o.ready`` -> step ->
    ``ser_done`` -> ``join`` -> engine stalls starts at flops plus the consumer's ``ready``.
    ``o.valid`` never depends on ``o.ready``; ``d.ready`` / ``s.ready`` depend on
    ``d.valid & s.valid`` and on ``o.ready``.

    With ``spare_unit`` a second unit register N holds a joined pair while the unit
    register is busy: ``join`` = both valid and N empty, so ``d.ready`` / ``s.ready`` depend
    on ``d.valid & s.valid`` and a register only, and the chain from ``o.ready`` ends in the
    serializer. The unit register takes N's unit, else the joining pair, whenever it is empty
    or emptied (``ser_done``): units still stream with no bubble, and each pair joins at the
    latest when it would without N.
    """

    def __init__(self, *, vector, tile, max_channels, spare_unit=False):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.tile = check_int("tile", tile, 1, 256)
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
            # a bool or 0 / 1 (check_int refuses bools, and int() would truncate 1.5)
            flag = int(spare_unit) if isinstance(spare_unit, bool) else spare_unit
            self.spare_unit = bool(check_int("spare_unit", flag, 0, 1))
        desc = descriptor_layout()
        super().__init__({
            "d": In(stream.Signature(result_layout(tile))),
            "s": In(stream.Signature(result_layout(tile))),
            "o": Out(stream.Signature(ppu_in_layout(max_channels))),
            "cout": In(desc.members["cout"]),
            "out_format": In(Format),
            "res_en": In(1),
            "par_base": In(ADDR_BITS),
            "res_base": In(ADDR_BITS),
            "clear": In(1),
            "par_rd_addr": Out(ADDR_BITS),
            "par_rd_en": Out(1),
            "par_rd_data": In(PARAM_WORD_BITS),
            "res_rd_addr": Out(ADDR_BITS),
            "res_rd_en": Out(1),
            "res_rd_data": In(RES_WORD_BITS),
            "joined": Out(1),
            "reads": Out(range(3)),
        })

    def elaborate(self, platform):
        m = Module()
        V, T = self.vector, self.tile
        dr, sr = self.d, self.s

        # ---- join of the two partial results of a unit
        uval = Signal()
        uacc = [Signal.like(dr.payload.acc[0], name=f"uacc{c}") for c in range(T)]
        usat = Signal.like(dr.payload.sat)
        ser_done = Signal()
        sums = [dr.payload.acc[c] + sr.payload.acc[c] for c in range(T)]
        ssum = dr.payload.sat + sr.payload.sat
        if self.spare_unit:
            # a second unit register N: the pair joins while N is empty (flops only), and U
            # takes N (or the joining pair) when it is free. N's data registers load the sums
            # in every cycle N is empty (enabled by nval alone, not by the handshake chain
            # from o.ready): they matter only once nval is set, which happens in a join
            # cycle in which they load that pair.
            nval = Signal()
            nacc = [Signal.like(uacc[0], name=f"nacc{c}") for c in range(T)]
            nsat = Signal.like(usat)
            join = dr.valid & sr.valid & ~nval
            with m.If(~uval | ser_done):
                m.d.sync += [uval.eq(nval | join), nval.eq(0), usat.eq(Mux(nval, nsat, ssum))]
                m.d.sync += [uacc[c].eq(Mux(nval, nacc[c], sums[c])) for c in range(T)]
            with m.Elif(join):
                m.d.sync += nval.eq(1)
            with m.If(~nval):
                m.d.sync += [nsat.eq(ssum)] + [nacc[c].eq(sums[c]) for c in range(T)]
        else:
            join = dr.valid & sr.valid & (~uval | ser_done)
            with m.If(join):
                m.d.sync += [uval.eq(1), usat.eq(ssum)]
                m.d.sync += [uacc[c].eq(sums[c]) for c in range(T)]
            with m.Elif(ser_done):
                m.d.sync += uval.eq(0)
        m.d.comb += [dr.ready.eq(join), sr.ready.eq(join), self.joined.eq(join)]

        # ---- serializer: one channel per cycle, with its parameters
        is_mx_out = self.out_format == Format.MXINT8
        c_idx = Signal(range(T))
        tc = Signal(13)
        # chan (= tc + c_idx), the residual row (= pixel x cout) and tile_end are registers, so
        # the handshake chain (ser_done -> join -> engine stalls) starts at a flop; tile_end is
        # recomputed every cycle for the state after this cycle's step (from the layer
        # configuration, so it is right once that is stable, before the first unit).
        chan = Signal(13)
        res_row = Signal(ADDR_BITS)
        tile_end = Signal()
        pf_valid = Signal()
        pf_acc = Signal.like(uacc[0])
        pf_chan = Signal(range(self.max_channels))
        pf_last = Signal()
        take_p = ~pf_valid | self.o.ready
        step = take_p & uval
        last_chan = self.cout - 1
        tile_wraps = tc + T >= self.cout
        next_tc = Mux(tile_wraps, 0, tc + T)
        end_now = (c_idx == T - 1) | (chan == last_chan)
        end_after_inc = (c_idx == T - 2) | (chan + 1 == last_chan)
        # (next_tc == last_chan, with the wrap's comparison beside the sum's, not before it)
        end_after_wrap = (T == 1) | Mux(tile_wraps, self.cout == 1, tc + (T + 1) == self.cout)
        m.d.sync += tile_end.eq(Mux(step, Mux(tile_end, end_after_wrap, end_after_inc), end_now))
        blk_end = Mux(is_mx_out, chan[:5] == MX_BLOCK - 1, (chan & (V - 1)) == V - 1)
        m.d.comb += [
            ser_done.eq(step & tile_end),
            self.par_rd_en.eq(step), self.par_rd_addr.eq(self.par_base + chan),
            self.res_rd_en.eq(step & self.res_en),
            self.res_rd_addr.eq(self.res_base + res_row + chan),
            self.reads.eq(Mux(step, 1, 0) + Mux(step & self.res_en, 1, 0)),
        ]
        with m.If(take_p):
            m.d.sync += [pf_valid.eq(uval), pf_acc.eq(Array(uacc)[c_idx]), pf_chan.eq(chan),
                         pf_last.eq(blk_end | (chan == last_chan))]
        with m.If(step):
            with m.If(tile_end):
                m.d.sync += [c_idx.eq(0), tc.eq(next_tc), chan.eq(next_tc)]
                with m.If(tile_wraps):
                    m.d.sync += res_row.eq(res_row + self.cout)
            with m.Else():
                m.d.sync += [c_idx.eq(c_idx + 1), chan.eq(chan + 1)]
        with m.If(self.clear):
            m.d.sync += [c_idx.eq(0), tc.eq(0), chan.eq(0), res_row.eq(0)]

        pp = self.o.payload
        m.d.comb += [
            self.o.valid.eq(pf_valid), pp.acc.eq(pf_acc), pp.chan.eq(pf_chan),
            pp.last.eq(pf_last),
            pp.k.eq(self.par_rd_data[:intref.SCALE_MANT_BITS]),
            pp.bias.eq(self.par_rd_data[intref.SCALE_MANT_BITS:]),
            pp.residual.eq(self.res_rd_data),
        ]
        return m

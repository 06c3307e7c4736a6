"""Operand fetch: turns one walker's address items into engine work items by reading the
activation and weight memories."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .addrgen import addr_item_layout
from .common import MX_BLOCK, check_int, item_layout, pack_value, validating
from .descriptor import ADDR_BITS
from .layout import ACT_WORD_BITS, ELEM_BITS, SCALE_OFFSET, weight_word_bits

__all__ = ["OperandFetch", "FETCH_LATENCY"]

#: Cycles an item spends in the fetch stage (the memories' read register).
FETCH_LATENCY = 1


class OperandFetch(wiring.Component):
    """One fetch stage between a walker of :class:`hw.addrgen.AddrGen` and an engine.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    tile : int, 1..256
        Output channels per work item (weight word = ``tile`` columns of
        :data:`hw.layout.ACT_WORD_BITS` bits).

    Members
    -------
    i : In(stream.Signature(addr_item_layout()))
        Address items of one walker.
    o : Out(stream.Signature(item_layout(tile)))
        Engine work items: the activation word's 32 elements and scale, each weight column's
        elements and scale, the item's ``first`` / ``last`` / ``null`` flags, ``ncols`` and
        ``pref``.
    act_addr, w_addr : Out(ADDR_BITS); rd_en : Out(1)
        Read addresses and the read enable of a synchronous (one-cycle) read port of the
        activation and of the weight memory; ``rd_en`` is high in a cycle that takes a
        non-null item.
    act_data : In(ACT_WORD_BITS), w_data : In(weight_word_bits(tile))
        The read ports' data (the words addressed in the last ``rd_en`` cycle, held while
        ``rd_en`` is low).
    reads : Out(range(3))
        Memory words read this cycle (2 when ``rd_en``).

    Timing and backpressure
    -----------------------
    One register stage (:data:`FETCH_LATENCY`): an item taken in cycle ``n`` is on ``o`` in
    cycle ``n + 1``, its operands straight from the read ports' data. ``i.ready = ~o.valid |
    o.ready`` (the stage takes an item whenever it is empty or its item leaves), so items
    stream back to back; while ``o`` is stalled the read enable stays low and the read ports
    hold the data. A null item reads nothing (its operands are don't-care). ``i.ready`` never
    depends on ``i.valid``; ``o.valid`` never on ``o.ready``.
    """

    def __init__(self, *, tile):
        with validating(self):
            self.tile = check_int("tile", tile, 1, 256)
        super().__init__({
            "i": In(stream.Signature(addr_item_layout())),
            "o": Out(stream.Signature(item_layout(tile))),
            "act_addr": Out(ADDR_BITS),
            "w_addr": Out(ADDR_BITS),
            "rd_en": Out(1),
            "act_data": In(ACT_WORD_BITS),
            "w_data": In(weight_word_bits(tile)),
            "reads": Out(range(3)),
        })

    def elaborate(self, platform):
        m = Module()
        T = self.tile
        walk = self.i
        valid = Signal()
        flag_names = ("first", "last", "null", "ncols", "pref")
        flags = Signal(data.StructLayout({n: addr_item_layout().members[n] for n in flag_names}))
        take = ~valid | self.o.ready
        fetch = take & walk.valid & ~walk.payload.null
        m.d.comb += [
            walk.ready.eq(take),
            self.rd_en.eq(fetch), self.act_addr.eq(walk.payload.act_addr),
            self.w_addr.eq(walk.payload.w_addr),
            self.reads.eq(Mux(fetch, 2, 0)),
        ]
        with m.If(take):
            m.d.sync += [valid.eq(walk.valid),
                         flags.eq(pack_value(flags.shape(), {
                             n: walk.payload[n] for n in flag_names}))]
        # One assignment of the whole item, not one per field: field by field, the Verilog
        # drives the ~2.4 kbit payload wire with ~300 part-select assigns, which Icarus
        # re-resolves (and fans out) once per part (docs/hardware.md, "Simulator notes").
        act, wd = self.act_data, self.w_data
        cols = [wd[ACT_WORD_BITS * c:ACT_WORD_BITS * (c + 1)] for c in range(T)]
        item = pack_value(self.o.payload.shape(), {
            "x": Cat(act[ELEM_BITS * e:ELEM_BITS * (e + 1)] for e in range(MX_BLOCK)),
            "x_scale": act[SCALE_OFFSET:SCALE_OFFSET + 8],
            "w": Cat(col[ELEM_BITS * e:ELEM_BITS * (e + 1)]
                     for col in cols for e in range(MX_BLOCK)),
            "w_scale": Cat(col[SCALE_OFFSET:SCALE_OFFSET + 8] for col in cols),
            **{n: flags[n] for n in flag_names},
        })
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(item)]
        return m

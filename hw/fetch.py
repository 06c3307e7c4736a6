"""Operand fetch: turns one walker's address items into engine work items by reading the
activation and weight memories."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .addrgen import addr_item_layout
from .common import MX_BLOCK, check_bool, check_int, item_layout, pack_value, validating
from .descriptor import ADDR_BITS
from .layout import ACT_WORD_BITS, ELEM_BITS, SCALE_OFFSET, weight_word_bits

__all__ = ["OperandFetch", "fetch_latency"]


def fetch_latency(act_reg=False):
    """Cycles an item spends in the fetch stage: the memories' read register, and with
    ``act_reg`` the activation word's register (:class:`OperandFetch`)."""
    return 2 if act_reg else 1


class OperandFetch(wiring.Component):
    """One fetch stage between a walker of :class:`hw.addrgen.AddrGen` and an engine.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    tile : int, 1..256
        Output channels per work item (weight word = ``tile`` columns of
        :data:`hw.layout.ACT_WORD_BITS` bits).
    act_reg : bool
        A second register stage (``timing_regs``): the activation word read in the first
        stage is registered before it leaves, and the weight word is read one cycle later, as
        the item enters the second stage, so both arrive together. The block RAM's read data
        then reaches a register and not the consumer's logic (the dispatcher's non-zero
        counts). One cycle more per item (:func:`fetch_latency`), still one item per cycle.
    w_late : bool
        The weight word is read as the item leaves (in the cycle of the ``o`` handshake), so
        ``o.payload.w`` and ``w_scale`` are the item's in the cycle *after* its handshake, held
        until the next one: for a consumer that registers the item and holds it until the next
        handshake (the dispatcher's head, ``Dispatcher(w_late=True)``), whose copy of the
        2.1 kbit weight word (at tile 8) the read port's data register then replaces.

    Members
    -------
    i : In(stream.Signature(addr_item_layout()))
        Address items of one walker.
    o : Out(stream.Signature(item_layout(tile)))
        Engine work items: the activation word's 32 elements and scale, each weight column's
        elements and scale, the item's ``first`` / ``last`` / ``null`` flags, ``ncols`` and
        ``pref``.
    act_addr, w_addr : Out(ADDR_BITS); act_rd_en, w_rd_en : Out(1)
        Read addresses and read enables of a synchronous (one-cycle) read port of the
        activation and of the weight memory. ``act_rd_en`` is high in a cycle that takes a
        non-null item; ``w_rd_en`` in the same cycle, with ``act_reg`` in the cycle the item
        enters the second stage, with ``w_late`` in the cycle it leaves.
    act_data : In(ACT_WORD_BITS), w_data : In(weight_word_bits(tile))
        The read ports' data (the words addressed in the last enabled cycle, held while the
        enable is low).
    reads : Out(range(3))
        Memory words read this cycle (one per enable).

    Timing and backpressure
    -----------------------
    :func:`fetch_latency` register stages: an item taken in cycle ``n`` is on ``o`` in cycle
    ``n + fetch_latency(act_reg)``. Each stage takes an item whenever it is empty or its item
    moves on (``i.ready = ~o.valid | o.ready`` for one stage), so items stream back to back;
    while a stage is stalled the read enable that would overwrite its data stays low and the
    read port holds it. A null item reads nothing (its operands are don't-care).
    ``i.ready`` never depends on ``i.valid``; ``o.valid`` never on ``o.ready``.
    """

    def __init__(self, *, tile, act_reg=False, w_late=False):
        with validating(self):
            self.tile = check_int("tile", tile, 1, 256)
            self.act_reg = check_bool("act_reg", act_reg)
            self.w_late = check_bool("w_late", w_late)
        super().__init__({
            "i": In(stream.Signature(addr_item_layout())),
            "o": Out(stream.Signature(item_layout(tile))),
            "act_addr": Out(ADDR_BITS),
            "w_addr": Out(ADDR_BITS),
            "act_rd_en": Out(1),
            "w_rd_en": Out(1),
            "act_data": In(ACT_WORD_BITS),
            "w_data": In(weight_word_bits(tile)),
            "reads": Out(range(3)),
        })

    def elaborate(self, platform):
        m = Module()
        T = self.tile
        walk = self.i
        flag_names = ("first", "last", "null", "ncols", "pref")
        flag_layout = data.StructLayout({n: addr_item_layout().members[n] for n in flag_names})

        def stage(name):
            return Signal(name=f"{name}_valid"), Signal(flag_layout, name=f"{name}_flags")

        # stage a: the read register (the memories' read data belongs to its item); with
        # act_reg, stage b after it
        valid, flags = stage("a")
        if self.act_reg:
            out_valid, out_flags = stage("b")
            take_next = ~out_valid | self.o.ready  # the stage after a takes in this cycle
        else:
            out_valid, out_flags, take_next = valid, flags, self.o.ready
        take = ~valid | take_next
        fetch = take & walk.valid & ~walk.payload.null
        m.d.comb += [
            walk.ready.eq(take),
            self.act_rd_en.eq(fetch), self.act_addr.eq(walk.payload.act_addr),
        ]
        with m.If(take):
            m.d.sync += [valid.eq(walk.valid),
                         flags.eq(pack_value(flag_layout, {
                             n: walk.payload[n] for n in flag_names}))]
        # the weight address goes with the item to the transfer that reads it: into stage a,
        # into b (act_reg) or out of the last stage (w_late)
        w_addr, w_read = walk.payload.w_addr, fetch
        if self.act_reg or self.w_late:
            a_w_addr = Signal(ADDR_BITS, name="a_w_addr")
            with m.If(take):
                m.d.sync += a_w_addr.eq(w_addr)
            w_addr = a_w_addr
        if self.act_reg:  # the act word registered, the weight word read as it enters b
            act = Signal(ACT_WORD_BITS, name="b_act")
            with m.If(take_next):
                m.d.sync += [out_valid.eq(valid), out_flags.eq(flags), act.eq(self.act_data)]
            w_read = take_next & valid & ~flags.null
            if self.w_late:
                b_w_addr = Signal(ADDR_BITS, name="b_w_addr")
                with m.If(take_next):
                    m.d.sync += b_w_addr.eq(a_w_addr)
                w_addr = b_w_addr
        else:
            act = self.act_data
        if self.w_late:
            w_read = out_valid & self.o.ready & ~out_flags.null
        m.d.comb += [self.w_rd_en.eq(w_read), self.w_addr.eq(w_addr),
                     self.reads.eq(fetch + w_read)]
        # One assignment of the whole item, not one per field: field by field, the Verilog
        # drives the ~2.4 kbit payload wire with ~300 part-select assigns, which Icarus
        # re-resolves (and fans out) once per part (docs/hardware.md, "Simulator notes").
        wd = self.w_data
        cols = [wd[ACT_WORD_BITS * c:ACT_WORD_BITS * (c + 1)] for c in range(T)]
        item = pack_value(self.o.payload.shape(), {
            "x": Cat(act[ELEM_BITS * e:ELEM_BITS * (e + 1)] for e in range(MX_BLOCK)),
            "x_scale": act[SCALE_OFFSET:SCALE_OFFSET + 8],
            "w": Cat(col[ELEM_BITS * e:ELEM_BITS * (e + 1)]
                     for col in cols for e in range(MX_BLOCK)),
            "w_scale": Cat(col[SCALE_OFFSET:SCALE_OFFSET + 8] for col in cols),
            **{n: out_flags[n] for n in flag_names},
        })
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.eq(item)]
        return m

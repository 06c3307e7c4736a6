"""Operand fetch: turns one walker's address items into engine work items by reading the
activation and weight memories."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .addrgen import addr_item_layout
from .common import (ACT_COUNTS_LAYOUT, ACT_NONZERO_BITS, MX_BLOCK, VECTOR_CHOICES,
                     act_counts_of, act_nonzero, check_bool, check_choice, check_int,
                     fresh_or_held, item_layout, pack_value, validating)
from .descriptor import ADDR_BITS
from .layout import ACT_WORD_BITS, ELEM_BITS, SCALE_OFFSET, weight_word_bits

__all__ = ["OperandFetch", "fetch_latency"]


def fetch_latency(act_reg=False, counts=False):
    """Cycles an item spends in the fetch stage: the memories' read register, with
    ``act_reg`` the activation word's register, with ``counts`` the counts' register
    (:class:`OperandFetch`)."""
    return 1 + bool(act_reg) + bool(counts)


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
    free_read : bool
        With ``act_reg``: the activation memory's read port reads in every cycle
        (``act_rd_en`` = 1) at the walker's head item's address, so that the stages'
        handshake chain (which ends at the consumer's ``ready``) reaches no activation block
        RAM's enable; the word read for the item that entered the first stage is on the port
        in the next cycle only, so that stage keeps a copy (``a_act``, loaded by a registered
        flag). ``reads`` still counts the items' reads. Same cycles. The weight port keeps its
        enable: a copy of its word (2.1 kbit at tile 8) and the select between port and copy
        in front of both engines' item registers cost more routing than the enable's path
        (docs/fpga.md 0.6).
    counts_vector : None or int, one of 4, 8, 16
        With ``act_reg``: a third register stage that registers the activation word's
        non-zero counts (:func:`hw.common.act_counts`, ``vec`` of the first
        ``counts_vector`` elements) beside the item, on ``counts``; for a consumer whose cost
        logic would otherwise start with the adder trees (the dispatcher's,
        ``Dispatcher(counts_in=True)``). The counts are counted from the second stage's
        non-zero flags (registered with its word) as the item enters the third stage
        (:func:`hw.common.shallow_popcount`), so that the stages' handshake chain only
        enables flip-flops. The weight word is read as the item enters the third stage (or
        leaves it, with ``w_late``). One cycle more per item, still one per cycle.

    Members
    -------
    i : In(stream.Signature(addr_item_layout()))
        Address items of one walker.
    o : Out(stream.Signature(item_layout(tile)))
        Engine work items: the activation word's 32 elements and scale, each weight column's
        elements and scale, the item's ``first`` / ``last`` / ``null`` flags, ``ncols`` and
        ``pref``.
    counts : Out(ACT_COUNTS_LAYOUT) (with ``counts_vector`` only)
        The counts of ``o.payload.x``, valid with it.
    act_addr, w_addr : Out(ADDR_BITS); act_rd_en, w_rd_en : Out(1)
        Read addresses and read enables of a synchronous (one-cycle) read port of the
        activation and of the weight memory. ``act_rd_en`` is high in a cycle that takes a
        non-null item; ``w_rd_en`` in the same cycle, with ``act_reg`` in the cycle the item
        enters the last stage, with ``w_late`` in the cycle it leaves (with ``free_read``
        ``act_rd_en`` always).
    act_data : In(ACT_WORD_BITS), w_data : In(weight_word_bits(tile))
        The read ports' data (the words addressed in the last enabled cycle, held while the
        enable is low).
    reads : Out(range(3))
        Memory words read this cycle (one per enable).

    Timing and backpressure
    -----------------------
    :func:`fetch_latency` register stages: an item taken in cycle ``n`` is on ``o`` in cycle ``n +
    fetch_latency(act_reg, counts_vector is not None)``. Each stage takes an item whenever it is
    empty or its item moves on (``i.ready = ~o.valid | o.ready`` for one stage), so items stream
    back to back; while a stage is stalled the read enable that would overwrite its data stays low
    and the read port holds it (with ``free_read`` the act word's copy holds it). A null item
    reads nothing (its operands are don't-care). ``i.ready`` never depends on ``i.valid``;
    ``o.valid`` never on ``o.ready``.
    """

    def __init__(self, *, tile, act_reg=False, w_late=False, counts_vector=None,
                 free_read=False):
        with validating(self):
            self.tile = check_int("tile", tile, 1, 256)
            self.act_reg = check_bool("act_reg", act_reg)
            self.w_late = check_bool("w_late", w_late)
            self.free_read = check_bool("free_read", free_read)
            if free_read and not act_reg:
                raise ValueError("free_read needs act_reg: the word is read into the first "
                                 "stage's copy and registered in the second")
            if counts_vector is not None:
                check_choice("counts_vector", counts_vector, VECTOR_CHOICES)
                if not act_reg:
                    raise ValueError("counts_vector needs act_reg: the counts are taken from "
                                     "the registered activation word")
            self.counts_vector = counts_vector
        counts = {"counts": Out(ACT_COUNTS_LAYOUT)} if counts_vector is not None else {}
        super().__init__({
            "i": In(stream.Signature(addr_item_layout())),
            "o": Out(stream.Signature(item_layout(tile))),
            **counts,
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

        # the register stages, first to last: a, the read register (the memories' read data
        # belongs to its item); with act_reg b, the activation word's register; with
        # counts_vector c, the counts' register
        names = ["a"] + ["b"] * self.act_reg + ["c"] * (self.counts_vector is not None)
        valid = [Signal(name=f"{n}_valid") for n in names]
        flags = [Signal(flag_layout, name=f"{n}_flags") for n in names]
        take = [None] * len(names)  # the stage takes an item in this cycle
        ready = self.o.ready
        for k in reversed(range(len(names))):
            take[k] = ready = ~valid[k] | ready
        fetch = take[0] & walk.valid & ~walk.payload.null
        m.d.comb += [
            walk.ready.eq(take[0]),
            self.act_rd_en.eq(1 if self.free_read else fetch),
            self.act_addr.eq(walk.payload.act_addr),
        ]
        with m.If(take[0]):
            m.d.sync += [valid[0].eq(walk.valid),
                         flags[0].eq(pack_value(flag_layout, {
                             n: walk.payload[n] for n in flag_names}))]
        for k in range(1, len(names)):
            with m.If(take[k]):
                m.d.sync += [valid[k].eq(valid[k - 1]), flags[k].eq(flags[k - 1])]
        # the weight address goes with the item to the transfer that reads it: into stage a,
        # into the last stage (act_reg) or out of it (w_late)
        last = len(names) - 1
        reader = last + 1 if self.w_late else last  # the stage the reading transfer enters
        w_addr = walk.payload.w_addr
        for k in range(reader):
            reg = Signal(ADDR_BITS, name=f"{names[k]}_w_addr")
            with m.If(take[k]):
                m.d.sync += reg.eq(w_addr)
            w_addr = reg
        if self.w_late:
            w_read = valid[last] & self.o.ready & ~flags[last].null
        elif last:
            w_read = take[last] & valid[last - 1] & ~flags[last - 1].null
        else:
            w_read = fetch
        # the act word: read data, registered in b (act_reg), registered again in c with its
        # counts
        act = self.act_data
        if self.free_read:  # the port's word is a's item's in the cycle after a loaded only
            a_fresh = Signal(name="a_fresh")
            m.d.sync += a_fresh.eq(take[0])
            act = fresh_or_held(m, self.act_data, a_fresh, "a_act")
        a_word = act
        if self.act_reg:
            b_act = Signal(ACT_WORD_BITS, name="b_act")
            with m.If(take[1]):
                m.d.sync += b_act.eq(act)
            act = b_act
        if self.counts_vector is not None:
            # The counts are counted from the word's non-zero flags, registered with it in b
            # (``b_nz``: the block RAM's output reaches a register after a LUT level or two),
            # and registered with the word in c (``c_counts``, the output itself). The counting
            # logic is built outside the If, so that the handshake chain (take) only enables
            # the flip-flops and does not enter the count.
            c_act = Signal(ACT_WORD_BITS, name="c_act")
            b_nz = Signal(ACT_NONZERO_BITS, name="b_nz")
            raw = [a_word[ELEM_BITS * e:ELEM_BITS * (e + 1)] for e in range(MX_BLOCK)]
            with m.If(take[1]):
                m.d.sync += b_nz.eq(act_nonzero(raw))
            b_counts = act_counts_of(m, b_nz, self.counts_vector, "b_nnz")
            c_counts = Signal(ACT_COUNTS_LAYOUT, name="c_counts")
            with m.If(take[2]):
                m.d.sync += [c_act.eq(act), c_counts.eq(b_counts)]
            act = c_act
            m.d.comb += self.counts.eq(c_counts)
        out_valid, out_flags = valid[last], flags[last]
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

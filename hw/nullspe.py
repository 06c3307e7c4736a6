"""The sparse engine's place in a top without one (``spe_lanes=0``: a dense accelerator).

A dense top keeps the address generator, join, serializer, PPU and detector of the SQ-DM top and
drops the SPE with its operand fetch and memory read ports. Its channel map is tied to all-dense,
so the sparse walker emits one null item per unit; :class:`NullSPE` answers each unit with a
zero partial result in the very cycle in which the fetch stage and an SPE would answer it. The
join, the cycle model and every counter are then those of the full top with an all-dense map
(``spe_busy``, ``zeros_skipped`` and the SPE's products are 0).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .addrgen import addr_item_layout
from .common import check_bool, check_int, result_layout, validating
from .engine import engine_stages, result_handshake

__all__ = ["NullSPE"]


class NullSPE(wiring.Component):
    """Zero results for the sparse walker's null items, with the SPE's timing.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    tile : int, 1..256
        Accumulators of a result (the top's tile).
    product_reg, result_queue, mant_regs : bool
        As the DPE's (:class:`hw.dpe.DPE`): one pipeline register more, a second result
        register, two pipeline registers more, so that the null results keep the timing of
        the SPE the top would have.

    Members
    -------
    i : In(stream.Signature(addr_item_layout()))
        The sparse walker's items (all null; the addresses are ignored).
    o : Out(stream.Signature(result_layout(tile)))
        One all-zero result per unit (after its ``last`` item).

    Timing (the fetch stage and the SPE for null items, :mod:`hw.fetch`, :mod:`hw.spe`)
    --------------------------------------------------------------------------------
    A fetch register (``i.ready = ~valid | taken``), an issue register that takes one cycle
    per item and :func:`hw.engine.engine_stages` flag registers that stall, with the issue
    register, while the last holds a unit's end and ``o`` is full (``result_queue``: and a
    second result, ``r1_valid``, waits behind it); a result is valid
    ``engine_stages(product_reg, mant_regs) + 1`` cycles after its unit's last item was issued.
    """

    def __init__(self, *, tile, product_reg=False, result_queue=False, mant_regs=False):
        with validating(self):
            self.tile = check_int("tile", tile, 1, 256)
            self.product_reg = check_bool("product_reg", product_reg)
            self.result_queue = check_bool("result_queue", result_queue)
            self.mant_regs = check_bool("mant_regs", mant_regs)
        super().__init__({
            "i": In(stream.Signature(addr_item_layout())),
            "o": Out(stream.Signature(result_layout(tile))),
        })

    def elaborate(self, platform):
        m = Module()
        # fetch stage: an item (only its ``last`` flag matters) waits here for the issue stage
        f_valid, f_last = Signal(), Signal()
        # issue stage: one cycle per item
        busy, last = Signal(), Signal()
        # per register: it holds a unit's end
        ends = Signal(engine_stages(self.product_reg, self.mant_regs))
        # the result register's control as the engines' (zero results: no data moves)
        stall, _ = result_handshake(m, self.o, ends[-1], queue=self.result_queue,
                                    emit_behind=ends[-2],
                                    name="null")
        adv = busy & ~stall
        issue_ready = ~busy | adv
        take = ~f_valid | issue_ready
        m.d.comb += self.i.ready.eq(take)
        with m.If(take):
            m.d.sync += [f_valid.eq(self.i.valid), f_last.eq(self.i.payload.last)]
        with m.If(f_valid & issue_ready):
            m.d.sync += [busy.eq(1), last.eq(f_last)]
        with m.Elif(adv):
            m.d.sync += busy.eq(0)
        with m.If(~stall):
            m.d.sync += ends.eq((ends << 1) | (adv & last))
        m.d.comb += self.o.payload.eq(0)
        return m

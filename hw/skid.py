"""Skid buffer: a stream stage whose ``i.ready`` comes from a register."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Cuts a stream's ``ready`` path without adding latency (``timing_regs``: between a walker
    of :class:`hw.addrgen.AddrGen` and its operand fetch, so the engines' and the dispatcher's
    ``ready`` no longer reach the walker's counters in the same cycle).

    Parameters
    ----------
    layout : the payload's shape

    Members
    -------
    i : In(stream.Signature(layout)); o : Out(stream.Signature(layout))

    Behaviour
    ---------
    ``i.ready = ~held``, a register. While empty the stage passes ``i`` through (``o.valid =
    i.valid``, the same payload, in the same cycle); an item taken from ``i`` in a cycle ``o``
    does not take it is held (the *skid* register) and offered first, while ``i.ready`` is
    low. So a source whose ``valid`` stays high from its first item to its last (a walker)
    gives ``o`` exactly the same items in exactly the same cycles as without the stage: the
    consumer's cycles do not change. ``o.valid`` never depends on ``o.ready``.
    """

    def __init__(self, layout):
        self.layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        held = Signal()
        skid = Signal(self.layout, name="skid")
        m.d.comb += [
            self.i.ready.eq(~held),
            self.o.valid.eq(held | self.i.valid),
            self.o.payload.eq(Mux(held, skid, self.i.payload)),
        ]
        with m.If(self.o.ready):
            m.d.sync += held.eq(0)
        with m.Elif(self.i.valid & ~held):
            m.d.sync += held.eq(1)
        # the skid register loads whenever the stage is empty (what it loads is read only if
        # held is set with it), so that o.ready reaches one flip-flop, not its enables
        with m.If(~held):
            m.d.sync += skid.eq(self.i.payload)
        return m

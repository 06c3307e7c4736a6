"""Toy dot-product unit: exists only to prove the toolchain (Amaranth -> Verilog -> cocotb).

It is not part of the accelerator; it exercises the same things the real blocks will: a
``stream.Signature`` input with a ``data.StructLayout`` payload, signed/unsigned 4-bit arithmetic,
a registered stream output and backpressure.
"""

from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ToyMAC", "LATENCY", "ACT_SHAPE", "WEIGHT_SHAPE"]

#: Cycles from an input handshake to the earliest cycle its result is valid on the output.
LATENCY = 1
#: Activations are UINT4, weights INT4.
ACT_SHAPE = unsigned(4)
WEIGHT_SHAPE = signed(4)


class ToyMAC(wiring.Component):
    """Dot product of ``lanes`` UINT4 activations with ``lanes`` INT4 weights.

    Parameters
    ----------
    lanes : :class:`int`
        Vector length, ``>= 1`` (default 4).

    Members
    -------
    i : ``In(stream.Signature(ToyMAC.payload_layout(lanes)))``
        ``payload.a[k]`` (UINT4) and ``payload.w[k]`` (INT4), ``k < lanes``. Packed LSB-first in
        field order: ``a[0]`` is bits 0-3, ``w[0]`` starts at bit ``4 * lanes``.
    o : ``Out(stream.Signature(signed(ToyMAC.sum_width(lanes))))``
        ``sum(a[k] * w[k])``, exact (no overflow is possible at this width).

    Timing
    ------
    One register stage: a result is valid on ``o`` :data:`LATENCY` (1) cycle after its input
    handshake. Throughput is one vector per cycle. Order is preserved. The synchronous ``rst``
    empties the output register (``o.valid = 0``).

    Backpressure
    ------------
    ``i.ready = ~o.valid | o.ready``: the unit accepts a new vector whenever its output register
    is empty or is being emptied in the same cycle, so ``i.ready`` depends combinationally on
    ``o.ready`` (never the other way round). While ``o.valid & ~o.ready`` the output is held
    stable and the input is stalled. ``o.valid`` never depends on ``o.ready``.
    """

    def __init__(self, *, lanes=4):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "i": In(stream.Signature(self.payload_layout(lanes))),
            "o": Out(stream.Signature(signed(self.sum_width(lanes)))),
        })

    @property
    def lanes(self):
        return self._lanes

    @staticmethod
    def payload_layout(lanes):
        """The input payload layout for ``lanes`` lanes."""
        return data.StructLayout({
            "a": data.ArrayLayout(ACT_SHAPE, lanes),
            "w": data.ArrayLayout(WEIGHT_SHAPE, lanes),
        })

    @staticmethod
    def sum_width(lanes):
        """Width of the smallest signed integer that holds any sum of ``lanes`` products."""
        a_max = 2 ** Shape.cast(ACT_SHAPE).width - 1
        w_min = -(2 ** (Shape.cast(WEIGHT_SHAPE).width - 1))
        w_max = -w_min - 1
        lowest, highest = lanes * a_max * w_min, lanes * a_max * w_max
        return max((-lowest - 1).bit_length(), highest.bit_length()) + 1

    @staticmethod
    def compute(a, w):
        """Behavioural model: the exact dot product of two integer sequences."""
        if len(a) != len(w):
            raise ValueError(f"a and w must have the same length, not {len(a)} and {len(w)}")
        return sum(int(x) * int(y) for x, y in zip(a, w))

    def elaborate(self, platform):
        m = Module()

        products = [self.i.payload.a[k] * self.i.payload.w[k] for k in range(self._lanes)]
        total = products[0]
        for p in products[1:]:
            total = total + p

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.eq(total)

        return m

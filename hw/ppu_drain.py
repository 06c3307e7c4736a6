"""Quantizer of the PPU (:class:`hw.ppu.PPU`): the codes of a block's elements, one per cycle,
written slot by slot into the output block."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref
from golden import numerics as nx

from .common import MX_BLOCK, Format, barrel_shl, check_int, thermometer_count, validating
from .ppu_queue import ENTRY_LAYOUT, block_meta_layout, block_params_layout, ppu_element_layout

__all__ = ["BlockQuantizer", "DRAIN_LATENCY", "ppu_out_layout"]

#: Registers from an element on the quantizer's input to its code in the output register's
#: slot (the code is written at the end of that cycle): the buffer-read register ``q`` and
#: the comparison register ``c``.
DRAIN_LATENCY = 2


def ppu_out_layout(max_channels):
    """One output block: ``codes`` (32 slots; UINT4/INT4 use the first ``vector``), the FP8 or
    E8M0 ``scale`` code, the real channel ``count``, the first channel ``base``, ``zeros``
    (bit j: code j is zero and j < count) and ``sat`` (PPU values clamped in this block)."""
    return data.StructLayout({
        "codes": data.ArrayLayout(signed(8), MX_BLOCK),
        "scale": unsigned(8),
        "count": range(MX_BLOCK + 1),
        "base": range(max_channels),
        "zeros": unsigned(MX_BLOCK),
        "sat": range(MX_BLOCK + 1),
    })


class BlockQuantizer(wiring.Component):
    """Quantizes the elements of a block, one per cycle, into one output block transfer.

    Parameters (keyword-only)
    -------------------------
    max_channels : int, 1..4096
        Largest channel index + 1 (width of ``base``).

    Members
    -------
    out_format : In(Format)
        Output format, stable while blocks are in flight.
    i : In(stream.Signature(ppu_element_layout(max_channels)))
        The elements of the blocks in order (``rd`` = 0, 1, ..., ``last`` on the block's final
        one), each with its block's parameters (:func:`hw.ppu_queue.block_params_layout`;
        taken from element 0).
    o : Out(stream.Signature(ppu_out_layout(max_channels)))
        One transfer per block: code ``j`` of element ``rd = j`` in slot ``j``, the other slots
        0; the block's scale code, count, base, saturations; the zero flags of its codes.

    Function (exactly golden.intref.quantize_output given the block's parameters)
    ---------------------------------------------------------------------------
    UINT4/INT4 (``qmax`` 15/7): ``clamp(RNE(|Y| / (value * 2**16)), qmax)`` with the sign of
    ``Y``, as the count of the ``qmax`` comparisons of ``2|Y|`` with the thresholds ``(2j+1)
    * M' << (E' + 16)`` it passes (ties to even). MXINT8: ``clamp(RNE(|Y| * 2**(6 - p)),
    127)`` with the sign. An all-zero block (scale 0) has every code 0.

    Timing and backpressure
    -----------------------
    Two registers (:data:`DRAIN_LATENCY`): Q, the buffer-read register ``q`` (the element),
    compares it with the block's parameters (a copy ``qp``, taken with element 0, so the
    queue may move on to the next block at once): the 15 rounding thresholds, and for MXINT8
    the shift, rounding and clamp; C, the comparison register ``c``, counts the thresholds
    passed, applies the sign and writes the code and its zero flag into its slot of ``o``'s
    payload, with its own copy ``cp`` of the block's scale and metadata (Q may hold the next
    block); element 0 clears the other slots, the last element raises ``o.valid``. An element
    taken in cycle ``n`` is in C in cycle ``n + 2``; a block is on ``o`` the cycle after its
    last element was in C (``n + 2 + count`` for elements back to back). Q, C and the
    transfers on ``i`` pause while a finished block waits on ``o``: ``i.ready = ~(o.valid &
    ~o.ready)``. ``o.valid`` is a register and never depends on ``o.ready``.
    """

    def __init__(self, *, max_channels):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        super().__init__({
            "out_format": In(Format),
            "i": In(stream.Signature(ppu_element_layout(max_channels))),
            "o": Out(stream.Signature(ppu_out_layout(max_channels))),
        })

    def elaborate(self, platform):
        m = Module()
        width = intref.PPU_WIDTH
        el = self.i.payload
        go_o = ~(self.o.valid & ~self.o.ready)  # paused while a block waits on o
        m.d.comb += self.i.ready.eq(go_o)
        is_mx = self.out_format == Format.MXINT8

        # ---- Q: the element and (from element 0) its block's parameters
        q = Signal(data.StructLayout({
            "valid": 1, "e": ENTRY_LAYOUT, "rd": range(MX_BLOCK), "last": 1}))
        qp = Signal(block_params_layout(self.max_channels))
        with m.If(go_o):
            m.d.sync += [q.valid.eq(self.i.valid), q.e.eq(el.e), q.rd.eq(el.rd),
                         q.last.eq(self.i.valid & el.last)]
            with m.If(self.i.valid & (el.rd == 0)):
                m.d.sync += qp.eq(el.blk)
        a = q.e.mag
        qmax = Mux(self.out_format == Format.UINT4, nx.UINT4_MAX, nx.INT4_MAX)
        ups = [Mux(k < qmax, ((a << 1) > qp.thr[k]) | (((a << 1) == qp.thr[k]) & (k % 2 == 1)),
                   0)
               for k in range(nx.UINT4_MAX)]
        # MXINT8: RNE(|Y| * 2**(6 - p)) clamped to 127, then the sign (RNE is symmetric)
        fbm = width  # fraction bits of the MXINT8 rounding
        wv = barrel_shl(m, a, qp.mx_sh, fbm + nx.MX_ELEMENT_FRAC_BITS, "mxw")
        wq = wv[fbm:]
        wf = wv[:fbm]
        # round up: above half, or exactly half and odd (bit tests, no comparator chains)
        mx_up = wf[fbm - 1] & (wf[:fbm - 1].any() | wq[0])
        # min(wq + mx_up, 127) without the wide add: wq >= 127 clamps, else wq < 127 fits 7 bits
        top = nx.MX_ELEMENT_MAX
        assert top == 2 ** 7 - 1
        mx_big = wq[7:].any() | wq[:7].all()
        mxm = Signal(8)
        m.d.comb += mxm.eq(Mux(mx_big, top, wq[:7] + mx_up))

        # ---- C: the comparisons; the code
        c = Signal(data.StructLayout({
            "valid": 1, "ups": nx.UINT4_MAX, "mxm": unsigned(8), "neg": 1,
            "rd": range(MX_BLOCK), "last": 1}))
        cp = Signal(data.StructLayout({
            "meta": block_meta_layout(self.max_channels), "scale": 8, "zero": 1}))
        with m.If(go_o):
            m.d.sync += [c.valid.eq(q.valid), c.ups.eq(Cat(*ups)), c.neg.eq(q.e.neg),
                         c.mxm.eq(mxm),
                         c.rd.eq(q.rd), c.last.eq(q.last)]
            with m.If(q.valid & (q.rd == 0)):
                m.d.sync += [cp.meta.eq(qp.meta), cp.scale.eq(qp.scale), cp.zero.eq(qp.zero)]
        # the thresholds rise with j, so the comparisons passed form a thermometer code (but
        # for an all-zero block, whose thresholds are all 0 and whose codes are 0 anyway)
        mag = thermometer_count(m, c.ups, "mag")
        vsq = Mux(c.neg, -mag, mag)
        mxq = Mux(c.neg, -c.mxm, c.mxm)
        code = Signal(signed(8))
        # an all-zero block has scale 0 (M' = 0): every code is 0
        m.d.comb += code.eq(Mux(cp.zero, 0, Mux(is_mx, mxq, vsq)))

        # The codes are written into o's payload slot by slot (o is free or being taken while
        # the drain runs); the first element clears the other slots.
        out = self.o.payload
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(go_o & c.valid):
            for j in range(MX_BLOCK):
                with m.If(c.rd == j):
                    m.d.sync += [out.codes[j].eq(code), out.zeros[j].eq(code == 0)]
                with m.Elif(c.rd == 0):
                    m.d.sync += [out.codes[j].eq(0), out.zeros[j].eq(0)]
            with m.If(c.last):
                m.d.sync += [self.o.valid.eq(1), out.scale.eq(cp.scale),
                             out.count.eq(cp.meta.count), out.base.eq(cp.meta.base),
                             out.sat.eq(cp.meta.sat)]
        return m

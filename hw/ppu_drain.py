"""Quantizer of the PPU (:class:`hw.ppu.PPU`): the codes of a block's elements, one per cycle,
written slot by slot into the output block."""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref
from golden import numerics as nx

from .common import MX_BLOCK, Format, check_int, validating
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
    Two registers (:data:`DRAIN_LATENCY`): Q, the buffer-read register ``q`` (the element,
    and for MXINT8 its magnitude already shifted by ``mx_sh``'s two low bits), compares it
    with the block's parameters (a copy ``qp``, taken with element 0, so the queue may move on
    to the next block at once): the 15 rounding thresholds, and for MXINT8 the rest of the
    shift (a window of 8 bits), rounding and clamp; C, the comparison register ``c``, turns
    the thresholds passed (a thermometer code) into the signed code by a table, or adds the
    MXINT8 rounding increment with the sign, and writes the code and its zero flag into its
    slot of ``o``'s payload, with its own copy ``cp`` of the block's scale and metadata (Q may
    hold the next block); element 0 clears the other slots, the last element raises
    ``o.valid``. An element
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
        # MXINT8 takes RNE(|Y| * 2**(6 - p)) = RNE((|Y| << mx_sh) / 2**32) from the bits of
        # |Y| << mx_sh: the rounding bit 31 and the quotient's bits 32..38 (a window of |Y|),
        # "a one below bit 31" and "a one at or above bit 39" (|Y| ANDed with a thermometer
        # mask of mx_sh, registered with the block's parameters). The window's shift is split:
        # mx_sh's two low bits on the way into q (the element's own copy of its block's
        # mx_sh is valid with every element), the multiple of 4 in Q.
        fbm = width  # fraction bits of the MXINT8 rounding
        win = nx.MX_ELEMENT_FRAC_BITS + 1 + 1  # the rounding bit and the quotient's 7 bits
        q = Signal(data.StructLayout({
            "valid": 1, "e": ENTRY_LAYOUT, "rd": range(MX_BLOCK), "last": 1,
            "ax": width + 3}))
        qp = Signal(block_params_layout(self.max_channels))
        mx_below = Signal(fbm - 1)  # bit m: m + mx_sh < 31 (bit m of |Y| is below the rounding bit)
        mx_above = Signal(width)    # bit m: m + mx_sh >= 39 (above the quotient's 7 bits)
        with m.If(go_o):
            m.d.sync += [q.valid.eq(self.i.valid), q.e.eq(el.e), q.rd.eq(el.rd),
                         q.last.eq(self.i.valid & el.last),
                         q.ax.eq(el.e.mag << el.blk.mx_sh[:2])]
            with m.If(self.i.valid & (el.rd == 0)):
                m.d.sync += [qp.eq(el.blk),
                             mx_below.eq(Cat(el.blk.mx_sh < fbm - 1 - i for i in range(fbm - 1))),
                             mx_above.eq(Cat(el.blk.mx_sh >= fbm + win - 1 - i
                                             for i in range(width)))]
        a = q.e.mag
        # the elements' codes are 0 in an all-zero block (scale 0, M' = 0) and in the other
        # format's half of the code: the MXINT8 quotient is masked here, the comparisons by
        # the flag vs_on in C, which ORs the two halves
        vs_on = ~is_mx & ~qp.zero
        mx_on = is_mx & ~qp.zero
        qmax = Mux(self.out_format == Format.UINT4, nx.UINT4_MAX, nx.INT4_MAX)
        ups = [Mux(k < qmax, ((a << 1) > qp.thr[k]) | (((a << 1) == qp.thr[k]) & (k % 2 == 1)),
                   0)
               for k in range(nx.UINT4_MAX)]
        # window bit b = bit 31 + b of |Y| << mx_sh = bit 31 + b - 4 * mx_sh[2:] of q.ax
        pad_lo = 4 * ((fbm + win - 1) // 4) - (fbm - 1)
        wide = Cat(C(0, pad_lo), q.ax, C(0, win))
        base = pad_lo + fbm - 1
        steps = [wide[base - 4 * h:base - 4 * h + win] for h in range(base // 4 + 1)]
        mxw = Signal(win)
        m.d.comb += mxw.eq(Array(steps)[qp.mx_sh[2:]])
        wq = mxw[1:]
        # the quotient's seven bits all ones, selected like the window (beside its multiplexer,
        # not after it)
        wq_all = Signal()
        m.d.comb += wq_all.eq(Array([st[1:].all() for st in steps])[qp.mx_sh[2:]])
        sticky = (a[:fbm - 1] & mx_below).any()
        # round up: above half, or exactly half and odd (bit tests, no comparator chains)
        mx_up = mxw[0] & (sticky | wq[0])
        # min(wq + mx_up, 127): wq >= 127 clamps (a bit above the seventh, or the seven all
        # ones), else wq < 127 and the increment fits 7 bits; C adds it with the sign
        top = nx.MX_ELEMENT_MAX
        assert top == 2 ** 7 - 1 and len(wq) == 7
        mx_big = (a & mx_above).any() | wq_all

        # ---- C: the comparisons; the code
        c = Signal(data.StructLayout({
            "valid": 1, "ups": nx.UINT4_MAX, "vs_on": 1, "mxq": 7, "mxup": 1, "neg": 1,
            "rd": range(MX_BLOCK), "last": 1}))
        cp = Signal(data.StructLayout({
            "meta": block_meta_layout(self.max_channels), "scale": 8}))
        with m.If(go_o):
            m.d.sync += [c.valid.eq(q.valid), c.ups.eq(Cat(*ups)), c.vs_on.eq(vs_on),
                         c.neg.eq(q.e.neg),
                         c.mxq.eq(Mux(mx_on, Mux(mx_big, top, wq), 0)),
                         c.mxup.eq(mx_on & mx_up & ~mx_big),
                         c.rd.eq(q.rd), c.last.eq(q.last)]
            with m.If(q.valid & (q.rd == 0)):
                m.d.sync += [cp.meta.eq(qp.meta), cp.scale.eq(qp.scale)]
        # UINT4/INT4: the thresholds passed form a thermometer code (but in an all-zero block);
        # its one-hot edge k (k + 1 passed) selects the signed code +-(k + 1) as a table, no
        # count and no negation after it
        edge = [c.ups[k] & ~c.ups[k + 1] for k in range(nx.UINT4_MAX - 1)] + [c.ups[-1]]
        vsq = Signal(8)
        for b in range(8):
            pos = [e for k, e in enumerate(edge) if (k + 1) >> b & 1]
            neg = [e for k, e in enumerate(edge) if (-(k + 1)) >> b & 1]
            if b >= 4:  # +-(k + 1) <= 15: the sign's bits, set iff a threshold is passed
                assert not pos and len(neg) == len(edge)
                m.d.comb += vsq[b].eq(c.neg & c.ups[0])
            else:
                m.d.comb += vsq[b].eq(Mux(c.neg, Cat(*neg).any(), Cat(*pos).any()))
        # MXINT8: +-(q + up) = (q ^ s) + (up ^ s) for the sign s (-(q + up) = ~q + ~up), 0
        # when masked
        mxq = Signal(8)
        m.d.comb += mxq.eq((c.mxq ^ c.neg.replicate(8)) + (c.mxup ^ c.neg))
        code = Signal(signed(8))
        m.d.comb += code.eq(Mux(c.vs_on, vsq, 0) | mxq)
        zero = ~(c.vs_on & c.ups[0]) & ~c.mxq.any() & ~c.mxup

        # The codes are written into o's payload slot by slot (o is free or being taken while
        # the drain runs); the first element clears the other slots.
        out = self.o.payload
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(go_o & c.valid):
            for j in range(MX_BLOCK):
                with m.If(c.rd == j):
                    m.d.sync += [out.codes[j].eq(code), out.zeros[j].eq(zero)]
                with m.Elif(c.rd == 0):
                    m.d.sync += [out.codes[j].eq(0), out.zeros[j].eq(0)]
            with m.If(c.last):
                m.d.sync += [self.o.valid.eq(1), out.scale.eq(cp.scale),
                             out.count.eq(cp.meta.count), out.base.eq(cp.meta.base),
                             out.sat.eq(cp.meta.sat)]
        return m

"""Closed-block queue of the PPU (:class:`hw.ppu.PPU`): the value buffer, the closing of output
blocks, their scale and rounding thresholds, and the read-out of one element per cycle."""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref
from golden import numerics as nx

from .common import MX_BLOCK, Format, barrel_shl, check_int, thermometer_functions, validating
from .ppu_fixed import (fp8_thresholds, ppu_value_layout, scale_code_layout,
                        scale_code_of_parts)

__all__ = ["BlockQueue", "QUEUE_LATENCY", "BUFFER_DEPTH", "ENTRY_LAYOUT", "block_meta_layout",
           "block_params_layout", "ppu_element_layout"]

#: Registers between a block's last value on the queue's input and its first element on the
#: output (queue empty, output ready): the closed-block register b1, the scale register b2,
#: the threshold register b3 (loaded with the buffer's read address register).
QUEUE_LATENCY = 3

#: Values held between the fixed-point stage and the drain (a LUT RAM): a block of up to 32
#: being drained and the next one filling, with room for the pipeline in between.
BUFFER_DEPTH = 64

#: The rounding thresholds ``(2j + 1) * M' << (E' + 16)``: 9-bit odd multiples of the 4-bit
#: mantissa, shifted by up to 21.
_THR_ODD_BITS = 9
_THR_SHIFT_MIN, _THR_SHIFT_MAX = 7, 21

#: One buffered value: ``|Y|`` and its sign (the quantizer works on magnitudes).
ENTRY_LAYOUT = data.StructLayout({"mag": unsigned(intref.PPU_WIDTH), "neg": 1})


def block_meta_layout(max_channels):
    """What a closed block carries to the output: its first buffer slot ``start``, its
    ``count`` of values, its ``sat`` count (values clamped) and its first channel ``base``."""
    return data.StructLayout({
        "start": range(BUFFER_DEPTH), "count": range(MX_BLOCK + 1), "sat": range(MX_BLOCK + 1),
        "base": range(max_channels)})


def block_params_layout(max_channels):
    """A block ready to quantize (register b3): ``meta`` (:func:`block_meta_layout`), the 15
    rounding thresholds ``thr`` of UINT4/INT4 (``(2j + 1) * M' << (E' + 16)``, compared with
    ``2|Y|``), the MXINT8 shift ``mx_sh`` (``32 + 6 - p``, ``p = floor(log2 max |Y|)``), the
    ``scale`` code (FP8 or E8M0) and ``zero`` (every value is 0)."""
    width = intref.PPU_WIDTH
    return data.StructLayout({
        "meta": block_meta_layout(max_channels),
        "thr": data.ArrayLayout(unsigned(_THR_ODD_BITS + _THR_SHIFT_MAX), nx.UINT4_MAX),
        "mx_sh": range(width + nx.MX_ELEMENT_FRAC_BITS + 1),
        "scale": 8, "zero": 1})


def ppu_element_layout(max_channels):
    """One element to quantize: its buffered value ``e`` (:data:`ENTRY_LAYOUT`), its position
    ``rd`` in the block, ``last`` (``rd == count - 1``) and its block's parameters ``blk``
    (:func:`block_params_layout`)."""
    return data.StructLayout({
        "e": ENTRY_LAYOUT, "rd": range(MX_BLOCK), "last": 1,
        "blk": block_params_layout(max_channels)})


class BlockQueue(wiring.Component):
    """Buffers values, closes them into blocks and reads each block out one element per cycle,
    with the block's scale code and quantizer parameters.

    Parameters (keyword-only)
    -------------------------
    max_channels : int, 1..4096
        Largest channel index + 1 (width of ``chan`` / ``base``).
    running_scale : bool (default False)
        Take every value's comparisons with the FP8 thresholds with it, in halves
        (``i.payload.code``, :func:`hw.ppu_fixed.scale_code_parts`, made upstream by the
        fixed-point stage; :func:`hw.ppu_fixed.scale_code_of_parts` combines them), and
        keep them ORed per block instead of the block's maximum, compared after it closes:
        a thermometer code of the maximum is the OR of its values' codes. The scale's
        comparators then sit before the queue, not behind b1. Same cycles.

    Members
    -------
    out_format : In(Format)
        Output format, stable while blocks are in flight (chooses the scale computation).
    i : In(stream.Signature(ppu_value_layout(max_channels, running_scale)))
        One value per transfer, the values of a block consecutive; ``last`` closes the block
        (at most :data:`hw.common.MX_BLOCK` values).
    accepted : In(1)
        An element entered the upstream pipeline this cycle (the PPU's input handshake; for a
        queue fed directly, ``i.valid & i.ready``). Counted in ``held`` from then, so the
        buffer keeps a slot for every element in flight upstream.
    o : Out(stream.Signature(ppu_element_layout(max_channels)))
        The elements of the blocks in order, one per transfer: the value read from the buffer,
        its position, ``last``, and the block's parameters (:func:`block_params_layout`):
        UINT4/INT4 (``qmax`` 15/7), scale = the smallest FP8 code with ``qmax * value * 2**16
        >= max |Y|`` (127 constant comparators, a thermometer count); MXINT8, ``p + 111``
        (``0`` for an all-zero block).

    Timing and backpressure
    -----------------------
    Every value taken on ``i`` is written into a circular buffer of :data:`BUFFER_DEPTH` (LUT RAM,
    not a block RAM, whose ~5.6 ns clock-to-out would start the quantizer's path); the block's first
    slot, count, max ``|Y|`` (with ``running_scale`` its comparisons), saturations and first channel
    accumulate in registers, and a ``last`` value closes the block into b1. Closed blocks move
    through three registers (:data:`QUEUE_LATENCY`): b1 (closed; with a second entry b0 for a block
    that closes while b1 cannot move on), b2 (decoded from the thermometer code's edges: the FP8
    scale's code, mantissa and threshold shift, the MXINT8 shift and code), b3 (the 15
    rounding thresholds, the MXINT8 shift; loaded with the read address register ``raddr`` = the block's first slot). A register moves on when the next one is
    free or moves on in the same cycle. ``o`` shows element ``rd`` of the b3 block (the buffer read
    at ``raddr``, combinational) while b3 is taken; each transfer advances ``rd`` and ``raddr`` (and
    the register ``at_end``, ``rd == count - 1``, which is ``last``), and
    the transfer of the last element frees b3, which can take the next block in the same cycle
    (elements stream back to back across blocks). ``i.ready`` is ``~b0 & (held < BUFFER_DEPTH)``,
    both registers (``held``: elements ``accepted`` and not yet transferred on ``o``), so it never
    waits for ``o``; b0 is only ever taken when ``i`` would otherwise have stalled. ``o.valid`` is a
    register (b3 taken) and never depends on ``o.ready``.
    """

    def __init__(self, *, max_channels, running_scale=False):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        self.running_scale = bool(running_scale)
        super().__init__({
            "out_format": In(Format),
            "i": In(stream.Signature(ppu_value_layout(max_channels, running_scale))),
            "accepted": In(1),
            "o": Out(stream.Signature(ppu_element_layout(max_channels))),
        })

    def _fp8_below(self, mag):
        """The comparisons of ``mag`` with the thresholds of the FP8 codes below the largest,
        for the output format's ``qmax`` (:func:`hw.ppu_fixed.fp8_thresholds`): a
        thermometer code whose count is the smallest code with ``qmax * value * 2**16 >=
        mag``."""
        below = [Cat(*[t < mag for t in fp8_thresholds(qmax)])
                 for qmax in (nx.UINT4_MAX, nx.INT4_MAX)]
        return Mux(self.out_format == Format.UINT4, *below)

    def elaborate(self, platform):
        m = Module()
        v = self.i.payload
        width = intref.PPU_WIDTH
        go = Signal()
        m.d.comb += self.i.ready.eq(go)
        take = go & self.i.valid

        # ---- value buffer and block closing (b1)
        buf = memory.Memory(shape=ENTRY_LAYOUT, depth=BUFFER_DEPTH, init=[],
                            attrs={"ram_style": "distributed"})
        m.submodules.buf = buf
        buf_w = buf.write_port()
        buf_r = buf.read_port(domain="comb")
        ptr = range(BUFFER_DEPTH)
        wp, start = Signal(ptr), Signal(ptr)
        pos = Signal(range(MX_BLOCK))
        bsat = Signal(range(MX_BLOCK + 1))
        base = Signal.like(v.chan)
        new_sat = Mux(pos == 0, 0, bsat) + v.sat
        new_base = Mux(pos == 0, v.chan, base)
        # what the scale needs of max |Y|, accumulated in ``acc``: the maximum itself, or with
        # running_scale the comparisons of every value, ORed (see the scale below)
        is_mx = self.out_format == Format.MXINT8
        if self.running_scale:
            acc = Signal(scale_code_layout())
            new_acc = Signal(scale_code_layout())
            m.d.comb += new_acc.eq(Mux(pos == 0, 0, acc.as_value()) | scale_code_of_parts(v.code))
        else:
            acc = Signal(unsigned(width))
            new_acc = Mux(pos == 0, v.mag, Mux(v.mag > acc, v.mag, acc))

        meta = block_meta_layout(self.max_channels)
        closed = data.StructLayout({"meta": meta, "max": acc.shape()})
        closing = Signal(closed)  # the block the input value closes
        b1, b0 = Signal(closed), Signal(closed)  # b0: see the block queue below
        b1_valid, b0_valid = Signal(), Signal()
        m.d.comb += [closing.meta.start.eq(start), closing.meta.count.eq(pos + 1),
                     closing.meta.sat.eq(new_sat), closing.meta.base.eq(new_base),
                     closing.max.eq(new_acc)]
        m.d.comb += [buf_w.addr.eq(wp), buf_w.data.mag.eq(v.mag), buf_w.data.neg.eq(v.neg),
                     buf_w.en.eq(take)]
        with m.If(take):
            m.d.sync += wp.eq(wp + 1)
            with m.If(v.last):
                m.d.sync += [pos.eq(0), start.eq(wp + 1)]
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), acc.eq(new_acc), bsat.eq(new_sat),
                             base.eq(new_base)]

        # ---- block queue: b1 (closed) -> b2 (scale) -> b3 (thresholds; read out one element
        # per transfer on o). A stage moves on when the next one is free or moves on itself.
        b2_valid, b3_valid = Signal(), Signal()
        rd = Signal(range(MX_BLOCK))  # element of the b3 block on o
        drain = Signal()
        drain_end = Signal()
        mv23, mv12 = Signal(), Signal()
        b3 = Signal(block_params_layout(self.max_channels))
        # at_end: rd is the b3 block's last element (rd == count - 1), a register set with rd
        # (so that drain_end, which moves the queue, waits for no subtraction or comparator)
        at_end = Signal()
        m.d.comb += [
            drain.eq(self.o.valid & self.o.ready),
            drain_end.eq(drain & at_end),
            mv23.eq(b2_valid & (~b3_valid | drain_end)),
            mv12.eq(b1_valid & (~b2_valid | mv23)),
        ]
        # b1 has a second entry, b0, for a block that closes while b1 cannot move on. Values
        # move on unless b0 is taken or the buffer is full: both registers, so the input's
        # ready never waits for the drain (in the accelerator it starts the serializer's
        # handshake chain). b0 is only ever taken when the input would otherwise have stalled.
        held = Signal(range(BUFFER_DEPTH + 1))  # accepted, not yet drained
        m.d.comb += go.eq(~b0_valid & (held < BUFFER_DEPTH))
        m.d.sync += held.eq(held + self.accepted - drain)
        closes = take & v.last
        with m.If(~b1_valid | mv12):
            with m.If(b0_valid):
                m.d.sync += [b1.eq(b0), b1_valid.eq(1), b0_valid.eq(0)]  # go is 0: none closes
            with m.Else():
                m.d.sync += [b1.eq(closing), b1_valid.eq(closes)]
        with m.Elif(closes):
            m.d.sync += [b0.eq(closing), b0_valid.eq(1)]

        # ---- scale of the block (b1 -> b2): the FP8 thresholds below max |Y| (a thermometer
        # code) and, for MXINT8, the leading one of max |Y|, the count of the bits above bit 0
        # with a one at or above them (0 for a maximum of 0 or 1). With running_scale, b1
        # holds both codes already: each is the OR of the values' codes.
        if self.running_scale:
            below_max, above_max, zero = b1.max.below, b1.max.above, ~b1.max.nz
        else:
            below_max = self._fp8_below(b1.max)
            above_max = Cat(*[b1.max[b:].any() for b in range(1, width)])
            zero = b1.max == 0
        # b2 holds what b3 needs of the two counts, each bit an OR of the thermometer codes'
        # one-hot edges (as deep as the count itself): the FP8 code, its rounding thresholds'
        # 4-bit mantissa M' and shift E' + 16 - 7 (7..21 as 0..14; M' = 0, E' + 16 = 7 for
        # code 0), and the MXINT8 scale code and shift
        fbm = width  # fraction bits of the MXINT8 rounding
        vs = thermometer_functions(m, below_max, "vs", {
            "code": (lambda k: k, 8),
            "man": (lambda k: (k & 7) + (8 if k >> 3 else 0), 4),
            "shx": (lambda k: max(k >> 3, 1) - 10 + intref.PPU_FRAC_BITS - _THR_SHIFT_MIN, 4)})
        lead = thermometer_functions(m, above_max, "lead", {
            "mx_sh": (lambda p: fbm + nx.MX_ELEMENT_FRAC_BITS - p, 6),
            "mx_code": (lambda p: p + nx.MX_SCALE_BIAS - intref.PPU_FRAC_BITS, 8)})
        b2 = Signal(data.StructLayout({
            "meta": meta, "vs_code": 8, "man": 4, "shx": 4, "mx_sh": 6, "mx_code": 8,
            "zero": 1}))
        with m.If(mv12):
            m.d.sync += [b2_valid.eq(1), b2.meta.eq(b1.meta), b2.vs_code.eq(vs["code"]),
                         b2.man.eq(vs["man"]), b2.shx.eq(vs["shx"]),
                         b2.mx_sh.eq(lead["mx_sh"]), b2.mx_code.eq(lead["mx_code"]),
                         b2.zero.eq(zero)]
        with m.Elif(mv23):
            m.d.sync += b2_valid.eq(0)

        # ---- rounding thresholds and MXINT8 shift (b2 -> b3)
        # the rounding thresholds (2j + 1) * M' << (E' + 16)
        thr = []
        for j in range(nx.UINT4_MAX):
            # (2j + 1) * M' as a table of the 4-bit M' (a LUT level, not a multiplier)
            odd = Signal(_THR_ODD_BITS, name=f"odd{j}")
            m.d.comb += odd.eq(Array([(2 * j + 1) * k for k in range(16)])[b2.man])
            shifted = barrel_shl(m, odd, b2.shx, _THR_SHIFT_MAX - _THR_SHIFT_MIN, f"thr{j}")
            thr.append(Cat(C(0, _THR_SHIFT_MIN), shifted))
        mx_code = Mux(b2.zero, 0, b2.mx_code)
        with m.If(mv23):
            m.d.sync += [
                b3_valid.eq(1), rd.eq(0), at_end.eq(b2.meta.count == 1),
                b3.meta.eq(b2.meta), b3.zero.eq(b2.zero),
                b3.mx_sh.eq(b2.mx_sh), b3.scale.eq(Mux(is_mx, mx_code, b2.vs_code)),
            ]
            m.d.sync += [b3.thr[k].eq(t) for k, t in enumerate(thr)]
        with m.Elif(drain_end):
            m.d.sync += b3_valid.eq(0)
        with m.Elif(drain):
            m.d.sync += [rd.eq(rd + 1), at_end.eq(rd + 2 == b3.meta.count)]

        # ---- read-out: element rd of the b3 block from the read address register raddr
        raddr = Signal(ptr)
        with m.If(mv23):
            m.d.sync += raddr.eq(b2.meta.start)
        with m.Elif(drain):
            m.d.sync += raddr.eq(raddr + 1)
        m.d.comb += buf_r.addr.eq(raddr)
        out = self.o.payload
        m.d.comb += [self.o.valid.eq(b3_valid), out.e.eq(buf_r.data), out.rd.eq(rd),
                     out.last.eq(at_end), out.blk.eq(b3)]
        return m

"""Post-processing unit (PPU): per-channel scale, bias, residual, saturation, ReLU and
re-quantization of one output block (docs/numerics.md section 5)."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref
from golden import numerics as nx

from .common import (ACC_WIDTH, MX_BLOCK, VECTOR_CHOICES, Format, barrel_shl, check_choice,
                     check_int, popcount, validating)

__all__ = ["PPU", "PPU_LATENCY", "BUFFER_DEPTH", "ppu_block_out", "block_closed_by",
           "ppu_in_layout", "ppu_out_layout"]

#: Cycles from the handshake of a block's last element to its first code when the drain is
#: free: the product register, the fixed-point register, the closed-block register, the scale
#: register, the threshold register, the buffer-read register, the comparison register.
PPU_LATENCY = 7

#: Values held between the fixed-point stage and the drain (a LUT RAM): a block of up to 32
#: being drained and the next one filling, with room for the pipeline in between.
BUFFER_DEPTH = 64


def ppu_block_out(last_cycle, count, prev_out):
    """Cycle in which a block is on ``o``: its last element's handshake in ``last_cycle``, its
    ``count`` codes one per cycle from :data:`PPU_LATENCY` cycles later, not before the
    previous block was on ``o`` (``prev_out``; ``None`` for the first). Exact while ``o`` is
    always ready and the PPU never stalls its input, which the accelerator's serializer
    guarantees (blocks arrive no faster than one element per cycle; docs/hardware.md 4.5)."""
    start = last_cycle + PPU_LATENCY
    if prev_out is not None:
        start = max(start, prev_out)
    return start + count


def block_closed_by(chan, channels, block):
    """Channel count of the output block that channel ``chan`` (of ``channels``) closes, i.e.
    that it enters the PPU with ``last`` set: block position ``block - 1`` or the last
    channel; 0 if it closes none."""
    if chan % block == block - 1 or chan == channels - 1:
        return chan % block + 1
    return 0


#: The rounding thresholds ``(2j + 1) * M' << (E' + 16)``: 9-bit odd multiples of the 4-bit
#: mantissa, shifted by up to 21.
_THR_ODD_BITS = 9
_THR_SHIFT_MAX = 21

_Y_MAX = 2 ** (intref.PPU_WIDTH - 1) - 1
_Y_MIN = -(2 ** (intref.PPU_WIDTH - 1))


def ppu_in_layout(max_channels):
    """One channel of one output pixel: accumulator, its channel's scale mantissa ``k`` and
    ``bias``, the ``residual`` (ignored unless enabled), the channel index ``chan`` and ``last``
    (this channel ends an output block: block position ``block - 1`` or the last channel)."""
    return data.StructLayout({
        "acc": signed(ACC_WIDTH),
        "k": signed(intref.SCALE_MANT_BITS),
        "bias": signed(intref.PPU_WIDTH),
        "residual": signed(intref.PPU_WIDTH),
        "chan": range(max_channels),
        "last": 1,
    })


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


class PPU(wiring.Component):
    """Element-serial, pipelined post-processing and re-quantization.

    Parameters (keyword-only)
    -------------------------
    vector : int, one of 4, 8, 16 (default 16)
        Channels per UINT4/INT4 output vector (MXINT8 output blocks have 32).
    max_channels : int, 1..4096 (default 256)
        Largest channel index + 1 (width of ``chan`` / ``base``).

    Members
    -------
    shift : In(range(64)), relu : In(1), res_en : In(1), out_format : In(Format)
        Layer configuration, stable while elements are in flight. UINT4 output needs ``relu``.
    i : In(stream.Signature(ppu_in_layout(max_channels)))
        One channel per transfer, channels of a block consecutive and in order.
    o : Out(stream.Signature(ppu_out_layout(max_channels)))
        One transfer per output block.

    Function (per element, exactly golden.intref.ppu_fixed and quantize_output)
    -----------------------------------------------------------------------------
    ``Y = RNE(acc * k * 2**-shift) + bias (+ residual)``, clamped to signed 32 bits (counted
    in ``sat``), ``max(Y, 0)`` if ``relu``. Per block, with ``m = max |Y|``: UINT4/INT4
    (``qmax`` 15/7): scale = the smallest FP8 code with ``qmax * value * 2**16 >= m`` (127
    constant comparators, a thermometer count), codes ``clamp(RNE(|Y| / (value * 2**16)),
    qmax)`` with the sign of ``Y`` (``qmax`` comparisons of ``2|Y|`` with ``(2j+1) * M' <<
    (E' + 16)``, ties to even). MXINT8: ``p = floor(log2 m)``, scale ``p + 111`` (``0`` for an
    all-zero block), codes ``clamp(RNE(Y * 2**(6 - p)), +-127)``.

    Timing and backpressure
    -----------------------
    Elements go one per cycle through the product register ``acc * k`` (with ``bias +
    residual``) and the fixed-point register ``Y`` (shift, round, add, clamp, ReLU) into a
    circular value buffer of :data:`BUFFER_DEPTH` (LUT RAM); a ``last`` element closes its
    block (first slot, count, max ``|Y|``). Closed blocks queue through three registers: b1
    (closed; with a second entry b0 for a block that closes while b1 cannot move on), b2 (the
    FP8 scale's thermometer count or the MXINT8 maximum's leading one), b3 (the 15 rounding
    thresholds, the MXINT8 shift), where one quantizer drains the block one
    element per cycle (a buffer-read register; the comparisons with the block's parameters,
    copied from b3, into a register; the count and sign) straight into ``o``'s payload. A
    block is on ``o`` at :func:`ppu_block_out`: ``count`` cycles after its first code, which is
    :data:`PPU_LATENCY` cycles after its last handshake or the cycle the previous block was on
    ``o``. The drain pauses while a finished block waits on ``o`` (``o.valid & ~o.ready``); the
    input (``i.ready``, a function of registers only) stalls while b0 is taken or the buffer
    is full (never in the accelerator, whose blocks arrive no faster than their length).
    """

    def __init__(self, *, vector=16, max_channels=256):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        super().__init__({
            "shift": In(range(intref.SCALE_SHIFT_MAX + 1)),
            "relu": In(1),
            "res_en": In(1),
            "out_format": In(Format),
            "i": In(stream.Signature(ppu_in_layout(max_channels))),
            "o": Out(stream.Signature(ppu_out_layout(max_channels))),
        })

    def elaborate(self, platform):
        m = Module()
        V = self.vector
        p = self.i.payload
        width = intref.PPU_WIDTH

        # The element stages (f1, f2, block closing) move together; see ``go`` below.
        go = Signal()
        m.d.comb += self.i.ready.eq(go)

        # ---- fixed-point stage 1: the product (registered)
        f1 = Signal(data.StructLayout({
            "valid": 1, "prod": signed(ACC_WIDTH + intref.SCALE_MANT_BITS),
            "add": signed(width + 1), "chan": range(self.max_channels), "last": 1}))
        with m.If(go):
            m.d.sync += [
                f1.valid.eq(self.i.valid), f1.prod.eq(p.acc * p.k), f1.chan.eq(p.chan),
                f1.last.eq(p.last),
                f1.add.eq(p.bias + Mux(self.res_en, p.residual, 0)),
            ]

        # ---- fixed-point stage 2: shift, round, add, clamp, ReLU (registered)
        fb = intref.SCALE_SHIFT_MAX  # fraction bits kept for the rounding decision
        lsh = Signal(range(fb + 1))
        m.d.comb += lsh.eq(fb - self.shift)
        wide = barrel_shl(m, f1.prod, lsh, fb, "fix")
        whole = wide[fb:].as_signed()
        frac = wide[:fb]
        half = 1 << (fb - 1)
        up = (frac > half) | ((frac == half) & whole[0])
        ysum = Signal(signed(len(whole) + 3))
        m.d.comb += ysum.eq(whole + up + f1.add)
        ysat = (ysum > _Y_MAX) | (ysum < _Y_MIN)
        yclip = Mux(ysum > _Y_MAX, _Y_MAX, Mux(ysum < _Y_MIN, _Y_MIN, ysum))
        f2 = Signal(data.StructLayout({
            "valid": 1, "y": signed(width), "sat": 1, "chan": range(self.max_channels),
            "last": 1}))
        with m.If(go):
            m.d.sync += [
                f2.valid.eq(f1.valid), f2.sat.eq(ysat), f2.chan.eq(f1.chan),
                f2.last.eq(f1.last),
                f2.y.eq(Mux(self.relu & (yclip < 0), 0, yclip)),
            ]
        y = f2.y
        yabs = Signal(unsigned(width))
        m.d.comb += yabs.eq(Mux(y < 0, -y, y))

        # ---- value buffer and block closing (b1)
        # Every value goes into a circular buffer as |Y| and its sign (the quantizer works on
        # magnitudes); LUT RAM, not a block RAM, whose ~5.6 ns clock-to-out would start the
        # quantizer's path. A ``last`` element closes its block into b1 (first buffer slot,
        # count, max |Y|, saturations, first channel).
        entry = data.StructLayout({"mag": unsigned(width), "neg": 1})
        buf = memory.Memory(shape=entry, depth=BUFFER_DEPTH, init=[],
                            attrs={"ram_style": "distributed"})
        m.submodules.buf = buf
        buf_w = buf.write_port()
        buf_r = buf.read_port(domain="comb")
        ptr = range(BUFFER_DEPTH)
        wp, start = Signal(ptr), Signal(ptr)
        pos = Signal(range(MX_BLOCK))
        bmax = Signal(unsigned(width))
        bsat = Signal(range(MX_BLOCK + 1))
        base = Signal.like(p.chan)
        new_max = Mux(pos == 0, yabs, Mux(yabs > bmax, yabs, bmax))
        new_sat = Mux(pos == 0, 0, bsat) + f2.sat
        new_base = Mux(pos == 0, f2.chan, base)

        meta = data.StructLayout({
            "start": ptr, "count": range(MX_BLOCK + 1), "sat": range(MX_BLOCK + 1),
            "base": range(self.max_channels)})
        closed = data.StructLayout({"meta": meta, "max": unsigned(width)})
        closing = Signal(closed)  # the block f2's element closes
        b1, b0 = Signal(closed), Signal(closed)  # b0: see the block queue below
        b1_valid, b0_valid = Signal(), Signal()
        m.d.comb += [closing.meta.start.eq(start), closing.meta.count.eq(pos + 1),
                     closing.meta.sat.eq(new_sat), closing.meta.base.eq(new_base),
                     closing.max.eq(new_max)]
        m.d.comb += [buf_w.addr.eq(wp), buf_w.data.mag.eq(yabs), buf_w.data.neg.eq(y < 0),
                     buf_w.en.eq(go & f2.valid)]
        with m.If(go & f2.valid):
            m.d.sync += wp.eq(wp + 1)
            with m.If(f2.last):
                m.d.sync += [pos.eq(0), start.eq(wp + 1)]
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), bmax.eq(new_max), bsat.eq(new_sat),
                             base.eq(new_base)]

        # ---- block queue: b1 (closed) -> b2 (scale) -> b3 (thresholds; drained one element
        # per cycle). A stage moves on when the next one is free or moves on itself.
        b2_valid, b3_valid = Signal(), Signal()
        rd = Signal(range(MX_BLOCK))  # element of the b3 block being drained
        drain = Signal()
        drain_end = Signal()
        mv23, mv12 = Signal(), Signal()
        b3 = Signal(data.StructLayout({
            "meta": meta,
            "thr": data.ArrayLayout(unsigned(_THR_ODD_BITS + _THR_SHIFT_MAX), nx.UINT4_MAX),
            "mx_sh": range(width + nx.MX_ELEMENT_FRAC_BITS + 1),
            "scale": 8, "zero": 1}))
        go_o = ~(self.o.valid & ~self.o.ready)  # the drain pauses while a block waits on o
        m.d.comb += [
            drain.eq(b3_valid & go_o),
            drain_end.eq(drain & (rd == b3.meta.count - 1)),
            mv23.eq(b2_valid & (~b3_valid | drain_end)),
            mv12.eq(b1_valid & (~b2_valid | mv23)),
        ]
        # b1 has a second entry, b0, for a block that closes while b1 cannot move on. Elements
        # move on unless b0 is taken or the buffer is full: both registers, so the input's
        # ready never waits for the drain (in the accelerator it starts the serializer's
        # handshake chain). b0 is only ever taken when the input would otherwise have stalled.
        held = Signal(range(BUFFER_DEPTH + 1))  # accepted, not yet drained
        m.d.comb += go.eq(~b0_valid & (held < BUFFER_DEPTH))
        m.d.sync += held.eq(held + (self.i.valid & go) - drain)
        closes = go & f2.valid & f2.last
        with m.If(~b1_valid | mv12):
            with m.If(b0_valid):
                m.d.sync += [b1.eq(b0), b1_valid.eq(1), b0_valid.eq(0)]  # go is 0: none closes
            with m.Else():
                m.d.sync += [b1.eq(closing), b1_valid.eq(closes)]
        with m.Elif(closes):
            m.d.sync += [b0.eq(closing), b0_valid.eq(1)]

        # ---- scale of the block (b1 -> b2)
        is_mx = self.out_format == Format.MXINT8
        fp8 = nx.fp8_e4m3_decode(np.arange(nx.FP8_MAX_CODE + 1, dtype=np.uint8))
        below = []
        for code, val in enumerate(fp8):
            t15 = int(nx.UINT4_MAX * val * 2 ** intref.PPU_FRAC_BITS)
            t7 = int(nx.INT4_MAX * val * 2 ** intref.PPU_FRAC_BITS)
            below.append(Mux(self.out_format == Format.UINT4, t15 < b1.max, t7 < b1.max))
        vs_code = Signal(8)
        m.d.comb += vs_code.eq(popcount(m, Cat(*below[:nx.FP8_MAX_CODE]), "vs"))
        lead = Signal(range(width))  # MXINT8: leading one of the block maximum
        for b in range(width):
            with m.If(b1.max[b]):
                m.d.comb += lead.eq(b)
        b2 = Signal(data.StructLayout({
            "meta": meta, "vs_code": 8, "lead": range(width), "zero": 1}))
        with m.If(mv12):
            m.d.sync += [b2_valid.eq(1), b2.meta.eq(b1.meta), b2.vs_code.eq(vs_code),
                         b2.lead.eq(lead), b2.zero.eq(b1.max == 0)]
        with m.Elif(mv23):
            m.d.sync += b2_valid.eq(0)

        # ---- rounding thresholds and MXINT8 shift (b2 -> b3)
        # FP8 scale (M', E' + 16) and the rounding thresholds (2j + 1) * M' << (E' + 16)
        exp = b2.vs_code[3:7]
        man = Mux(exp == 0, b2.vs_code[0:3], b2.vs_code[0:3] + 8)
        sh = Signal(range(32))
        m.d.comb += sh.eq(Mux(exp == 0, 1, exp) - 10 + intref.PPU_FRAC_BITS)
        thr = []
        for j in range(nx.UINT4_MAX):
            odd = Signal(_THR_ODD_BITS, name=f"odd{j}")
            m.d.comb += odd.eq((2 * j + 1) * man)
            thr.append(barrel_shl(m, odd, sh, _THR_SHIFT_MAX, f"thr{j}"))
        fbm = width  # fraction bits of the MXINT8 rounding
        mx_code = Mux(b2.zero, 0, b2.lead + (nx.MX_SCALE_BIAS - intref.PPU_FRAC_BITS))
        with m.If(mv23):
            m.d.sync += [
                b3_valid.eq(1), rd.eq(0), b3.meta.eq(b2.meta), b3.zero.eq(b2.zero),
                b3.mx_sh.eq(fbm + nx.MX_ELEMENT_FRAC_BITS - b2.lead),
                b3.scale.eq(Mux(is_mx, mx_code, b2.vs_code)),
            ]
            m.d.sync += [b3.thr[k].eq(t) for k, t in enumerate(thr)]
        with m.Elif(drain_end):
            m.d.sync += b3_valid.eq(0)
        with m.Elif(drain):
            m.d.sync += rd.eq(rd + 1)

        # ---- drain, three stages: R reads element rd of the b3 block (address register
        # raddr); Q compares it with the block's parameters, copied from b3 when R reads
        # element 0 (the rounding thresholds; the MXINT8 shift, rounding and clamp); C counts
        # the thresholds passed, applies the sign and writes the code into o's payload, with
        # its own copy of the block's scale and metadata (Q may hold the next block).
        raddr = Signal(ptr)
        with m.If(mv23):
            m.d.sync += raddr.eq(b2.meta.start)
        with m.Elif(drain):
            m.d.sync += raddr.eq(raddr + 1)
        m.d.comb += buf_r.addr.eq(raddr)
        q = Signal(data.StructLayout({
            "valid": 1, "e": entry, "rd": range(MX_BLOCK), "last": 1}))
        qp = Signal.like(b3)
        with m.If(go_o):
            m.d.sync += [q.valid.eq(drain), q.e.eq(buf_r.data), q.rd.eq(rd),
                         q.last.eq(drain_end)]
            with m.If(drain & (rd == 0)):
                m.d.sync += qp.eq(b3)
        a = q.e.mag
        qmax = Mux(self.out_format == Format.UINT4, nx.UINT4_MAX, nx.INT4_MAX)
        ups = [Mux(k < qmax, ((a << 1) > qp.thr[k]) | (((a << 1) == qp.thr[k]) & (k % 2 == 1)),
                   0)
               for k in range(nx.UINT4_MAX)]
        # MXINT8: RNE(|Y| * 2**(6 - p)) clamped to 127, then the sign (RNE is symmetric)
        wv = barrel_shl(m, a, qp.mx_sh, fbm + nx.MX_ELEMENT_FRAC_BITS, "mxw")
        wq = wv[fbm:]
        wf = wv[:fbm]
        wr = Signal(width + 8)
        mx_up = (wf > (1 << (fbm - 1))) | ((wf == (1 << (fbm - 1))) & wq[0])
        m.d.comb += wr.eq(wq + mx_up)
        c = Signal(data.StructLayout({
            "valid": 1, "ups": nx.UINT4_MAX, "mxm": unsigned(8), "neg": 1,
            "rd": range(MX_BLOCK), "last": 1}))
        cp = Signal(data.StructLayout({"meta": meta, "scale": 8, "zero": 1}))
        with m.If(go_o):
            m.d.sync += [c.valid.eq(q.valid), c.ups.eq(Cat(*ups)), c.neg.eq(q.e.neg),
                         c.mxm.eq(Mux(wr > nx.MX_ELEMENT_MAX, nx.MX_ELEMENT_MAX, wr)),
                         c.rd.eq(q.rd), c.last.eq(q.last)]
            with m.If(q.valid & (q.rd == 0)):
                m.d.sync += [cp.meta.eq(qp.meta), cp.scale.eq(qp.scale), cp.zero.eq(qp.zero)]
        mag = popcount(m, c.ups, "mag")
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

"""Post-processing unit (PPU): per-channel scale, bias, residual, saturation, ReLU and
re-quantization of one output block (docs/numerics.md section 5)."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref
from golden import numerics as nx

from .common import (ACC_WIDTH, MX_BLOCK, VECTOR_CHOICES, Format, barrel_shl, check_choice,
                     check_int, popcount, validating)

__all__ = ["PPU", "PPU_LATENCY", "ppu_in_layout", "ppu_out_layout", "block_channels"]

#: Cycles from the handshake of a block's last element to the block on ``o``.
PPU_LATENCY = 1

_Y_MAX = 2 ** (intref.PPU_WIDTH - 1) - 1
_Y_MIN = -(2 ** (intref.PPU_WIDTH - 1))


def block_channels(out_format, vector=16):
    """Channels per output block (one output word): ``vector`` for UINT4/INT4, 32 for MXINT8."""
    return intref.block_size(intref.Format(Format(out_format).value), vector)


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
    """Element-serial post-processing with block-parallel re-quantization.

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
    One element per cycle. The fixed-point stage is combinational into a block buffer; the
    handshake of a ``last`` element moves the block to the output register, valid
    :data:`PPU_LATENCY` cycle later (scale and codes are combinational from that register).
    ``i.ready = ~o.valid | o.ready``: input stalls only while a finished block waits.
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

        # ---- fixed-point stage (combinational)
        prod = Signal(signed(ACC_WIDTH + intref.SCALE_MANT_BITS))
        m.d.comb += prod.eq(p.acc * p.k)
        fb = intref.SCALE_SHIFT_MAX  # fraction bits kept for the rounding decision
        lsh = Signal(range(fb + 1))
        m.d.comb += lsh.eq(fb - self.shift)
        wide = barrel_shl(m, prod, lsh, fb, "fix")
        whole = wide[fb:].as_signed()
        frac = wide[:fb]
        half = 1 << (fb - 1)
        up = (frac > half) | ((frac == half) & whole[0])
        ysum = Signal(signed(len(whole) + 3))
        m.d.comb += ysum.eq(whole + up + p.bias + Mux(self.res_en, p.residual, 0))
        ysat = (ysum > _Y_MAX) | (ysum < _Y_MIN)
        yclip = Mux(ysum > _Y_MAX, _Y_MAX, Mux(ysum < _Y_MIN, _Y_MIN, ysum))
        y = Signal(signed(width))
        m.d.comb += y.eq(Mux(self.relu & (yclip < 0), 0, yclip))
        yabs = Signal(unsigned(width))
        m.d.comb += yabs.eq(Mux(y < 0, -y, y))

        # ---- block buffer
        buf = [Signal(signed(width), name=f"buf{j}") for j in range(MX_BLOCK)]
        pos = Signal(range(MX_BLOCK))
        bmax = Signal(unsigned(width))
        bsat = Signal(range(MX_BLOCK + 1))
        base = Signal.like(p.chan)
        new_max = Mux(pos == 0, yabs, Mux(yabs > bmax, yabs, bmax))
        new_sat = Mux(pos == 0, 0, bsat) + ysat
        new_base = Mux(pos == 0, p.chan, base)

        vals = [Signal(signed(width), name=f"val{j}") for j in range(MX_BLOCK)]
        omax = Signal(unsigned(width))
        count = Signal(range(MX_BLOCK + 1))

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for j in range(MX_BLOCK):
                with m.If(pos == j):
                    m.d.sync += buf[j].eq(y)
            with m.If(p.last):
                m.d.sync += [pos.eq(0), self.o.valid.eq(1), omax.eq(new_max),
                             count.eq(pos + 1), self.o.payload.sat.eq(new_sat),
                             self.o.payload.base.eq(new_base)]
                for j in range(MX_BLOCK):
                    older = Mux(pos > j, buf[j], 0) if j < MX_BLOCK - 1 else 0
                    m.d.sync += vals[j].eq(Mux(pos == j, y, older))
            with m.Else():
                m.d.sync += [pos.eq(pos + 1), bmax.eq(new_max), bsat.eq(new_sat),
                             base.eq(new_base)]

        # ---- re-quantization of the output register (combinational)
        is_mx = self.out_format == Format.MXINT8
        qmax = Mux(self.out_format == Format.UINT4, nx.UINT4_MAX, nx.INT4_MAX)
        fp8 = nx.fp8_e4m3_decode(np.arange(nx.FP8_MAX_CODE + 1, dtype=np.uint8))
        below = []
        for code, val in enumerate(fp8):
            t15 = int(nx.UINT4_MAX * val * 2 ** intref.PPU_FRAC_BITS)
            t7 = int(nx.INT4_MAX * val * 2 ** intref.PPU_FRAC_BITS)
            below.append(Mux(self.out_format == Format.UINT4, t15 < omax, t7 < omax))
        vs_code = Signal(8)
        m.d.comb += vs_code.eq(popcount(m, Cat(*below[:nx.FP8_MAX_CODE]), "vs"))
        # FP8 scale (M', E' + 16) and the rounding thresholds (2j + 1) * M' << (E' + 16)
        exp = vs_code[3:7]
        man = Mux(exp == 0, vs_code[0:3], vs_code[0:3] + 8)
        sh = Signal(range(32))
        m.d.comb += sh.eq(Mux(exp == 0, 1, exp) - 10 + intref.PPU_FRAC_BITS)
        thr = []
        for j in range(nx.UINT4_MAX):
            odd = Signal(9, name=f"odd{j}")
            m.d.comb += odd.eq((2 * j + 1) * man)
            thr.append(barrel_shl(m, odd, sh, 21, f"thr{j}"))

        # MXINT8: leading one of the block maximum
        lead = Signal(range(width))
        for b in range(width):
            with m.If(omax[b]):
                m.d.comb += lead.eq(b)
        mx_code = Mux(omax == 0, 0, lead + (nx.MX_SCALE_BIAS - intref.PPU_FRAC_BITS))
        fbm = width  # fraction bits of the MXINT8 rounding
        mx_sh = Signal(range(fbm + nx.MX_ELEMENT_FRAC_BITS + 1))
        m.d.comb += mx_sh.eq(fbm + nx.MX_ELEMENT_FRAC_BITS - lead)
        m.d.comb += self.o.payload.scale.eq(Mux(is_mx, mx_code, vs_code))

        zeros = []
        for j in range(MX_BLOCK):
            v = vals[j]
            a = Signal(unsigned(width), name=f"abs{j}")
            m.d.comb += a.eq(Mux(v < 0, -v, v))
            ups = [Mux(k < qmax, ((a << 1) > thr[k]) | (((a << 1) == thr[k]) & (k % 2 == 1)), 0)
                   for k in range(nx.UINT4_MAX)]
            mag = popcount(m, Cat(*ups), f"mag{j}")
            # an all-zero block has scale 0 (M' = 0): every code is 0
            vsq = Mux(omax == 0, 0, Mux(v < 0, -mag, mag)) if j < V else 0
            wv = barrel_shl(m, v, mx_sh, fbm + nx.MX_ELEMENT_FRAC_BITS, f"mxw{j}")
            wq = wv[fbm:].as_signed()
            wf = wv[:fbm]
            wr = Signal(signed(width + 8), name=f"mxr{j}")
            mx_up = (wf > (1 << (fbm - 1))) | ((wf == (1 << (fbm - 1))) & wq[0])
            m.d.comb += wr.eq(wq + mx_up)
            mxq = Mux(wr > nx.MX_ELEMENT_MAX, nx.MX_ELEMENT_MAX,
                      Mux(wr < -nx.MX_ELEMENT_MAX, -nx.MX_ELEMENT_MAX, wr))
            code = Signal(signed(8), name=f"code{j}")
            m.d.comb += code.eq(Mux(is_mx, Mux(omax == 0, 0, mxq), vsq))
            m.d.comb += self.o.payload.codes[j].eq(code)
            zeros.append((code == 0) & (j < count))
        m.d.comb += [self.o.payload.zeros.eq(Cat(*zeros)), self.o.payload.count.eq(count)]
        return m

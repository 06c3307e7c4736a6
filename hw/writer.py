"""Output writer: the PPU's output blocks into the out memory, channel-last."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .common import MX_BLOCK, check_int, validating
from .descriptor import ADDR_BITS
from .layout import ACT_WORD_BITS
from .ppu import ppu_out_layout

__all__ = ["OutputWriter", "PIXEL_BITS"]

#: Bits of an output pixel index (and of the layer's pixel count).
PIXEL_BITS = 26


class OutputWriter(wiring.Component):
    """Writes one output block per transfer and detects the layer's last word.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    max_channels : int, 1..4096
        Largest ``cout`` (the PPU's ``max_channels``; also bounds the blocks per pixel).

    Members
    -------
    i : In(stream.Signature(ppu_out_layout(max_channels)))
        Output blocks, pixel outer, block inner; always ready (``i.ready = 1``).
    out_base : In(ADDR_BITS), out_words : In(range(2**PIXEL_BITS * (max_channels + 1)))
        First word and words of the layer (stable during a layer).
    clear : In(1)
        Synchronous restart at word 0 (pulse before a layer).
    wr_addr : Out(ADDR_BITS), wr_data : Out(ACT_WORD_BITS), wr_en : Out(1)
        Write port of the out memory: block ``ob`` of pixel ``opix`` (``nblk`` blocks per
        pixel) goes to word ``out_base + opix * nblk + ob``, as its 32 codes (8 bits each,
        LSB first) and the scale code. Blocks arrive pixel outer, block inner, so that word
        index is the count of words written before it: the address is ``out_base +
        written``, an adder, no multiplier.
    done : Out(1)
        This cycle's transfer is the layer's last word (``written + 1 == out_words``).

    Timing
    ------
    Combinational: a transfer is written in its own cycle; the word counter advances after it.
    """

    def __init__(self, *, max_channels):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        super().__init__({
            "i": In(stream.Signature(ppu_out_layout(max_channels))),
            "out_base": In(ADDR_BITS),
            "out_words": In(range(2 ** PIXEL_BITS * (max_channels + 1))),
            "clear": In(1),
            "wr_addr": Out(ADDR_BITS),
            "wr_data": Out(ACT_WORD_BITS),
            "wr_en": Out(1),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        written = Signal(range(2 ** 32))
        po = self.i.payload
        m.d.comb += [
            self.i.ready.eq(1),
            self.wr_en.eq(self.i.valid),
            self.wr_addr.eq(self.out_base + written[:ADDR_BITS]),
            self.wr_data.eq(Cat(*[po.codes[e] for e in range(MX_BLOCK)], po.scale)),
            self.done.eq(self.i.valid & (written + 1 == self.out_words)),
        ]
        with m.If(self.i.valid):
            m.d.sync += written.eq(written + 1)
        with m.If(self.clear):
            m.d.sync += written.eq(0)
        return m

"""Temporal sparsity detector: per-channel zero counters over a layer output and the channel map
of the next time step (docs/numerics.md section 6, golden.intref.channel_map)."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


from .common import MX_BLOCK, VECTOR_CHOICES, check_choice, check_int, popcount, validating

__all__ = ["SparsityDetector", "detector_in_layout"]


def detector_in_layout(max_channels):
    """One output block: ``zeros`` (bit j: channel ``base + j`` produced a zero code),
    ``base`` (first channel, a multiple of ``vector``). A subset of the PPU output layout."""
    return data.StructLayout({"zeros": unsigned(MX_BLOCK), "base": range(max_channels)})


class SparsityDetector(wiring.Component):
    """Zero counters per output channel and the dense/sparse map per group of ``vector``.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Channels per group (one map bit each).
    max_channels : int, ``vector``..4096
        Counters (channels) instantiated; ``max_channels / vector`` (rounded up) map bits.
    max_pixels : int, 1..2**24
        Largest number of output pixels of a layer (sets the counter width).

    Members
    -------
    clear : In(1)
        Synchronous clear of every counter (pulse it before a layer).
    i : In(stream.Signature(detector_in_layout(max_channels)))
        Output blocks; always ready (``i.ready = 1``). Every counter of the block's channels
        with a set ``zeros`` bit increments by one in the cycle after the transfer.
    channels : In(range(max_channels + 1)), pixels : In(range(max_pixels + 1)),
    threshold : In(range(101))
        Output channels and pixels of the layer, threshold in percent.
    map : Out(groups)
        Bit g = 1 (sparse) when ``100 * (zeros_g + (vector - channels_g) * pixels) >=
        threshold * vector * pixels`` with ``zeros_g`` the sum of group g's counters and
        ``channels_g`` its real channels (missing channels of a short group count as zeros);
        0 for groups at or beyond ``channels``. A comparison of per-group counters (100 x the
        group's zeros, kept next to the per-channel counters) with registered layer constants:
        valid the cycle after the layer's last block transfer and at least three cycles after
        ``channels``, ``pixels`` or ``threshold`` changed (exactly golden.intref.channel_map).
    rd_chan : In(range(max_channels)), rd_count : Out(counter)
        Combinational read of one counter.
    """

    def __init__(self, *, vector, max_channels, max_pixels):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.max_channels = check_int("max_channels", max_channels, vector, 4096)
            self.max_pixels = check_int("max_pixels", max_pixels, 1, 2 ** 24)
        self.groups = -(-max_channels // vector)
        super().__init__({
            "clear": In(1),
            "i": In(stream.Signature(detector_in_layout(max_channels))),
            "channels": In(range(max_channels + 1)),
            "pixels": In(range(max_pixels + 1)),
            "threshold": In(range(101)),
            "map": Out(self.groups),
            "rd_chan": In(range(max_channels)),
            "rd_count": Out(range(max_pixels + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        V, C = self.vector, self.max_channels
        counters = [Signal(range(self.max_pixels + 1), name=f"zc{c}") for c in range(C)]
        m.d.comb += self.i.ready.eq(1)

        base_grp = Signal(range(self.groups))
        m.d.comb += base_grp.eq(self.i.payload.base // V)
        zeros = Signal(MX_BLOCK)
        m.d.comb += zeros.eq(self.i.payload.zeros)
        group_inc = [[] for _ in range(self.groups)]
        for c in range(C):
            hits = [(base_grp == c // V - o) & zeros[o * V + c % V]
                    for o in range(MX_BLOCK // V) if c // V - o >= 0]
            inc = Signal(name=f"zinc{c}")
            m.d.comb += inc.eq(Mux(self.i.valid, _any(hits), 0))
            group_inc[c // V].append(inc)
            with m.If(self.clear):
                m.d.sync += counters[c].eq(0)
            with m.Elif(inc):
                m.d.sync += counters[c].eq(counters[c] + 1)
        # per group 100 x the sum of its counters, kept as a counter of its own (so the map is
        # a comparison of two registers: no multiplier after the counters)
        top = 100 * V * self.max_pixels
        group_zeros = [Signal(range(top + 1), name=f"gzc{g}") for g in range(self.groups)]
        for g, zc in enumerate(group_zeros):
            inc = popcount(m, Cat(*group_inc[g]), f"ginc{g}")
            with m.If(self.clear):
                m.d.sync += zc.eq(0)
            with m.Else():
                m.d.sync += zc.eq(zc + Array(100 * k for k in range(V + 1))[inc])

        # a complete read mux (one entry per rd_chan value) even when max_channels is not a
        # power of two: out-of-range channels read 0
        pad = [0] * (2 ** len(self.rd_chan) - C)
        m.d.comb += self.rd_count.eq(Array(counters + pad)[self.rd_chan])

        # layer constants in three register stages (valid three cycles after channels /
        # pixels / threshold; the map is read at the layer's end): per group the bound
        # 100 x zeros_g must reach, threshold * vector * pixels - 100 * (vector - channels_g)
        # * pixels. One multiplier per stage: the two in series were the board's routed
        # critical path (docs/fpga.md 0.6)
        rhs = Signal(range(top + 1))
        rhs_r = Signal(range(top + 1))
        pixels100 = Signal(range(100 * self.max_pixels + 1))
        m.d.sync += [rhs.eq(self.threshold * self.pixels * V), rhs_r.eq(rhs),
                     pixels100.eq(self.pixels * 100)]
        for g in range(self.groups):
            rem = Signal(range(-(g * V), C + 1), name=f"grem{g}")
            m.d.comb += rem.eq(self.channels - g * V)
            missing = Signal(5, name=f"gmissing{g}")  # channels absent from a short group
            absent = Signal(range(top + 1), name=f"gabs{g}")
            present = [Signal(name=f"gpresent{g}_{k}") for k in range(3)]
            m.d.sync += [missing.eq(Mux(rem >= V, 0, V - rem)), absent.eq(missing * pixels100),
                         present[0].eq(rem > 0), present[1].eq(present[0]),
                         present[2].eq(present[1])]
            bound = Signal(range(-top, top + 1), name=f"gbound{g}")
            m.d.sync += bound.eq(rhs_r - absent)
            m.d.comb += self.map[g].eq(present[2] & (group_zeros[g] >= bound))
        return m


def _any(bits):
    out = 0
    for b in bits:
        out = out | b
    return out

"""Temporal sparsity detector: per-channel zero counters over a layer output and the channel map
of the next time step (docs/numerics.md section 6, golden.intref.channel_map)."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


from .common import MX_BLOCK, VECTOR_CHOICES, adder_tree, check_choice, check_int, validating

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
        valid the cycle after the layer's last block transfer and at least four cycles after
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
        for c in range(C):
            hits = [(base_grp == c // V - o) & zeros[o * V + c % V]
                    for o in range(MX_BLOCK // V) if c // V - o >= 0]
            inc = Signal(name=f"zinc{c}")
            m.d.comb += inc.eq(Mux(self.i.valid, _any(hits), 0))
            with m.If(self.clear):
                m.d.sync += counters[c].eq(0)
            with m.Elif(inc):
                m.d.sync += counters[c].eq(counters[c] + 1)

        # per group 100 x the sum of its counters (so the map needs no multiplier after the
        # counters) in two registers whose sum is that value every cycle (hence no cycle
        # changes): ``gpend<g>`` (100 x the group's zeros of the last transfer: per slice of
        # ``vector`` channels of the block a table of 100 x the zeros of each 4 channels and
        # an adder tree, shared by all groups, then the group's slice) and ``gzc<g>`` (the
        # earlier transfers: gzc + gpend one cycle later). The zero count of a block and the
        # accumulating adder are in different cycles.
        top = 100 * V * self.max_pixels
        hundreds = Array(Const(100 * bin(n).count("1"), 9) for n in range(16))

        def slice100(o, width):  # 100 x the zeros of the first ``width`` channels of slice o
            nib = []
            for q in range(-(-width // 4)):
                n100 = Signal(9, name=f"n100_{o}_{q}_{width}")
                lo_bit = o * V + 4 * q
                m.d.comb += n100.eq(hundreds[zeros[lo_bit:min(lo_bit + 4, o * V + width)]])
                nib.append(n100)
            return adder_tree(nib)
        slices = [slice100(o, V) for o in range(MX_BLOCK // V)]
        # the last group's channels beyond max_channels (when not a multiple of V) count none
        last = [slice100(o, C % V) for o in range(MX_BLOCK // V)] if C % V else slices
        group_zeros = [Signal(range(top + 1), name=f"gzc{g}") for g in range(self.groups)]
        group_pend = [Signal(range(100 * V + 1), name=f"gpend{g}") for g in range(self.groups)]
        group_next = []  # gzc's next value
        for g, (zc, pend) in enumerate(zip(group_zeros, group_pend)):
            take = Signal(MX_BLOCK // V, name=f"gtake{g}")  # the slice of the group, if any
            m.d.comb += take.eq(Cat(self.i.valid & (base_grp == g - o) if g - o >= 0
                                    else Const(0, 1) for o in range(MX_BLOCK // V)))
            nxt = Signal.like(zc, name=f"gzc_next{g}")
            m.d.comb += nxt.eq(Mux(self.clear, 0, zc + pend))
            m.d.sync += [zc.eq(nxt),
                         pend.eq(Mux(self.clear, 0,
                                     _any(Mux(take[o], s, 0) for o, s in
                                          enumerate(last if g == self.groups - 1 else slices))))]
            group_next.append(nxt)

        # a complete read mux (one entry per rd_chan value) even when max_channels is not a
        # power of two: out-of-range channels read 0; a tree of two-way muxes, one per bit of
        # rd_chan (shallower on an FPGA than the case statement of an Array)
        level = counters + [Const(0, 1)] * (2 ** len(self.rd_chan) - C)
        for b in reversed(range(len(self.rd_chan))):
            half = len(level) // 2
            level = [Mux(self.rd_chan[b], level[k + half], level[k]) for k in range(half)]
        m.d.comb += self.rd_count.eq(level[0])

        # layer constants in three register stages: per group the bound 100 x zeros_g must
        # reach, threshold * vector * pixels - 100 * (vector - channels_g) * pixels, or top + 1
        # (never reached) for a group at or beyond ``channels``. One multiplier per stage: the
        # two in series were the board's routed critical path (docs/fpga.md 0.6). The group's
        # channels from ``channels // V`` and ``channels % V`` by logic alone (no subtraction
        # or comparison carry chain).
        rhs = Signal(range(top + 1))
        rhs_r = Signal(range(top + 1))
        pixels100 = Signal(range(100 * self.max_pixels + 1))
        m.d.sync += [rhs.eq(self.threshold * self.pixels * V), rhs_r.eq(rhs),
                     pixels100.eq(self.pixels * 100)]
        lbits = V.bit_length() - 1
        lo, hi = self.channels[:lbits], self.channels[lbits:]
        # the map: per group a fourth register, ``gneg<g>`` = bound - gzc - 1 (the bound of the
        # cycle before: valid four cycles after channels / pixels / threshold; the map is read
        # at the layer's end), and map bit g = gzc + gpend >= bound = the sign of
        # gneg - gpend (one carry chain from registers), and the group present (an absent
        # group's bound, top + 1, is out of reach unless a counter overflows)
        width = (2 * top + 100 * V + 2).bit_length() + 1  # bound - gzc - 1 - gpend, signed
        for g in range(self.groups):
            full = _gt_const(hi, g)  # channels >= (g + 1) * V
            missing = Signal(range(V + 1), name=f"gmissing{g}")  # absent from a short group
            absent = Signal(range(top + 1), name=f"gabs{g}")
            present = [Signal(name=f"gpresent{g}_{k}") for k in range(2)]  # channels > g * V
            m.d.sync += [missing.eq(Mux(full, 0, V - lo)), absent.eq(missing * pixels100),
                         present[0].eq(full | ((hi == g) & lo.any())),
                         present[1].eq(present[0])]
            bound = Signal(range(-top, top + 2), name=f"gbound{g}", init=top + 1)
            m.d.sync += bound.eq(Mux(present[1], rhs_r - absent, top + 1))
            neg = Signal(signed(width), name=f"gneg{g}", init=top)
            m.d.sync += neg.eq(bound - group_next[g] - 1)
            diff = Signal(signed(width), name=f"gdiff{g}")
            m.d.comb += [diff.eq(neg - group_pend[g]),
                         self.map[g].eq(present[1] & diff[width - 1])]
        return m


def _any(bits):
    out = 0
    for b in bits:
        out = out | b
    return out


def _gt_const(x, k):
    """``x > k`` for a constant ``k`` as logic (no comparison carry chain): some bit of ``x``
    is 1 where ``k``'s is 0 and every bit above it equals ``k``'s."""
    if k < 0:
        return Const(1, 1)
    if k >= 2 ** len(x):
        return Const(0, 1)
    out = Const(0, 1)
    for i in range(len(x)):
        if not (k >> i) & 1:
            above = x[i + 1:] == k >> (i + 1) if i + 1 < len(x) else Const(1, 1)
            out = out | (x[i] & above)
    return out


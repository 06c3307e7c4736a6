"""Channel-last address generator: walks output pixels x output-channel tiles x kernel taps x
input vectors and emits engine work items on a dense and a sparse stream."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (MX_BLOCK, NCOLS_SHAPE, VECTOR_CHOICES, Mode, check_bool, check_choice,
                     check_int, validating)
from .descriptor import ADDR_BITS, descriptor_layout

__all__ = ["AddrGen", "ADDRGEN_LATENCY", "addr_item_layout", "walk_items"]

#: Cycles from a ``start`` pulse to the first items valid on ``d`` and ``s``.
ADDRGEN_LATENCY = 2


def addr_item_layout():
    """One work item: word addresses of the activation vector and of the weight word, and the
    unit fields of :func:`hw.common.item_layout` (``first``, ``last``, ``null``, ``ncols``,
    ``pref``)."""
    return data.StructLayout({
        "act_addr": ADDR_BITS, "w_addr": ADDR_BITS, "first": 1, "last": 1, "null": 1,
        "ncols": NCOLS_SHAPE, "pref": 1,
    })


def walk_items(shape, route, *, sparse, mode, vector, tile):
    """Cycle model and address model of one walker (the order items leave the stream).

    ``route[g]`` is the channel-map bit of 16-channel group ``g`` (1 = sparse); in MXINT8
    mode block ``b`` follows bit ``b * 32 / vector``. ``sparse``: the walker's class (True:
    the sparse walker, False: the dense one, None: the single walker of a ``balance`` top,
    every vector). Yields dicts of ``addr_item_layout`` with the activation address relative
    to ``act_base`` and the weight address relative to ``w_base``. Padding taps are skipped;
    a unit without items emits one null item.
    """
    mx = Mode(mode) == Mode.MXINT8
    blk = Mode(mode).block(vector)
    nvec = -(-shape.cin // blk)
    step = MX_BLOCK // vector if mx else 1
    pref = [int(bool(route[j * step])) for j in range(nvec)]
    mine = [j for j in range(nvec) if sparse is None or pref[j] == sparse]
    k, s, p = shape.kernel, shape.stride, shape.padding
    for oy in range(shape.out_height):
        for ox in range(shape.out_width):
            for t in range(-(-shape.cout // tile)):
                ncols = min(tile, shape.cout - t * tile)
                items = []
                for ky, kx in shape.taps():
                    iy, ix = oy * s - p + ky, ox * s - p + kx
                    if not (0 <= iy < shape.height and 0 <= ix < shape.width):
                        continue
                    for j in mine:
                        items.append({"act_addr": (iy * shape.width + ix) * nvec + j,
                                      "w_addr": (t * k * k + ky * k + kx) * nvec + j,
                                      "first": 0, "last": 0, "null": 0,
                                      "ncols": ncols, "pref": pref[j]})
                if not items:
                    items.append({"act_addr": 0, "w_addr": 0, "first": 0, "last": 0,
                                  "null": 1, "ncols": ncols, "pref": 0})
                items[0]["first"] = 1
                items[-1]["last"] = 1
                yield from items


class _Walker(wiring.Component):
    """One walker of :class:`AddrGen` (the dense one if ``sparse`` is False, the sparse one if
    True, every vector if None); same ports and timing as ``AddrGen`` with a single output
    stream ``o``."""

    def __init__(self, *, sparse, vector, tile, max_groups):
        self.sparse, self.vector, self.tile, self.max_groups = sparse, vector, tile, max_groups
        super().__init__({
            "desc": In(descriptor_layout()),
            "map": In(max_groups),
            "start": In(1),
            "busy": Out(1),
            "o": Out(stream.Signature(addr_item_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        V, T, G = self.vector, self.tile, self.max_groups
        d = self.desc
        is_mx = d.mode == Mode.MXINT8
        step = MX_BLOCK // V
        nvec = Signal(range(G + 1))
        m.d.comb += nvec.eq(Mux(is_mx, (d.cin + MX_BLOCK - 1) // MX_BLOCK, (d.cin + V - 1) // V))
        # Layer constants (the vector mask and its routes, the last output row and column) are
        # registered every cycle from desc and map, which are stable from start: valid from the
        # cycle after start, when the first item is computed, and off the item path.
        mask = Signal(G)
        routes = Signal(G)  # the map bit of each vector of the layer's mode
        for j in range(G):
            route = self.map[j]
            if j * step < G:
                route = Mux(is_mx, self.map[j * step], self.map[j])
            m.d.sync += routes[j].eq(route)
            mine = 1 if self.sparse is None else route if self.sparse else ~route
            m.d.sync += mask[j].eq((j < nvec) & mine)

        k, s, p = d.kernel, d.stride, d.padding
        last_oy = Signal(13)  # out_h - 1
        last_ox = Signal(13)  # out_w - 1
        m.d.sync += [
            last_oy.eq((d.height + 2 * p - k) >> (s == 2)),
            last_ox.eq((d.width + 2 * p - k) >> (s == 2)),
        ]

        oy, ox = Signal(12), Signal(12)
        ky, kx = Signal(2), Signal(2)
        j = Signal(range(G))
        ustart = Signal()
        running = Signal()

        s2 = s == 2
        in_step = Mux(s2, 2, 1)  # input rows (columns) per output row (column)

        # The output pixel's first input row (column) o * s - p and the input rows (columns)
        # from there to the edge, size - (o * s - p) - 1, step with the counters (registers),
        # so the tap ranges are bit tests of registers: with kernel 1 or 3 and padding below
        # the kernel, -2 <= base and 0 <= room, so lo = max(-base, 0) is base's two low bits
        # negated and hi = min(room, k - 1) is room's low bits unless room >= 2.
        k3 = k == 3

        def tap_range(name):
            base = Signal(signed(15), name=f"{name}_base")
            room = Signal(signed(15), name=f"{name}_room")
            lo = Signal(2, name=f"{name}_lo")
            hi = Signal(2, name=f"{name}_hi")
            m.d.comb += [lo.eq(Mux(base[-1], Cat(base[0], base[1] ^ base[0]), 0)),
                         hi.eq(Mux(k3, Mux(room[1:].any(), 2, room[0]), 0))]
            return base, room, lo, hi

        y_base, y_room, ky_lo, ky_hi = tap_range("y")
        x_base, x_room, kx_lo, kx_hi = tap_range("x")

        def first_output(base, room, size):  # output row (column) 0
            return [base.eq(-p), room.eq(size + p - 1)]

        first_j = Signal(range(G))
        for i in reversed(range(G)):
            with m.If(mask[i]):
                m.d.comb += first_j.eq(i)
        cur_ky = Mux(ustart, ky_lo, ky)
        cur_kx = Mux(ustart, kx_lo, kx)
        cur_j = Signal(range(G))
        m.d.comb += cur_j.eq(Mux(ustart, first_j, j))
        above = Signal(G)
        m.d.comb += above.eq(mask & ~((2 << cur_j) - 1))
        next_j = Signal(range(G))
        for i in reversed(range(G)):
            with m.If(above[i]):
                m.d.comb += next_j.eq(i)
        null = mask == 0
        last_in_unit = null | ((above == 0) & (cur_kx == kx_hi) & (cur_ky == ky_hi))
        rem = Signal(13)  # cout - the tile's first output channel
        last_tile = rem <= T
        last_px = (ox == last_ox) & (oy == last_oy)

        # Addresses without multipliers on the item path (all arithmetic modulo 2**ADDR_BITS):
        #   act = act_base + ((oy*s - p + ky) * width + ox*s - p + kx) * nvec + j
        #       = act_org + pix + ky * row + kx * nvec + j
        #   w   = w_base + t * taps * nvec + ky * 3 * nvec + kx * nvec + j   (ky = 0 if k = 1)
        # The layer's strides are registered every cycle from desc (one register after it, so
        # valid from the cycle after start, when the first item is computed); pix = (oy*s*width
        # + ox*s) * nvec and toff = t * taps * nvec step with the counters.
        A = ADDR_BITS
        row = Signal(range(2 ** 12 * (G + 1)))
        m.d.comb += row.eq(d.width * nvec)
        nvec_r, row_r, nvec3, act_org = (Signal(A, name=n) for n in
                                          ("nvec_r", "row_r", "nvec3", "act_org"))
        row_step, col_step, tile_step = (Signal(A, name=n) for n in
                                         ("row_step", "col_step", "tile_step"))
        m.d.sync += [
            nvec_r.eq(nvec), row_r.eq(row), nvec3.eq((nvec << 1) + nvec),
            act_org.eq(d.act_base - Mux(p[1], (row + nvec) << 1, Mux(p[0], row + nvec, 0))),
            row_step.eq(Mux(s2, row << 1, row)), col_step.eq(Mux(s2, nvec << 1, nvec)),
            tile_step.eq(Mux(k == 3, (nvec << 3) + nvec, nvec)),
        ]
        pix, row_pix, toff = Signal(A), Signal(A), Signal(A)

        def by_tap(tap, stride):  # tap * stride for tap in 0..2
            return Mux(tap[1], stride << 1, Mux(tap[0], stride, 0))

        inner = Signal(A)
        m.d.comb += inner.eq(by_tap(cur_kx, nvec_r) + cur_j)
        act = Signal(A)
        wad = Signal(A)
        m.d.comb += [
            act.eq(act_org + pix + by_tap(cur_ky, row_r) + inner),
            wad.eq(d.w_base + toff + by_tap(cur_ky, nvec3) + inner),
        ]

        advance = running & (~self.o.valid | self.o.ready)
        m.d.comb += self.busy.eq(running | self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.act_addr.eq(Mux(null, 0, act)),
                self.o.payload.w_addr.eq(Mux(null, 0, wad)),
                self.o.payload.first.eq(ustart),
                self.o.payload.last.eq(last_in_unit),
                self.o.payload.null.eq(null),
                self.o.payload.ncols.eq(Mux(last_tile, rem, T)),
                self.o.payload.pref.eq(~null & routes.bit_select(cur_j, 1)),
            ]
            with m.If(last_in_unit):
                m.d.sync += ustart.eq(1)
                with m.If(last_tile):
                    m.d.sync += [rem.eq(d.cout), toff.eq(0)]
                    with m.If(ox == last_ox):
                        m.d.sync += [ox.eq(0), oy.eq(oy + 1),
                                     *first_output(x_base, x_room, d.width),
                                     y_base.eq(y_base + in_step), y_room.eq(y_room - in_step),
                                     row_pix.eq(row_pix + row_step), pix.eq(row_pix + row_step)]
                    with m.Else():
                        m.d.sync += [ox.eq(ox + 1), x_base.eq(x_base + in_step),
                                     x_room.eq(x_room - in_step), pix.eq(pix + col_step)]
                    with m.If(last_px):
                        m.d.sync += running.eq(0)
                with m.Else():
                    m.d.sync += [rem.eq(rem - T), toff.eq(toff + tile_step)]
            with m.Else():
                m.d.sync += ustart.eq(0)
                with m.If(above != 0):
                    m.d.sync += [j.eq(next_j), ky.eq(cur_ky), kx.eq(cur_kx)]
                with m.Elif(cur_kx != kx_hi):
                    m.d.sync += [j.eq(first_j), ky.eq(cur_ky), kx.eq(cur_kx + 1)]
                with m.Else():
                    m.d.sync += [j.eq(first_j), ky.eq(cur_ky + 1), kx.eq(kx_lo)]
        with m.If(self.start):
            m.d.sync += [oy.eq(0), ox.eq(0), rem.eq(d.cout), ustart.eq(1),
                         running.eq(1), pix.eq(0), row_pix.eq(0), toff.eq(0),
                         *first_output(y_base, y_room, d.height),
                         *first_output(x_base, x_room, d.width)]
        return m


class AddrGen(wiring.Component):
    """Two independent walkers (dense and sparse) over the same layer, or (``merged``) one
    walker over every vector.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Channels per INT4 vector and per channel-map group.
    tile : int, 1..256
        Output channels per unit (the engines' result width).
    max_cin : int, ``vector``..2048
        Largest input channel count; ``max_cin / vector`` (rounded up) channel-map bits.
    merged : bool
        One walker (output ``o``) that emits every vector of the unit, each with its map bit in
        ``pref``: the item stream of a ``balance`` top (:mod:`hw.dispatch`). ``d`` and ``s``
        then do not exist.

    Members
    -------
    desc : In(descriptor_layout())
        Layer descriptor; ``map`` : In(groups) the channel map of the layer's input (bit g = 1:
        group g is sparse). Both must be stable from ``start`` until ``busy`` falls.
    start : In(1)
        Pulse in cycle t: both walkers restart at the first unit; first items valid in
        t + :data:`ADDRGEN_LATENCY`.
    busy : Out(1)
        A walker is running or holds an item.
    d, s : Out(stream.Signature(addr_item_layout()))
        Dense and sparse work items. Walk order (each walker): output row, output column,
        output-channel tile, then kernel tap (ky, kx) and its input vectors in ascending order,
        restricted to the taps inside the input (padding taps are skipped, never issued) and to
        the vectors of the walker's class (dense: map bit 0, sparse: map bit 1; in MXINT8 mode
        block b follows map bit ``b * 32 / vector``). A unit with no item of the class gets one
        ``null`` item, so both streams carry exactly one ``first``..``last`` run per unit.
        Every item carries ``ncols`` (the unit's output channels, ``min(tile, cout - tc)``) and
        ``pref`` (its vector's map bit; 0 for a null item).

    Timing
    ------
    Each walker emits one item per cycle whenever its output register is empty or being
    emptied (a registered stream; no bubble between units); skipping vectors of the other class
    and padding taps costs no cycle. Items per unit and walker: ``max(1, valid taps x class
    vectors)`` (:func:`walk_items` is the exact model).
    """

    def __init__(self, *, vector, tile, max_cin, merged=False):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.tile = check_int("tile", tile, 1, 256)
            self.max_cin = check_int("max_cin", max_cin, vector, 2048)
            self.merged = check_bool("merged", merged)
        self.groups = -(-max_cin // vector)
        self.walkers = (("o", None),) if merged else (("d", False), ("s", True))
        super().__init__({
            "desc": In(descriptor_layout()),
            "map": In(self.groups),
            "start": In(1),
            "busy": Out(1),
            **{name: Out(stream.Signature(addr_item_layout())) for name, _ in self.walkers},
        })

    def elaborate(self, platform):
        m = Module()
        busy = []
        for name, sparse in self.walkers:
            w = _Walker(sparse=sparse, vector=self.vector, tile=self.tile,
                        max_groups=self.groups)
            m.submodules[f"walk_{name}"] = w
            m.d.comb += [w.desc.eq(self.desc), w.map.eq(self.map), w.start.eq(self.start)]
            wiring.connect(m, w.o, wiring.flipped(getattr(self, name)))
            busy.append(w.busy)
        m.d.comb += self.busy.eq(Cat(*busy).any())
        return m

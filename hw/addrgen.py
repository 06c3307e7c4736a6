"""Channel-last address generator: walks output pixels x output-channel tiles x kernel taps x
input vectors and emits engine work items on a dense and a sparse stream."""

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed
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
        # a vector index; one bit (always 0) for a single vector, not a zero-width signal
        # (Verilator rejects the ``[-1:0]`` range Amaranth would emit)
        vec_index = range(max(G, 2))
        A = ADDR_BITS
        d = self.desc
        is_mx = d.mode == Mode.MXINT8
        step = MX_BLOCK // V
        k, s, p = d.kernel, d.stride, d.padding
        k3 = k == 3
        s2 = s == 2
        in_step = Mux(s2, 2, 1)  # input rows (columns) per output row (column)
        nvec = Signal(range(G + 1))
        m.d.comb += nvec.eq(Mux(is_mx, (d.cin + MX_BLOCK - 1) // MX_BLOCK, (d.cin + V - 1) // V))

        # Every register below that is read by the item path holds the current item's state, and
        # every decision of a cycle is a bit test or a small equality of registers: the vectors
        # above the current one (``rest``) and whether it is the last, the tap range's ends, the
        # last tile, column and row are registered with the counters they follow (cycle-neutral:
        # the walk, its cycles and its items are those of walk_items).
        #
        # Layer constants are registered every cycle from desc and map, which are stable from
        # start: valid from the cycle after start, when the first item is computed. The vector
        # mask ``j < nvec`` is a comparison of cin with constants (no adder before it; equal for
        # cin <= max_cin); the first vector, the vectors after it and whether there is more than
        # one are registered from it, so no priority encoder of the mask is on the item path
        # (the first item after start reads them, the later ones j, rest and rest_empty).
        mask = Signal(G)
        routes = Signal(G)  # the map bit of each vector of the layer's mode
        for j in range(G):
            route = self.map[j]
            if j * step < G:
                route = Mux(is_mx, self.map[j * step], self.map[j])
            m.d.sync += routes[j].eq(route)
            mine = 1 if self.sparse is None else route if self.sparse else ~route
            m.d.comb += mask[j].eq(Mux(is_mx, d.cin > j * MX_BLOCK, d.cin > j * V) & mine)

        def lowest(v, name):  # index of v's lowest set bit (0 if none)
            out = Signal(vec_index, name=name)
            for i in reversed(range(G)):
                with m.If(v[i]):
                    m.d.comb += out.eq(i)
            return out

        def several(v):  # more than one bit of v set (a tree, logarithmic depth)
            def rec(lo, hi):
                if hi - lo == 1:
                    return v[lo], C(0, 1)
                mid = (lo + hi) // 2
                a0, m0 = rec(lo, mid)
                a1, m1 = rec(mid, hi)
                return a0 | a1, m0 | m1 | (a0 & a1)
            return rec(0, G)[1]

        first_j0 = Signal(vec_index)  # the unit's first vector
        rest0 = Signal(G)            # the vectors after it
        rest0_empty = Signal()       # one vector (or none)
        null = Signal()              # no vector: every unit is one null item
        m.d.sync += [first_j0.eq(lowest(mask, "first_j")), rest0.eq(mask & (mask - 1)),
                     rest0_empty.eq(~several(mask)), null.eq(mask == 0)]

        last_oy_c, last_ox_c = Signal(13), Signal(13)  # out_h - 1, out_w - 1
        m.d.comb += [last_oy_c.eq((d.height + 2 * p - k) >> s2),
                     last_ox_c.eq((d.width + 2 * p - k) >> s2)]
        last_oy, last_ox = Signal(13), Signal(13)
        one_col, one_tile = Signal(), Signal()
        m.d.sync += [last_oy.eq(last_oy_c), last_ox.eq(last_ox_c),
                     one_col.eq(last_ox_c == 0), one_tile.eq(d.cout <= T)]

        # The tap range of the output pixel's row (column), lo = max(p - o*s, 0) and hi =
        # min(size - 1 - (o*s - p), k - 1) (0 for kernel 1), registered and stepped with the
        # counters without adders: lo steps to max(lo - s, 0); hi follows room = size - 1 -
        # (o*s - p) (>= 0 for a valid layer), whose step room - s is registered too but whose
        # range is a bit test of the old room (room - s >= 2: room >= 2 + s). Output row
        # (column) 0 has lo = p and room = size + p - 1, so hi = 2 if size + p >= 3, else
        # room's parity (size >= 1). ``end`` registers ky == hi (kx == hi) for the current tap.
        def hi_first(size):
            big = size[2:].any() | (size[:2] + p >= 3)
            return Mux(k3, Mux(big, 2, ~(size[0] ^ p[0])), 0)

        def axis(name, size, wraps):
            """One axis of the taps; with ``wraps`` (the x axis, which returns to output
            column 0 within a layer) also its registered row-0 bound and end flag and the
            statements of the wrap, else None for those."""
            room = Signal(signed(15), name=f"{name}_room")
            lo, hi = Signal(2, name=f"{name}_lo"), Signal(2, name=f"{name}_hi")
            lo_next = Signal(2, name=f"{name}_lo_next")
            hi_next = Signal(2, name=f"{name}_hi_next")
            hi0_c = Signal(2, name=f"{name}_hi0_c")
            room_big = room[2:].any() | (~s2 & room[0] & room[1])  # room - s >= 2
            m.d.comb += [lo_next.eq(Mux(s2, Mux(lo[1], lo - 2, 0), Mux(lo != 0, lo - 1, 0))),
                         hi_next.eq(Mux(k3, Mux(room_big, 2, room[0] ^ ~s2), 0)),
                         hi0_c.eq(hi_first(size))]
            room0 = size + p - 1
            # output row (column) 0: from desc at start, from the layer constants later
            start = [room.eq(room0), lo.eq(p), hi.eq(hi0_c)]
            end0 = wrap = None
            if wraps:
                hi0, end0 = Signal(2, name=f"{name}_hi0"), Signal(name=f"{name}_end0")
                m.d.sync += [hi0.eq(hi0_c), end0.eq(hi0_c == p)]
                wrap = [room.eq(room0), lo.eq(p), hi.eq(hi0)]
            step_ = [room.eq(room - in_step), lo.eq(lo_next), hi.eq(hi_next)]
            return lo, hi, lo_next, hi_next, hi0_c == p, end0, start, wrap, step_

        (ky_lo, ky_hi, ky_lo_next, ky_hi_next, y_end_c, _,
         y_start, _, y_step) = axis("y", d.height, wraps=False)
        (kx_lo, kx_hi, kx_lo_next, kx_hi_next, x_end_c, x_end0,
         x_start, x_wrap, x_step) = axis("x", d.width, wraps=True)
        ky_end, kx_end = Signal(), Signal()  # ky == ky_hi, kx == kx_hi

        oy, ox = Signal(12), Signal(12)
        oy_next, ox_next = Signal(12), Signal(12)
        m.d.comb += [oy_next.eq(oy + 1), ox_next.eq(ox + 1)]
        oy_last, ox_last = Signal(), Signal()  # oy == last_oy, ox == last_ox
        rem = Signal(13)  # cout - the tile's first output channel
        last_tile = Signal()  # rem <= T
        # the current item: tap (ky, kx), and (kyp, kxp) = (ky - p, kx - p) for the activation
        # address; vector j (first_j0 for the first item after start) and the vectors after it
        ky, kx = Signal(2), Signal(2)
        kyp, kxp = Signal(signed(3)), Signal(signed(3))
        j = Signal(vec_index)
        rest = Signal(G)
        rest_empty = Signal()
        first_item = Signal()  # no item emitted since start: j, rest are first_j0's
        ustart = Signal()
        running = Signal()

        cur_j = Signal(vec_index)
        cur_rest = Signal(G)
        cur_rest_empty = Signal()
        m.d.comb += [cur_j.eq(Mux(first_item, first_j0, j)),
                     cur_rest.eq(Mux(first_item, rest0, rest)),
                     cur_rest_empty.eq(Mux(first_item, rest0_empty, rest_empty))]
        next_j = lowest(cur_rest, "next_j")
        last_in_unit = Signal()
        m.d.comb += last_in_unit.eq(null | (cur_rest_empty & kx_end & ky_end))
        last_px = ox_last & oy_last

        # Addresses without multipliers on the item path (all arithmetic modulo 2**ADDR_BITS):
        #   act = act_base + ((oy*s - p + ky) * width + ox*s - p + kx) * nvec + j
        #       = apix + (ky - p) * row + (kx - p) * nvec + j
        #   w   = w_base + t * taps * nvec + ky * 3 * nvec + kx * nvec + j   (ky = 0 if k = 1)
        #       = wtoff + ky * 3 * nvec + kx * nvec + j
        # apix = act_base + (oy*s*width + ox*s) * nvec and wtoff = w_base + t * taps * nvec step
        # with the counters (from the bases at start). The strides are registered from desc:
        # nvec, 3 * nvec and the steps in the cycle after start; row (width * nvec), -row and
        # -nvec a register later, as the first item (output pixel 0, tap (p, p)) has ky - p =
        # kx - p = 0 and does not read them.
        nvec_r, nvec3, col_step, tile_step = (Signal(A, name=n) for n in
                                              ("nvec_r", "nvec3", "col_step", "tile_step"))
        row_step = Signal(A + 1)  # width * nvec * s, one more bit for row = row_step >> (s - 1)
        m.d.sync += [
            nvec_r.eq(nvec), nvec3.eq((nvec << 1) + nvec), col_step.eq(Mux(s2, nvec << 1, nvec)),
            tile_step.eq(Mux(k3, (nvec << 3) + nvec, nvec)),
            row_step.eq(Mux(s2, d.width << 1, d.width) * nvec),
        ]
        row = Signal(A)
        m.d.comb += row.eq(Mux(s2, row_step[1:], row_step))
        row_r, nrow_r, nnvec_r = (Signal(A, name=n) for n in ("row_r", "nrow_r", "nnvec_r"))
        m.d.sync += [row_r.eq(row), nrow_r.eq(-row), nnvec_r.eq(-nvec_r)]

        apix, arow, wtoff = (Signal(A, name=n) for n in ("apix", "arow", "wtoff"))

        def by_tap(tap, stride):  # tap * stride for tap in 0..2
            return Mux(tap[1], stride << 1, Mux(tap[0], stride, 0))

        def by_tap_signed(tap, stride, neg):  # tap * stride for tap in -2..2 (neg = -stride)
            return Mux(tap[2], Mux(tap[0], neg, neg << 1),
                       Mux(tap[1], stride << 1, Mux(tap[0], stride, 0)))

        act_y, act_x, w_y, w_x = (Signal(A, name=n) for n in ("act_y", "act_x", "w_y", "w_x"))
        act, wad = Signal(A), Signal(A)
        m.d.comb += [
            act_y.eq(apix + by_tap_signed(kyp, row_r, nrow_r)),
            act_x.eq(by_tap_signed(kxp, nvec_r, nnvec_r) + cur_j),
            act.eq(act_y + act_x),
            w_y.eq(wtoff + by_tap(ky, nvec3)),
            w_x.eq(by_tap(kx, nvec_r) + cur_j),
            wad.eq(w_y + w_x),
        ]

        advance = running & (~self.o.valid | self.o.ready)
        m.d.comb += self.busy.eq(running | self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        first_vector = [j.eq(first_j0), rest.eq(rest0), rest_empty.eq(rest0_empty)]
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
                first_item.eq(0),
            ]
            with m.If(last_in_unit):
                # the next unit starts at its first vector and its pixel's first tap
                m.d.sync += [ustart.eq(1), *first_vector]
                with m.If(last_tile):
                    m.d.sync += [rem.eq(d.cout), last_tile.eq(one_tile), wtoff.eq(d.w_base)]
                    with m.If(ox_last):
                        m.d.sync += [ox.eq(0), ox_last.eq(one_col), *x_wrap,
                                     kx.eq(p), kxp.eq(0), kx_end.eq(x_end0),
                                     oy.eq(oy_next), oy_last.eq(oy_next == last_oy), *y_step,
                                     ky.eq(ky_lo_next), kyp.eq(ky_lo_next - p),
                                     ky_end.eq(ky_lo_next == ky_hi_next),
                                     arow.eq(arow + row_step), apix.eq(arow + row_step)]
                    with m.Else():
                        m.d.sync += [ox.eq(ox_next), ox_last.eq(ox_next == last_ox), *x_step,
                                     kx.eq(kx_lo_next), kxp.eq(kx_lo_next - p),
                                     kx_end.eq(kx_lo_next == kx_hi_next),
                                     ky.eq(ky_lo), kyp.eq(ky_lo - p), ky_end.eq(ky_lo == ky_hi),
                                     apix.eq(apix + col_step)]
                    with m.If(last_px):
                        m.d.sync += running.eq(0)
                with m.Else():  # the next tile of the same pixel (rem > T)
                    m.d.sync += [rem.eq(rem - T), last_tile.eq(rem <= 2 * T),
                                 wtoff.eq(wtoff + tile_step),
                                 ky.eq(ky_lo), kyp.eq(ky_lo - p), ky_end.eq(ky_lo == ky_hi),
                                 kx.eq(kx_lo), kxp.eq(kx_lo - p), kx_end.eq(kx_lo == kx_hi)]
            with m.Else():
                m.d.sync += ustart.eq(0)
                with m.If(~cur_rest_empty):  # the next vector of the tap
                    m.d.sync += [j.eq(next_j), rest.eq(cur_rest & (cur_rest - 1)),
                                 rest_empty.eq(~several(cur_rest))]
                with m.Elif(~kx_end):  # the next tap of the row
                    m.d.sync += [*first_vector, kx.eq(kx + 1), kxp.eq(kxp + 1),
                                 kx_end.eq(kx + 1 == kx_hi)]
                with m.Else():  # the first tap of the next row
                    m.d.sync += [*first_vector, ky.eq(ky + 1), kyp.eq(kyp + 1),
                                 ky_end.eq(ky + 1 == ky_hi),
                                 kx.eq(kx_lo), kxp.eq(kx_lo - p), kx_end.eq(kx_lo == kx_hi)]
        with m.If(self.start):
            # a valid layer's last output column (row) is 0 iff size + 2p <= k + (s == 2)
            def single(size):
                return (size[3:] == 0) & (size[:3] + 2 * p <= k + s2)
            m.d.sync += [oy.eq(0), ox.eq(0), rem.eq(d.cout), last_tile.eq(d.cout <= T),
                         oy_last.eq(single(d.height)), ox_last.eq(single(d.width)),
                         ustart.eq(1), first_item.eq(1), running.eq(1),
                         apix.eq(d.act_base), arow.eq(d.act_base), wtoff.eq(d.w_base),
                         *y_start, *x_start, ky.eq(p), kx.eq(p), kyp.eq(0), kxp.eq(0),
                         ky_end.eq(y_end_c), kx_end.eq(x_end_c)]
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

"""Sparse PE array (SPE): ``lanes`` non-zero activations x ``cols`` output channels per cycle."""

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (MX_BLOCK, VECTOR_CHOICES, Mode, check_bool, check_choice, check_int,
                     fresh_or_held, item_layout, nibble_operands, nonzero_mask,
                     nonzero_nibble_mask, popcount, result_layout, validating, pack_value)
from .engine import ENGINE_STAGES, engine_stages, lane_products, result_pipeline, scale_factors

__all__ = ["SPE", "SPE_LATENCY", "SPE_NIBBLE_PASSES", "spe_item_cycles", "spe_item_macs",
           "SPE_INFO_LAYOUT", "spe_input_info"]

#: Cycles from the last processing cycle of a ``last`` item to its result on ``o`` (the result
#: pipeline of :mod:`hw.engine`, then the result register), without the product register;
#: ``SPE(...).latency`` is the instance's.
SPE_LATENCY = ENGINE_STAGES + 1
#: The (x_nibble, w_nibble, shift) products of an 8x8 multiply, in issue order (MXINT8 mode).
SPE_NIBBLE_PASSES = ((1, 1, 8), (1, 0, 4), (0, 1, 4), (0, 0, 0))


#: What the SPE needs of an input item's activations as it accepts it (:func:`spe_input_info`):
#: the sweep masks of its high- and low-nibble passes (``hi``, ``lo``; without ``nibble_skip``
#: or in INT4 mode both the non-zero elements), its count of zero elements (``zeros``) and
#: whether each sweep takes one cycle (``hi_fit``, ``lo_fit``: at most ``lanes`` bits set).
SPE_INFO_LAYOUT = data.StructLayout({"hi": MX_BLOCK, "lo": MX_BLOCK, "zeros": range(MX_BLOCK + 1),
                                     "hi_fit": 1, "lo_fit": 1})


def _mask_of(x, is_mx, vector):
    return Mux(is_mx, nonzero_mask(x, MX_BLOCK), nonzero_mask(x, vector))


def _sweep_mask(x, hi, is_mx, vector, nibble_skip):
    """The lanes' work of a sweep: the non-zero elements, or with ``nibble_skip`` in MXINT8
    mode the non-zero high (``hi``) or low nibbles."""
    if not nibble_skip:
        return _mask_of(x, is_mx, vector)
    return Mux(is_mx, nonzero_nibble_mask(x, hi), nonzero_mask(x, vector))


def spe_input_info(m, x, mode, *, vector, nibble_skip, lanes, nnz=None, nibble_counts=None,
                   name="nnz"):
    """:data:`SPE_INFO_LAYOUT`'s fields of the activations ``x`` (32 elements) in ``mode`` for
    an SPE of ``lanes`` lanes, as a value; ``nnz``, if given, is their non-zero count
    (``vector`` elements in INT4 mode, 32 in MXINT8) and ``nibble_counts`` their non-zero high
    and low nibbles' counts, else they are counted. For a stage before the SPE
    (``SPE(info_in=True)``), so that the SPE starts at registers."""
    is_mx = mode == Mode.MXINT8
    if nnz is None:
        nnz = popcount(m, _mask_of(x, is_mx, vector), name)
    zeros = Signal(range(MX_BLOCK + 1), name=f"{name}_zeros")
    m.d.comb += zeros.eq(Mux(is_mx, MX_BLOCK, vector) - nnz)
    fits = []
    for hi in (1, 0):  # the sweep's count: nnz, or the nibbles' with nibble_skip in MXINT8
        if not nibble_skip:
            count = nnz
        else:
            nib = (popcount(m, nonzero_nibble_mask(x, hi), f"{name}_nib{hi}")
                   if nibble_counts is None else nibble_counts[1 - hi])
            count = Mux(is_mx, nib, nnz)
        fits.append(count <= lanes)
    return Cat(_sweep_mask(x, 1, is_mx, vector, nibble_skip),
               _sweep_mask(x, 0, is_mx, vector, nibble_skip), zeros, *fits)


def spe_item_cycles(x, *, mode, null, vector, lanes, nibble_skip=False):
    """Processing cycles of one SPE item with activation elements ``x`` (the cycle model).

    null item: 1. INT4: ``max(1, ceil(nnz / lanes))`` with ``nnz`` the non-zero elements among
    the first ``vector``. MXINT8: ``4 * max(1, ceil(nnz / lanes))`` over the 32 elements of the
    block (one sweep over the non-zeros per nibble product); with ``nibble_skip``
    ``2 * max(1, ceil(nnz_hi / lanes)) + 2 * max(1, ceil(nnz_lo / lanes))``, the non-zero
    signed high nibbles (``x >> 4``) and unsigned low nibbles (``x & 15``).
    """
    if null:
        return 1
    return sum(max(1, -(-n // lanes)) for n in _sweep_lanes(x, mode, vector, nibble_skip))


def spe_item_macs(x, *, mode, vector, lanes, nibble_skip=False):
    """Lane products of one non-null SPE item (each times the ``cols`` columns: the ``macs``
    counter): ``nnz`` in INT4 mode, ``4 * nnz`` in MXINT8 mode, ``2 * (nnz_hi + nnz_lo)`` with
    ``nibble_skip`` (:func:`spe_item_cycles`)."""
    return sum(_sweep_lanes(x, mode, vector, nibble_skip))


def _sweep_lanes(x, mode, vector, nibble_skip):
    """The lane operations of each sweep of an item: INT4 one sweep over the non-zero elements
    of the first ``vector``; MXINT8 one per nibble product (:data:`SPE_NIBBLE_PASSES`) over the
    32 non-zero elements, or with ``nibble_skip`` over the non-zero high / low nibbles."""
    x = [int(v) for v in list(x)[:Mode(mode).block(vector)]]
    nnz = sum(1 for v in x if v)
    if Mode(mode) != Mode.MXINT8:
        return [nnz]
    if not nibble_skip:
        return [nnz] * len(SPE_NIBBLE_PASSES)
    hi, lo = sum(1 for v in x if v >> 4), sum(1 for v in x if v & 15)
    return [hi if xn else lo for xn, _, _ in SPE_NIBBLE_PASSES]


class SPE(wiring.Component):
    """Zero-skipping MAC array: per cycle up to ``lanes`` non-zero activations x ``cols``
    output channels.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Elements of an INT4 vector (MXINT8 blocks always have 32).
    lanes : int, 1..32
        Non-zero activations consumed per cycle.
    cols : int, 1..256
        Output channels per item and per cycle (``lanes * cols`` multipliers; the default
        4 x 32 = 128 matches the default DPE's 16 x 8).
    nibble_skip : bool
        MXINT8: the two passes that multiply an activation's high nibble sweep its non-zero high
        nibbles only, the other two its non-zero low nibbles (:func:`spe_item_cycles`).
    sweep_end_reg : bool
        The end of a sweep (the remaining mask is empty) as a register, set with the mask
        (the ``timing_regs`` configuration): ``i.ready`` then starts at registers one LUT
        level closer. Same cycles.
    product_reg : bool
        As :class:`hw.dpe.DPE`'s: a register between the multipliers and the column sums, one
        cycle more of latency (``latency``).
    result_queue : bool
        As :class:`hw.dpe.DPE`'s: a second result register.
    mant_regs : bool
        As :class:`hw.dpe.DPE`'s: the mantissa multiplier's registers, two cycles more of
        latency.
    accept_reg : bool
        Needs ``sweep_end_reg``. The lane selection of the input item is registered in every
        cycle, separately from the continuation of the current one, and a registered copy of
        the handshake picks between the two in the next cycle; so the handshake (the
        dispatcher's choice, late in the cycle) only sets one flip-flop instead of selecting
        what the lane registers load. The item's sweep masks and its count of zeros are
        registered as it is accepted, so the continuation's lanes and ``skipped`` start at
        registers rather than at the item's elements. The lanes are then registered as
        element one-hots (selected by AND-OR, no index encoder after the carry chain), their
        valid flags and the end of the sweep come from a carry-free count tree, the first
        lanes of both sweep masks are encoded as the item is accepted (the next sweep's lanes
        are a multiplexer) and the item's end is a register (``i.ready`` one LUT level after
        flip-flops). Same cycles.
    info_in : bool
        Needs ``accept_reg``. The item's sweep masks and count of zeros arrive with it on
        ``i_info`` (:data:`SPE_INFO_LAYOUT`, :func:`spe_input_info`; the dispatcher's
        ``spe_info``), registered upstream, instead of being computed here from
        ``i.payload.x``: the lane selection of the input starts at registers. Same cycles.

    Members
    -------
    mode, i, o, busy, macs
        As :class:`hw.dpe.DPE` (``tile = cols``); ``macs`` is ``active lanes * cols``.
    i_info : In(SPE_INFO_LAYOUT) (with ``info_in`` only)
        :func:`spe_input_info` of ``i.payload.x``, valid with it.
    skipped : Out(range(33))
        In the final cycle of a non-null item: its zero activation elements (``vector - nnz``
        in INT4 mode, ``32 - nnz`` in MXINT8 mode), each skipped for every column.

    Operation and timing
    --------------------
    On its handshake an item is registered together with the lane indices of its non-zero
    activation elements: each issue cycle the ``lanes`` lowest set bits of the remaining mask
    are taken, their indices registered one cycle ahead (priority encoders on the mask being
    loaded; with ``accept_reg`` element one-hots, see there), each lane multiplexes its
    activation and the matching weight of every column;
    when the mask is exhausted the sweep ends (an all-zero vector still takes one cycle).
    MXINT8 runs four sweeps, one per nibble product. The operands enter the result pipeline of
    :mod:`hw.engine`, whose operand register (stage 0) feeds the products, summed over the
    lanes per column; it adds the item's passes exactly into ``P``, converts it to a term
    (RNE, clamp) and accumulates. Cycles per item: :func:`spe_item_cycles`. Items stream back
    to back (the next is accepted in the last issue cycle of the current one); a result is
    valid ``latency`` cycles after the last issue cycle of a ``last`` item
    (:data:`SPE_LATENCY` without ``product_reg``).

    Backpressure
    ------------
    As :class:`hw.dpe.DPE`: a full ``o`` register (with ``result_queue``: both result
    registers full) stalls the whole engine while the pipeline's last stage holds the final
    pass of a ``last`` item.
    """

    def __init__(self, *, vector, lanes, cols, nibble_skip=False, sweep_end_reg=False,
                 product_reg=False, accept_reg=False, result_queue=False, info_in=False,
                 mant_regs=False):
        with validating(self):
            self.result_queue = check_bool("result_queue", result_queue)
            self.product_reg = check_bool("product_reg", product_reg)
            self.mant_regs = check_bool("mant_regs", mant_regs)
            self.accept_reg = check_bool("accept_reg", accept_reg)
            if accept_reg and not sweep_end_reg:
                raise ValueError("accept_reg needs sweep_end_reg: the end of a sweep is "
                                 "registered with the lanes it belongs to")
            self.info_in = check_bool("info_in", info_in)
            if info_in and not accept_reg:
                raise ValueError("info_in needs accept_reg: the input's information is "
                                 "latched as the item is accepted")
            self.nibble_skip = check_bool("nibble_skip", nibble_skip)
            self.sweep_end_reg = check_bool("sweep_end_reg", sweep_end_reg)
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.lanes = check_int("lanes", lanes, 1, MX_BLOCK)
            self.cols = check_int("cols", cols, 1, 256)
        super().__init__({
            "mode": In(Mode),
            "i": In(stream.Signature(item_layout(cols))),
            **({"i_info": In(SPE_INFO_LAYOUT)} if info_in else {}),
            "o": Out(stream.Signature(result_layout(cols))),
            "busy": Out(1),
            "macs": Out(range(lanes * cols + 1)),
            "skipped": Out(range(MX_BLOCK + 1)),
        })
        self.latency = engine_stages(self.product_reg, self.mant_regs) + 1

    def elaborate(self, platform):
        m = Module()
        V, L, T = self.vector, self.lanes, self.cols
        npass = len(SPE_NIBBLE_PASSES)
        is_mx = self.mode == Mode.MXINT8

        def sweep_mask(x, hi):
            return _sweep_mask(x, hi, is_mx, V, self.nibble_skip)

        # no reset (read only while busy): the flip-flops' set/reset input, which the
        # domain reset would take, then zeroes the operands of the dispatcher's null item
        # as it loads, instead of a LUT per bit (docs/hardware.md section 7)
        item = Signal(item_layout(T), reset_less=True)
        busy = Signal()
        fresh = Signal()  # first processing cycle of the item
        c_cnt = Signal(range(npass))
        # a pass's operands: per lane an activation operand and its valid flag, per column and
        # lane a weight operand; stage 0 of the result pipeline registers them
        operands = data.StructLayout({
            "x": data.ArrayLayout(signed(5), L), "ok": L,
            "w": data.ArrayLayout(data.ArrayLayout(signed(5), L), T)})

        def column_products(ops):
            return [lane_products(m, ops.x, ops.w[c], L, f"prod{c}", valid=ops.ok)
                    for c in range(T)]

        issue, pipe_stall = result_pipeline(m, cols=T, tile=T, o=self.o, operands=operands,
                                            column_products=column_products,
                                            product_reg=self.product_reg,
                                            result_queue=self.result_queue,
                                            mant_regs=self.mant_regs, platform=platform)

        def lanes_of(mask, name):
            """The ``L`` lowest set bits of ``mask`` (index, valid) and the rest of it. Each
            lane isolates its lowest set bit as ``r & ~(r - 1)`` (a carry chain) and encodes
            its index with one OR per index bit: logarithmic depth, where a priority chain
            over the 32 bits is a dozen LUT levels on an FPGA (docs/hardware.md 4.3)."""
            r = mask
            idx, ok = [], []
            for lane in range(L):
                low = Signal(MX_BLOCK, name=f"{name}_low{lane}")  # one-hot, or 0
                m.d.comb += low.eq(r & ~(r - 1))
                sel = Signal(range(MX_BLOCK), name=f"{name}_idx{lane}")
                m.d.comb += sel.eq(Cat(*[Cat(*[low[i] for i in range(MX_BLOCK)
                                               if i >> b & 1]).any()
                                         for b in range(len(sel))]))
                idx.append(sel)
                ok.append(r != 0)
                nxt = Signal(MX_BLOCK, name=f"{name}_rest{lane}")
                m.d.comb += nxt.eq(r ^ low)
                r = nxt
            return idx, ok, r

        def tree(parts, op, name):
            """``parts`` reduced pairwise with ``op``, a balanced tree of named levels."""
            level = 0
            while len(parts) > 1:
                nxt = []
                for k in range(0, len(parts) - 1, 2):
                    v = op(parts[k], parts[k + 1])
                    s = Signal(v.shape(), name=f"{name}_l{level}_{k // 2}")
                    m.d.comb += s.eq(v)
                    nxt.append(s)
                parts = nxt + parts[len(parts) & ~1:]
                level += 1
            return parts[0]

        def at_least(mask, name):
            """``[popcount(mask) > j for j <= L]`` without a carry chain: a tree of
            saturating counts in thermometer code (a node of two children's counts of at most
            2 bits each is one LUT4 per output bit)."""
            cap = L + 1
            nodes = [[mask[e]] for e in range(MX_BLOCK)]
            level = 0
            while len(nodes) > 1:
                nxt = []
                for k in range(0, len(nodes) - 1, 2):
                    a, b = nodes[k], nodes[k + 1]
                    n = min(cap, len(a) + len(b))
                    bit = [(a[j] if j < len(a) else 0) | (b[j] if j < len(b) else 0)
                           for j in range(n)]
                    for j in range(n):
                        for i in range(min(j, len(a))):
                            if j - 1 - i < len(b):
                                bit[j] = bit[j] | (a[i] & b[j - 1 - i])
                    t = Signal(n, name=f"{name}_l{level}_{k // 2}")
                    m.d.comb += t.eq(Cat(*bit))
                    nxt.append([t[j] for j in range(n)])
                nodes = nxt + nodes[len(nodes) & ~1:]
                level += 1
            return nodes[0]

        # the current lanes' multiplexers: indices (a one-hot select per lane with
        # accept_reg), valid flags, the mask left after them, its emptiness
        if self.accept_reg:
            cur_sel = [Signal(MX_BLOCK, name=f"sel{lane}") for lane in range(L)]
        else:
            idx = [Signal(range(MX_BLOCK), name=f"idx{lane}") for lane in range(L)]
        lane_ok = [Signal(name=f"lane_ok{lane}") for lane in range(L)]
        rest = Signal(MX_BLOCK, name="rest")
        if self.sweep_end_reg:  # rest == 0, registered with rest (empty after reset)
            sweep_done = Signal(init=1)
        else:
            sweep_done = rest == 0
        # c_cnt == its last value in MXINT8 mode (always in INT4), registered with c_cnt, so
        # that the engine's ready does not start at the mode's comparison
        last_pass = Signal(init=1)

        def pass_is_last(value):
            return Mux(is_mx, value == npass - 1, 1)

        def set_pass(value):
            return [c_cnt.eq(value), last_pass.eq(pass_is_last(value))]
        adv = busy & ~pipe_stall

        if self.accept_reg:
            # Lane selections as registers, each ``(sel..., ok..., rest, done)``: ``sel`` a
            # lane's element one-hot (selected by AND-OR: no index encoder after the carry
            # chain), ``ok`` its valid flag, ``rest`` the sweep's mask left after the lanes,
            # ``done`` rest == 0. ``a_``: of the input item's high-nibble sweep, loaded every
            # cycle; ``k_``: the continuation. The current lanes are ``a_``'s in the cycle
            # after the item's acceptance (``took``), else ``k_``'s: the handshake (late in the
            # cycle) only sets one flip-flop. The first lanes of each of the item's sweeps
            # are encoded as it is accepted (``a_``, ``lo_in``) and held (``hi_``, ``lo_``), so
            # at the end of a sweep the next sweep's lanes are a multiplexer, not an encoder;
            # within a sweep the next lanes are encoded from the registered ``rest``.
            took = Signal()

            def lane_regs(prefix, **done_kw):
                return [*[Signal(MX_BLOCK, name=f"{prefix}sel{lane}") for lane in range(L)],
                        *[Signal(name=f"{prefix}lane_ok{lane}") for lane in range(L)],
                        Signal(MX_BLOCK, name=f"{prefix}rest"),
                        Signal(name=f"{prefix}sweep_done", **done_kw)]

            def lanes(mask, name, counts=None, done=None):
                """The lane selection of ``mask`` in the order of :func:`lane_regs`: each lane
                isolates the lowest set bit left as ``r & ~(r - 1)`` (a carry chain); the valid
                flags and ``done`` come from ``counts``, by default ``at_least(mask)``, in
                parallel (``done``, if given, instead: the mask has at most ``lanes`` bits)."""
                if counts is None:
                    counts = at_least(mask, f"{name}_cnt")
                r, sels = mask, []
                for lane in range(L):
                    low = Signal(MX_BLOCK, name=f"{name}_low{lane}")  # one-hot, or 0
                    nxt = Signal(MX_BLOCK, name=f"{name}_rest{lane}")
                    m.d.comb += [low.eq(r & ~(r - 1)), nxt.eq(r & (r - 1))]
                    sels.append(low)
                    r = nxt
                if done is None:
                    done = ~counts[L] if L < len(counts) else C(1, 1)
                return [*sels, *counts[:L], r, done]

            def held(every, name):
                """``every`` (loaded in every cycle) as the accepted item's: taken in the cycle
                after the item's acceptance (``took``) and held from then on."""
                return [fresh_or_held(m, e, took, f"{name}_{e.name}") for e in every]

            def latched(value, name):
                every = Signal.like(value, name=f"{name}_in")
                m.d.sync += every.eq(value)
                return held([every], name)[0]

            a_regs, k_regs = lane_regs("a_"), lane_regs("k_", init=1)
            cur = [*cur_sel, *lane_ok, rest, sweep_done]
            m.d.comb += [c.eq(Mux(took, a, k)) for c, a, k in zip(cur, a_regs, k_regs)]
            lo_in = lane_regs("lo_in_")
            hi_first, lo_first = held(a_regs, "hi"), held(lo_in, "lo")
            # the item's end in the current cycle, but for ``busy``: registered for the
            # input item (``a_fin``) and for the continuation (``k_fin``), so that
            # ``i.ready`` is one LUT level after flip-flops
            a_fin, k_fin = Signal(name="a_fin"), Signal(name="k_fin")
            final = busy & Mux(took, a_fin, k_fin)
        else:
            final = busy & (item.null | (sweep_done & last_pass))
        active = popcount(m, Cat(*lane_ok), "active")
        # the item's zeros skipped: counted from the input as it is accepted (accept_reg; with
        # info_in counted upstream), or from the item
        def info_of(x, name):
            return SPE_INFO_LAYOUT(spe_input_info(m, x, self.mode, vector=V, lanes=L,
                                                  nibble_skip=self.nibble_skip, name=name))
        if self.info_in:
            in_info = self.i_info
        elif self.accept_reg:
            in_info = info_of(self.i.payload.x, "nnz_in")
        if self.accept_reg:
            zeros = latched(in_info.zeros, "item_zeros")
        else:
            zeros = info_of(item.x, "nnz").zeros
        m.d.comb += [
            self.i.ready.eq(~busy | (final & ~pipe_stall)),
            self.busy.eq(adv),
            self.macs.eq(Mux(adv & ~item.null, active * T, 0)),
            self.skipped.eq(Mux(adv & final & ~item.null, zeros, 0)),
        ]

        xn, wn, sh4 = Signal(), Signal(), Signal(range(3))
        with m.Switch(c_cnt):
            for k, (a, b, s) in enumerate(SPE_NIBBLE_PASSES):
                with m.Case(k):
                    m.d.comb += [xn.eq(a), wn.eq(b), sh4.eq(Mux(is_mx, s // 4, 0))]

        # the operands' nibble selection by the item's mode, registered as it is accepted
        # (accept_reg; ``last_pass`` is, too), so that it is one LUT after the selection
        op_mx = Signal(name="op_mx") if self.accept_reg else is_mx

        def select(elems, lane, name):
            """Lane ``lane``'s element of ``elems`` (32 values)."""
            if not self.accept_reg:
                return Array(elems)[idx[lane]]
            return tree([Mux(cur_sel[lane][e], elems[e], 0) for e in range(MX_BLOCK)],
                        lambda a, b: a | b, f"{name}_sel{lane}")
        ops_x = [nibble_operands(select([item.x[e] for e in range(MX_BLOCK)], lane, "x"),
                                 xn, op_mx) for lane in range(L)]
        ops_w, ms, es = [], [], []
        for c in range(T):
            ops_w.append([nibble_operands(select([item.w[c][e] for e in range(MX_BLOCK)],
                                                 lane, f"w{c}"), wn, op_mx)
                          for lane in range(L)])
            msc, esc = scale_factors(item.x_scale, item.w_scale[c], self.mode)
            ms.append(msc)
            es.append(esc)
        # the whole pass in one assignment (see hw/dpe.py)
        m.d.comb += issue.eq(pack_value(issue.shape(), {
            "valid": adv, "null": item.null, "first": item.first, "last": item.last,
            "final": final, "pdone": final, "fresh": fresh, "sh4": sh4, "group": 0,
            "ops": {"x": ops_x, "ok": Cat(*lane_ok), "w": ops_w}, "m": ms, "e": es}))

        # the next cycle's lanes: of the accepted item's mask, or of the mask again for the next
        # nibble sweep or the rest of this sweep. Both are encoded before ``accept`` (which
        # depends on the result pipeline's stall, hence on the join) picks one.
        accept = self.i.valid & self.i.ready
        # (the first sweep multiplies the high nibbles; after sweep 0 the high ones again, then
        # the low ones: SPE_NIBBLE_PASSES)
        if self.accept_reg:
            m.d.sync += took.eq(accept)
            # (with info_in the sweeps' "at most lanes bits" flags come registered)
            fit = {n: in_info[f"{n}_fit"] if self.info_in else None for n in ("hi", "lo")}
            a_new = lanes(in_info.hi, "acc", done=fit["hi"])
            m.d.sync += [r.eq(v) for r, v in zip(a_regs, a_new)]
            m.d.sync += [r.eq(v) for r, v in zip(lo_in, lanes(in_info.lo, "lo", done=fit["lo"]))]
            m.d.sync += a_fin.eq(self.i.payload.null | (a_new[-1] & pass_is_last(0)))
            # the lanes after the current ones: the next sweep's first (after sweep 0 the
            # high nibbles' again, then the low ones'), or the rest of this sweep's. Loaded
            # unless the engine stalls: after the item's final cycle they are not used (the
            # next item's lanes are a_'s, and k_'s are only used after a cycle of the same
            # item)
            first = [Mux(c_cnt == 0, h, lo) for h, lo in zip(hi_first, lo_first)]
            # (the counts of the rest from each source, so that the counts start at flip-flops)
            counts = [Mux(took, a, k) for a, k in zip(at_least(a_regs[2 * L], "a_rest_cnt"),
                                                      at_least(k_regs[2 * L], "k_rest_cnt"))]
            nxt = [Mux(sweep_done, f, c) for f, c in zip(first, lanes(rest, "cont", counts))]
            last_after = Mux(sweep_done, pass_is_last(c_cnt + 1), last_pass)
            with m.If(pipe_stall):  # hold the current lanes (they may be the a_ registers')
                m.d.sync += [r.eq(c) for r, c in zip(k_regs, cur)]
                m.d.sync += k_fin.eq(Mux(took, a_fin, k_fin))
            with m.Else():
                m.d.sync += [r.eq(v) for r, v in zip(k_regs, nxt)]
                m.d.sync += k_fin.eq(nxt[-1] & last_after)
        else:
            in_hi = sweep_mask(self.i.payload.x, 1)
            a_idx, a_ok, a_rest = lanes_of(in_hi, "acc")
            cont_mask = Signal(MX_BLOCK)
            m.d.comb += cont_mask.eq(Mux(sweep_done, sweep_mask(item.x, c_cnt == 0), rest))
            k_idx, k_ok, k_rest = lanes_of(cont_mask, "cont")
            with m.If(accept):
                m.d.sync += [a.eq(b) for a, b in zip(idx + lane_ok, a_idx + a_ok)]
                m.d.sync += rest.eq(a_rest)
                if self.sweep_end_reg:
                    m.d.sync += sweep_done.eq(a_rest == 0)
            with m.Elif(adv & ~final):
                m.d.sync += [a.eq(b) for a, b in zip(idx + lane_ok, k_idx + k_ok)]
                m.d.sync += rest.eq(k_rest)
                if self.sweep_end_reg:
                    m.d.sync += sweep_done.eq(k_rest == 0)

        with m.If(adv):
            m.d.sync += fresh.eq(0)
            with m.If(~final & sweep_done):
                m.d.sync += set_pass(c_cnt + 1)

        with m.If(accept):
            m.d.sync += [item.eq(self.i.payload), busy.eq(1), fresh.eq(1), *set_pass(0)]
            if self.accept_reg:
                m.d.sync += op_mx.eq(is_mx)
        with m.Elif(adv & final):
            m.d.sync += busy.eq(0)
        return m

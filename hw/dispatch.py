"""Dispatcher of a ``balance`` top: one fetched item stream to a free engine, the cheaper one
for the item when both are free."""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (ACT_COUNTS_LAYOUT, MX_BLOCK, VECTOR_CHOICES, Mode, act_counts, check_bool,
                     check_choice, check_int, item_layout, mx_combos, pack_value, validating)
from .dpe import dpe_item_cycles
from .spe import SPE_INFO_LAYOUT, SPE_NIBBLE_PASSES, spe_input_info

__all__ = ["Dispatcher", "COST_BITS", "choose_spe", "below_table", "below_bounds"]

#: Bits of an item's cost and of an engine's remaining cycles (the largest DPE item: 256
#: column groups x 32 MXINT8 passes).
COST_BITS = 14

#: The item fields the head passes on to an engine unchanged (``first`` is the dispatcher's).
OPERANDS = ("x", "x_scale", "w", "w_scale", "ncols", "pref", "null", "last")


def choose_spe(*, dpe_free, spe_free, dpe_cost, spe_cost, pref):
    """The dispatch rule (the RTL's and the cycle model's): True for the SPE, False for the
    DPE, None to wait. An item goes to a free engine (one that can take an item now or in this
    cycle, the last of its current item); when both are free, to the one with the smaller cost
    for it (the item's map bit ``pref`` on a tie)."""
    if dpe_free and spe_free:
        return spe_cost < dpe_cost or (spe_cost == dpe_cost and bool(pref))
    if dpe_free or spe_free:
        return bool(spe_free)
    return None


#: Entries of a table indexed by a count of :data:`ACT_COUNTS_LAYOUT` (0..32, six bits).
COUNT_ENTRIES = 1 << MX_BLOCK.bit_length()
#: ``choice_regs``' "SPE cheaper" as flags per DPE cost value up to this many values (column
#: group counts), else as the comparison of the costs.
MAX_COST_FLAGS = 16


def below_table(cost, limit):
    """The flags ``cost(n) < limit``, a table indexed by a count ``n``."""
    return [int(n <= MX_BLOCK and cost(n) < limit) for n in range(COUNT_ENTRIES)]


def below_bounds(cost, limit):
    """For a cost of two counts ``cost(hi, lo)``, non-decreasing in ``hi``: the bounds ``b``
    with ``cost(hi, lo) < limit`` exactly when ``hi < b``, a table indexed by ``lo``, so that
    the flag is one comparison after one table (no adder)."""
    bounds = []
    for lo in range(COUNT_ENTRIES):
        below = [lo <= MX_BLOCK and cost(hi, lo) < limit for hi in range(MX_BLOCK + 1)]
        assert below == sorted(below, reverse=True), "cost not monotonic in hi"
        bounds.append(sum(below))
    return bounds


class Dispatcher(wiring.Component):
    """Sends each work item of a single stream to the DPE or the SPE (a ``balance`` top).

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector, dpe_cols, tile : as :class:`hw.dpe.DPE`; spe_lanes : as :class:`hw.spe.SPE`
    col_skip, nibble_skip : the engines' options (they set the engines' item costs)
    head_reg : bool
        A register stage at the input (``timing_regs``): the head item and its costs are
        registered, so the operands and the cost logic stay off the choice and ``i.ready``
        path (docs/hardware.md 4.7); which engine is cheaper is compared from the registered
        costs. Items reach the engines one cycle later; the stage takes an item whenever it
        is empty or its item leaves (``i.ready = ~held | accepted``), so they still stream
        back to back.
    w_late : bool
        With ``head_reg``: the input's weight fields (``w``, ``w_scale``) arrive in the cycle
        after the handshake and stay until the next one (``OperandFetch(w_late=True)``: the
        weight memory's read port, or with the fetch's ``free_read`` its copy of the word), so
        the head takes them from ``i`` instead of a register of its own; no cycle changes.
    choice_regs : bool
        With ``head_reg``: the choice's inputs as registers, so that it starts one or two LUT
        levels from flip-flops (the dispatcher is on the handshake chain from the engines to
        the fetch stage's block RAM enables): whether the SPE is the cheaper engine for the
        head item, compared as the item loads (one flag per value of the DPE's cost, each a
        table of the input's counts or a table and one comparison: no adder after the
        counts), and each engine's *free* flag, set with its remaining-cycles counter (from
        the loaded cost's "at most 1", or before a decrement from "at most 2", itself a
        register set with the counter: the loaded cost's "at most 2", or before a decrement
        "at most 3"). Same cycles.
    predict_ready : bool
        With ``choice_regs``: each engine's ``ready`` is taken from the dispatcher's own
        registers and the engine's ``busy`` output (``d_adv`` / ``s_adv``) instead of from the
        engine's ``i.ready``. An engine is ready when idle (remaining cycles 0, a register
        ``idle_*`` set with the counter) or in its last issue cycle (``free``) and advancing
        (not stalled): exactly the engines' ``~busy | (final & ~stall)`` while the counters
        track their issue cycles (the rule below). The handshake chain to the fetch stage
        then starts at the dispatcher's flip-flops and the engines' ``busy`` (a LUT after
        their stall register), not at the engines' issue-stage logic. The choice's terms
        other than "the SPE is cheaper" (whether the head wants the SPE regardless, whether
        both engines are free, whether each engine is open to it) are then registers too,
        loaded with their next values. Same cycles.
    counts_in : bool
        The input item's non-zero counts (:func:`hw.common.act_counts`) arrive on
        ``i_counts``, registered by the fetch stage (``OperandFetch(counts_vector=vector)``),
        instead of being counted here: the SPE's cost then starts at registers.
    spe_info : bool
        With ``head_reg``: what the SPE needs of the head item's activations (its sweep masks
        and count of zeros, :func:`hw.spe.spe_input_info`) is registered with it and goes to
        the SPE beside ``s`` on ``s_info`` (``SPE(info_in=True)``), so that the SPE's lane
        selection of its input starts at registers. Same cycles.

    Members
    -------
    mode : In(Mode)
        The layer's arithmetic mode.
    i : In(stream.Signature(item_layout(tile)))
        Every item of every unit, in walk order (``first`` / ``last`` delimit a unit), from
        the one operand fetch.
    i_counts : In(ACT_COUNTS_LAYOUT) (with ``counts_in`` only)
        The counts of ``i.payload.x``, valid with it.
    s_info : Out(hw.spe.SPE_INFO_LAYOUT) (with ``spe_info`` only)
        :func:`hw.spe.spe_input_info` of ``s.payload.x``, valid with it (empty masks for a
        null close).
    d, s : Out(stream.Signature(item_layout(tile)))
        The DPE's and the SPE's items: each engine gets exactly one ``first``..``last`` run per
        unit, in unit order.
    d_adv, s_adv : In(1)
        The engines' ``busy`` outputs (high in each cycle an engine processes). With
        ``predict_ready`` the engines' ``ready`` is not read.

    Rule
    ----
    The dispatcher counts each engine's remaining issue cycles ``r`` (set to the item's cost on
    the engine's handshake, -1 per processing cycle); an engine is *free* when ``r <= 1`` (idle,
    or in the final cycle of its item, when it takes the next one). Each item's cost is known
    at the head: the DPE's from the mode and ``ncols`` (:func:`hw.dpe.dpe_item_cycles`), the
    SPE's from the item's non-zero elements (:func:`hw.spe.spe_item_cycles`). The head item
    goes to a free engine, to the cheaper one when both are free (the map bit ``pref`` breaks a
    tie), and waits while neither is (:func:`choose_spe`): work-conserving, so the DPE, 15 %
    busy in the paper's organisation, takes whatever the SPE cannot take at once. The choice
    is made in the first cycle the item is offered and kept until the engine takes it (a
    stalled engine is still free by its count; a stream's payload does not change while it
    waits).

    Units: ``first`` is set on an engine's first item of the unit; the unit's last item goes
    with ``last`` to its engine, and the other engine then gets a ``null`` item with ``last``
    (``first`` too if it had no item in the unit; its operands 0, constant while it waits) so
    that both deliver one result per unit. Until that engine takes it, the next items may go
    to the first engine only, and not the next unit's last item.

    Handshakes: ``i.ready`` never depends on ``i.valid``, ``d.valid`` / ``s.valid`` never on
    ``d.ready`` / ``s.ready``. Without ``head_reg`` no register is on the item path: an item
    can reach an engine in the cycle it leaves the fetch stage.
    """

    def __init__(self, *, vector, dpe_cols, spe_lanes, tile, col_skip=False,
                 nibble_skip=False, head_reg=False, w_late=False, choice_regs=False,
                 counts_in=False, spe_info=False, predict_ready=False):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.dpe_cols = check_int("dpe_cols", dpe_cols, 1, 64)
            self.spe_lanes = check_int("spe_lanes", spe_lanes, 1, MX_BLOCK)
            self.tile = check_int("tile", tile, dpe_cols, 256)
            self.col_skip = check_bool("col_skip", col_skip)
            self.nibble_skip = check_bool("nibble_skip", nibble_skip)
            self.head_reg = check_bool("head_reg", head_reg)
            self.w_late = check_bool("w_late", w_late)
            self.choice_regs = check_bool("choice_regs", choice_regs)
            self.counts_in = check_bool("counts_in", counts_in)
            self.spe_info = check_bool("spe_info", spe_info)
            self.predict_ready = check_bool("predict_ready", predict_ready)
            if predict_ready and not choice_regs:
                raise ValueError("predict_ready needs choice_regs: the prediction starts at "
                                 "the engines' registered free flags")
            if spe_info and not head_reg:
                raise ValueError("spe_info needs head_reg: the SPE's information is registered "
                                 "with the head item")
            if w_late and not head_reg:
                raise ValueError("w_late needs head_reg: the weight fields arrive a cycle "
                                 "after the handshake, when the item is in the head register")
            if choice_regs and not head_reg:
                raise ValueError("choice_regs needs head_reg: the choice's inputs are "
                                 "registered with the head item")
        super().__init__({
            "mode": In(Mode),
            "i": In(stream.Signature(item_layout(tile))),
            "d": Out(stream.Signature(item_layout(tile))),
            "s": Out(stream.Signature(item_layout(tile))),
            "d_adv": In(1),
            "s_adv": In(1),
            **({"i_counts": In(ACT_COUNTS_LAYOUT)} if counts_in else {}),
            **({"s_info": Out(SPE_INFO_LAYOUT)} if spe_info else {}),
        })

    def elaborate(self, platform):
        m = Module()
        V, N, L, T = self.vector, self.dpe_cols, self.spe_lanes, self.tile
        is_mx = self.mode == Mode.MXINT8
        item_in = self.i.payload

        # ---- the input item's costs (and which engine is cheaper for it)
        def table(values, index, name):  # (at least one bit: a table of zeros is a flag)
            sig = Signal(range(max(*values, 1) + 1), name=name)
            m.d.comb += sig.eq(Array(values)[index])
            return sig

        ncols = range(T + 1)
        d_int4 = [dpe_item_cycles(mode=Mode.INT4, null=False, vector=V, cols=N, tile=T,
                                  ncols=n if self.col_skip else None) for n in ncols]
        d_mx = [c * len(mx_combos(V)) for c in d_int4]
        nc = Signal(range(T + 1))
        m.d.comb += nc.eq(Mux(item_in.ncols > T, T, item_in.ncols))
        d_cost = Mux(item_in.null, 1,
                     Mux(is_mx, table(d_mx, nc, "d_mx"), table(d_int4, nc, "d_i4")))

        sweep = [max(1, -(-n // L)) for n in range(MX_BLOCK + 1)]
        counts = self.i_counts if self.counts_in else act_counts(m, item_in.x, V)
        nnz = Mux(is_mx, counts.all, counts.vec)
        if self.nibble_skip:
            s_mx = 2 * table(sweep, counts.hi, "sw_hi") + 2 * table(sweep, counts.lo, "sw_lo")
        else:
            s_mx = len(SPE_NIBBLE_PASSES) * table(sweep, nnz, "sw_mx")
        s_cost = Mux(item_in.null, 1, Mux(is_mx, s_mx, table(sweep, nnz, "sw")))
        in_costs = {"d": Signal(COST_BITS, name="in_cost_d"),
                    "s": Signal(COST_BITS, name="in_cost_s")}
        m.d.comb += [in_costs["d"].eq(d_cost), in_costs["s"].eq(s_cost)]
        # cost <= k, from the tables' indices (no adder or comparison after the tables): an
        # MXINT8 SPE item runs four nibble passes of at least one sweep
        s_mx_least = (4 if self.nibble_skip else len(SPE_NIBBLE_PASSES)) * min(sweep)

        def cost_at_most(k):
            assert s_mx_least > k
            return {"d": item_in.null | Mux(is_mx,
                                            table([int(c <= k) for c in d_mx], nc, f"d_mx_le{k}"),
                                            table([int(c <= k) for c in d_int4], nc,
                                                  f"d_i4_le{k}")),
                    "s": item_in.null | (~is_mx & table([int(c <= k) for c in sweep], nnz,
                                                        f"sw_le{k}"))}

        def spe_cheaper(c, pref):  # the SPE is the cheaper engine (pref on a tie)
            return (c["s"] < c["d"]) | ((c["s"] == c["d"]) & pref)

        def spe_cheaper_in():
            """:func:`spe_cheaper` of the input item without its costs' adders: the DPE's cost
            takes one value ``d`` per column-group count, so the flag is "SPE cost < d" (or
            "< d + 1" with ``pref``) for the value selected by the DPE cost's index; each limit's
            flag is a table of a count (:func:`below_table`), or with ``nibble_skip`` in MXINT8
            the high nibbles' count compared with a table of the low ones'
            (:func:`below_bounds`)."""
            def below(mode, limit):
                name = f"{mode.name.lower()}_below{limit}"
                if mode == Mode.MXINT8 and self.nibble_skip:
                    bounds = below_bounds(lambda hi, lo: 2 * (sweep[hi] + sweep[lo]), limit)
                    return counts.hi < table(bounds, counts.lo, name)
                if mode == Mode.MXINT8:
                    flags = below_table(lambda n: len(SPE_NIBBLE_PASSES) * sweep[n], limit)
                    return table(flags, counts.all, name)
                return table(below_table(lambda n: sweep[n], limit), counts.vec, name)
            if len(set(d_mx)) > MAX_COST_FLAGS:  # (many column groups: the costs' comparison)
                return spe_cheaper(in_costs, item_in.pref)
            per_mode = {}
            for mode, d_tab in ((Mode.INT4, d_int4), (Mode.MXINT8, d_mx)):
                limits = sorted({*d_tab, *(d + 1 for d in d_tab)})
                flags = {limit: below(mode, limit) for limit in limits}
                per_mode[mode] = Array(Mux(item_in.pref, flags[d + 1], flags[d])
                                       for d in d_tab)[nc]
            return Mux(item_in.null, item_in.pref,
                       Mux(is_mx, per_mode[Mode.MXINT8], per_mode[Mode.INT4]))

        # ---- the head: the input itself, or (head_reg) a register stage holding it
        head_ready = Signal()  # the head item leaves in this cycle
        if self.head_reg:
            head_valid = Signal(name="head_valid")
            head = Signal(item_layout(T), name="head")
            costs = {e: Signal(COST_BITS, name=f"cost_{e}") for e in "ds"}
            load = ~head_valid | head_ready
            m.d.comb += self.i.ready.eq(load)
            late = ("w", "w_scale") if self.w_late else ()
            if self.spe_info:  # (computed outside the If: no load in its logic)
                info_in = spe_input_info(m, item_in.x, self.mode, vector=V, lanes=L,
                                         nibble_skip=self.nibble_skip, nnz=nnz,
                                         nibble_counts=(counts.hi, counts.lo))
                head_info = Signal(SPE_INFO_LAYOUT, name="head_spe_info")
                with m.If(load):
                    m.d.sync += head_info.eq(info_in)
            with m.If(load):
                m.d.sync += [head_valid.eq(self.i.valid),
                             *(head[f].eq(item_in[f]) for f in item_in.shape().members
                               if f not in late),
                             *(costs[e].eq(in_costs[e]) for e in "ds")]
            operands = {f: item_in[f] if f in late else head[f] for f in OPERANDS}
            if self.choice_regs:  # registered as the item loads (computed outside the If)
                cheaper_r = Signal(name="cheaper_s_r")
                cheaper_in = spe_cheaper_in()
                in_le = {k: cost_at_most(k) for k in (1, 2)}
                cost_le = {k: {e: Signal(name=f"cost_le{k}_{e}") for e in "ds"} for k in (1, 2)}
                with m.If(load):
                    m.d.sync += cheaper_r.eq(cheaper_in)
                    m.d.sync += [cost_le[k][e].eq(in_le[k][e]) for k in (1, 2) for e in "ds"]
        else:
            head_valid, head, costs = self.i.valid, item_in, in_costs
            operands = {f: head[f] for f in OPERANDS}
            m.d.comb += self.i.ready.eq(head_ready)
        # the SPE is the cheaper engine for the head item (pref on a tie); with head_reg from
        # the registered costs, in parallel with the engines' free flags
        cheaper_s = Signal(name="cheaper_s")
        m.d.comb += cheaper_s.eq(cheaper_r if self.choice_regs else spe_cheaper(costs, head.pref))

        # ---- engine state: remaining cycles, "has an item of this unit", free (rem <= 1)
        rem = {e: Signal(COST_BITS, name=f"rem_{e}") for e in "ds"}
        got = {e: Signal(name=f"got_{e}") for e in "ds"}
        if self.choice_regs:  # set with rem (rem is 0 after reset: free); at_most_2 is
            # rem <= 2, free's next value while counting down
            free = {e: Signal(name=f"free_{e}", init=1) for e in "ds"}
            at_most_2 = {e: Signal(name=f"rem_le2_{e}", init=1) for e in "ds"}
        else:
            free = {e: rem[e] <= 1 for e in "ds"}
        adv = {"d": self.d_adv, "s": self.s_adv}
        out = {"d": self.d, "s": self.s}
        if self.predict_ready:  # idle (rem == 0), or the last cycle (rem == 1) and advancing
            idle = {e: Signal(name=f"idle_{e}", init=1) for e in "ds"}
            ready = {e: idle[e] | (free[e] & adv[e]) for e in "ds"}
        else:
            ready = {e: out[e].ready for e in "ds"}

        # a unit's close owed to one engine (``close_s``: the SPE) after the other took its last
        closing, close_s = Signal(), Signal()
        hold, hold_s = Signal(), Signal()

        def routing(hold, hold_s, free_d, free_s, closing, close_s, last):
            """The choice's terms apart from ``cheaper_s``: the head item wants the SPE if
            ``spe | (both & cheaper_s)``; it may go to engine ``e`` in this cycle if it wants
            it and ``open[e]``. While a close is owed, items go to the other engine only, and
            no unit's last item (whose own close would be the second one owed)."""
            open_ = (hold | free_d | free_s) & (~closing | ~last)
            return {"spe": Mux(hold, hold_s, ~free_d & free_s), "both": ~hold & free_d & free_s,
                    "open_s": ~(closing & close_s) & open_,
                    "open_d": ~(closing & ~close_s) & open_}
        terms = routing(hold, hold_s, free["d"], free["s"], closing, close_s, head.last)
        if self.predict_ready:
            # the terms as registers, loaded with their next values (below), so that the
            # handshake chain starts one or two LUT levels from flip-flops
            term_regs = {n: Signal(name=f"route_{n}", init=int(v))
                         for n, v in (("spe", 0), ("both", 1), ("open_s", 1), ("open_d", 1))}
            terms = term_regs
        want_s = Signal()
        m.d.comb += want_s.eq(terms["spe"] | (terms["both"] & cheaper_s))
        to = {"s": want_s & terms["open_s"], "d": ~want_s & terms["open_d"]}
        owed = {"s": closing & close_s, "d": closing & ~close_s}
        taken = {}
        for e, o in out.items():
            item = pack_value(o.payload.shape(), {
                **operands,
                "first": ~got[e]})
            close = pack_value(o.payload.shape(), {  # constant while it waits
                "x": [0] * MX_BLOCK, "x_scale": 0, "w": [[0] * MX_BLOCK] * T,
                "w_scale": [0] * T, "ncols": 0, "pref": 0, "null": 1, "first": ~got[e],
                "last": 1})
            m.d.comb += [o.valid.eq(owed[e] | (head_valid & to[e])),
                         o.payload.eq(Mux(owed[e], close, item))]
            taken[e] = Signal(name=f"taken_{e}")
            m.d.comb += taken[e].eq(o.valid & ready[e])
        if self.spe_info:
            empty = pack_value(SPE_INFO_LAYOUT, {"hi": 0, "lo": 0, "zeros": 0, "hi_fit": 1,
                                                 "lo_fit": 1})  # the null close's
            m.d.comb += self.s_info.eq(Mux(owed["s"], empty, head_info))
        m.d.comb += head_ready.eq(Mux(want_s, ready["s"] & to["s"], ready["d"] & to["d"]))
        accept = head_valid & head_ready

        # the next values of the control registers
        free_next = {}
        for e in "ds":
            with m.If(taken[e]):
                m.d.sync += rem[e].eq(Mux(owed[e], 1, costs[e]))
                m.d.sync += got[e].eq(Mux(owed[e], 0, ~head.last))
                if self.predict_ready:  # (a cost is at least 1)
                    m.d.sync += idle[e].eq(0)
            with m.Elif(adv[e] & (rem[e] != 0)):
                m.d.sync += rem[e].eq(rem[e] - 1)
                if self.predict_ready:
                    m.d.sync += idle[e].eq(rem[e] == 1)
            if self.choice_regs:
                # (with predict_ready, rem != 0 is the idle flag's complement)
                counting = adv[e] & (~idle[e] if self.predict_ready else rem[e] != 0)
                free_next[e] = Mux(taken[e], owed[e] | cost_le[1][e],
                                   Mux(counting, at_most_2[e], free[e]))
                m.d.sync += free[e].eq(free_next[e])
                # (counting: rem - 1 <= 2, no bit of rem above its lowest two)
                m.d.sync += at_most_2[e].eq(Mux(taken[e], owed[e] | cost_le[2][e],
                                                Mux(counting, rem[e][2:] == 0, at_most_2[e])))
        closes = accept & head.last
        closing_next = Mux(closes, 1,
                           Mux(taken["s"] & owed["s"] | taken["d"] & owed["d"], 0, closing))
        close_s_next = Mux(closes, ~want_s, close_s)
        holds = ~accept & head_valid & (to["s"] | to["d"])
        hold_next = Mux(accept, 0, Mux(holds, 1, hold))
        hold_s_next = Mux(holds, want_s, hold_s)
        m.d.sync += [closing.eq(closing_next), close_s.eq(close_s_next), hold.eq(hold_next),
                     hold_s.eq(hold_s_next)]
        if self.predict_ready:
            last_next = Mux(load, item_in.last, head.last)
            nxt = routing(hold_next, hold_s_next, free_next["d"], free_next["s"], closing_next,
                          close_s_next, last_next)
            m.d.sync += [term_regs[n].eq(v) for n, v in nxt.items()]
        return m

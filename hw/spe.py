"""Sparse PE array (SPE): ``lanes`` non-zero activations x ``cols`` output channels per cycle."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (ACC_FRAC_BITS, ACC_WIDTH, MANT_WIDTH, MX_BLOCK, SAT_WIDTH,
                     VECTOR_CHOICES, Mode, check_choice, check_int, decode_scale, item_layout,
                     nibble_operands, nonzero_mask, popcount, result_layout, term_unit,
                     validating)

__all__ = ["SPE", "SPE_LATENCY", "SPE_NIBBLE_PASSES", "spe_item_cycles"]

#: Cycles from the last processing cycle of a ``last`` item to its result on ``o``.
SPE_LATENCY = 1
#: The (x_nibble, w_nibble, shift) products of an 8x8 multiply, in issue order (MXINT8 mode).
SPE_NIBBLE_PASSES = ((1, 1, 8), (1, 0, 4), (0, 1, 4), (0, 0, 0))


def spe_item_cycles(x, *, mode, null, vector=16, lanes=4):
    """Processing cycles of one SPE item with activation elements ``x`` (the cycle model).

    null item: 1. INT4: ``max(1, ceil(nnz / lanes))`` with ``nnz`` the non-zero elements among
    the first ``vector``. MXINT8: ``4 * max(1, ceil(nnz / lanes))`` over the 32 elements of the
    block (one sweep over the non-zeros per nibble product).
    """
    if null:
        return 1
    mx = Mode(mode) == Mode.MXINT8
    count = MX_BLOCK if mx else vector
    nnz = sum(1 for v in list(x)[:count] if v != 0)
    sweep = max(1, -(-nnz // lanes))
    return len(SPE_NIBBLE_PASSES) * sweep if mx else sweep


class SPE(wiring.Component):
    """Zero-skipping MAC array: per cycle up to ``lanes`` non-zero activations x ``cols``
    output channels.

    Parameters (keyword-only)
    -------------------------
    vector : int, one of 4, 8, 16 (default 16)
        Elements of an INT4 vector (MXINT8 blocks always have 32).
    lanes : int, 1..32 (default 4)
        Non-zero activations consumed per cycle.
    cols : int, 1..256 (default 32)
        Output channels per item and per cycle (``lanes * cols`` multipliers; the default
        4 x 32 = 128 matches the default DPE's 16 x 8).

    Members
    -------
    mode, i, o, busy, macs
        As :class:`hw.dpe.DPE` (``tile = cols``); ``macs`` is ``active lanes * cols``.
    skipped : Out(range(33))
        In the final cycle of a non-null item: its zero activation elements (``vector - nnz``
        in INT4 mode, ``32 - nnz`` in MXINT8 mode), each skipped for every column.

    Operation and timing
    --------------------
    On its handshake an item is registered together with the mask of its non-zero
    activation elements. Each cycle the ``lanes`` lowest set bits of the remaining mask are
    taken (priority encoders), each lane multiplexes its activation and the matching weight of
    every column, and the products are added into an exact per-column integer ``P``; when the
    mask is exhausted the sweep ends (an all-zero vector still takes one cycle). MXINT8 runs
    four sweeps, one per nibble product. In the item's last cycle ``P`` goes through the term
    unit (RNE, clamp) into the accumulators. Cycles per item: :func:`spe_item_cycles`. Items
    stream back to back (the next is accepted in the last cycle of the current one); a result
    is valid :data:`SPE_LATENCY` cycle after the last cycle of a ``last`` item.

    Backpressure
    ------------
    As :class:`hw.dpe.DPE`: a full ``o`` register stalls the final cycle of a ``last`` item.
    """

    def __init__(self, *, vector=16, lanes=4, cols=32):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.lanes = check_int("lanes", lanes, 1, MX_BLOCK)
            self.cols = check_int("cols", cols, 1, 256)
        super().__init__({
            "mode": In(Mode),
            "i": In(stream.Signature(item_layout(cols))),
            "o": Out(stream.Signature(result_layout(cols))),
            "busy": Out(1),
            "macs": Out(range(lanes * cols + 1)),
            "skipped": Out(range(MX_BLOCK + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        V, L, T = self.vector, self.lanes, self.cols
        npass = len(SPE_NIBBLE_PASSES)
        is_mx = self.mode == Mode.MXINT8

        def mask_of(x):
            return Mux(is_mx, nonzero_mask(x, MX_BLOCK), nonzero_mask(x, V))

        item = Signal(item_layout(T))
        busy = Signal()
        fresh = Signal()  # first processing cycle of the item
        c_cnt = Signal(range(npass))
        rem = Signal(MX_BLOCK)
        p_reg = [Signal(signed(MANT_WIDTH + 2), name=f"p{c}") for c in range(T)]
        acc = [Signal(signed(ACC_WIDTH), name=f"acc{c}") for c in range(T)]
        sat = Signal(SAT_WIDTH)

        # lane selection: the L lowest set bits of the remaining mask
        r = rem
        idx, lane_ok = [], []
        for lane in range(L):
            sel = Signal(range(MX_BLOCK), name=f"idx{lane}")
            for i in reversed(range(MX_BLOCK)):
                with m.If(r[i]):
                    m.d.comb += sel.eq(i)
            ok = Signal(name=f"lane_ok{lane}")
            m.d.comb += ok.eq(r != 0)
            idx.append(sel)
            lane_ok.append(ok)
            nxt = Signal(MX_BLOCK, name=f"rem{lane + 1}")
            m.d.comb += nxt.eq(r & (r - 1))
            r = nxt
        sweep_done = r == 0

        last_pass = Mux(is_mx, c_cnt == npass - 1, 1)
        final = busy & (item.null | (sweep_done & last_pass))
        stall = final & item.last & self.o.valid & ~self.o.ready
        adv = busy & ~stall
        active = popcount(m, Cat(*lane_ok), "active")
        m.d.comb += [
            self.i.ready.eq(~busy | (final & ~stall)),
            self.busy.eq(adv),
            self.macs.eq(Mux(adv & ~item.null, active * T, 0)),
            self.skipped.eq(Mux(adv & final & ~item.null,
                                Mux(is_mx, MX_BLOCK, V) - popcount(m, mask_of(item.x), "nnz"), 0)),
        ]

        xn, wn, sh = Signal(), Signal(), Signal(range(9))
        with m.Switch(c_cnt):
            for k, (a, b, s) in enumerate(SPE_NIBBLE_PASSES):
                with m.Case(k):
                    m.d.comb += [xn.eq(a), wn.eq(b), sh.eq(Mux(is_mx, s, 0))]
        x_arr = Array([item.x[e] for e in range(MX_BLOCK)])
        x_ops = [nibble_operands(x_arr[idx[lane]], xn, is_mx) for lane in range(L)]
        mx_, ex_ = decode_scale(item.x_scale, self.mode)

        terms, sats = [], []
        for c in range(T):
            w_arr = Array([item.w[c][e] for e in range(MX_BLOCK)])
            prods = [Mux(lane_ok[lane], x_ops[lane] * nibble_operands(w_arr[idx[lane]], wn,
                                                                      is_mx), 0)
                     for lane in range(L)]
            s = prods[0]
            for p in prods[1:]:
                s = s + p
            s_sig = Signal(signed(16), name=f"s{c}")
            m.d.comb += s_sig.eq(s)
            p_new = Signal(signed(MANT_WIDTH + 2), name=f"pnew{c}")
            m.d.comb += p_new.eq(Mux(fresh, 0, p_reg[c]) + (s_sig << sh))
            with m.If(adv):
                m.d.sync += p_reg[c].eq(p_new)
            mw_, ew_ = decode_scale(item.w_scale[c], self.mode)
            mant = Signal(signed(MANT_WIDTH), name=f"mant{c}")
            m.d.comb += mant.eq(p_new * (mx_ * mw_))
            term, tsat = term_unit(m, mant, ex_ + ew_ + ACC_FRAC_BITS, name=f"term{c}")
            terms.append(term)
            sats.append(tsat)

        done = adv & final & ~item.null
        acc_next = [Signal(signed(ACC_WIDTH), name=f"acc_next{c}") for c in range(T)]
        for c in range(T):
            base = Mux(item.first, 0, acc[c])
            with m.If(adv & final & item.first & item.null):
                m.d.comb += acc_next[c].eq(0)
            with m.Elif(done):
                m.d.comb += acc_next[c].eq(base + terms[c])
            with m.Else():
                m.d.comb += acc_next[c].eq(acc[c])
        sat_next = Signal(SAT_WIDTH)
        sat_sum = popcount(m, Cat(*sats), "satcnt")
        m.d.comb += sat_next.eq(Mux(done, Mux(item.first, 0, sat) + sat_sum,
                                    Mux(adv & final & item.first, 0, sat)))

        with m.If(adv):
            m.d.sync += [a.eq(n) for a, n in zip(acc, acc_next)]
            m.d.sync += [sat.eq(sat_next), fresh.eq(0)]
            with m.If(~final):
                with m.If(sweep_done):
                    m.d.sync += [c_cnt.eq(c_cnt + 1), rem.eq(mask_of(item.x))]
                with m.Else():
                    m.d.sync += rem.eq(r)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(adv & final & item.last):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [self.o.payload.acc[c].eq(acc_next[c]) for c in range(T)]
            m.d.sync += self.o.payload.sat.eq(sat_next)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [item.eq(self.i.payload), busy.eq(1), fresh.eq(1), c_cnt.eq(0),
                         rem.eq(mask_of(self.i.payload.x))]
        with m.Elif(adv & final):
            m.d.sync += busy.eq(0)
        return m

"""Dense PE array (DPE): ``vector`` x ``cols`` 5-bit multipliers, exact term accumulation."""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .common import (MX_BLOCK, VECTOR_CHOICES, Mode, check_bool, check_choice, check_int,
                     item_layout, mx_combos, nibble_operands, result_layout, validating,
                     pack_value)
from .engine import ENGINE_STAGES, engine_stages, lane_products, result_pipeline, scale_factors

__all__ = ["DPE", "DPE_LATENCY", "dpe_item_cycles"]

#: Cycles from the last processing cycle of a ``last`` item to its result on ``o`` (the result
#: pipeline of :mod:`hw.engine`, then the result register), without the product register;
#: ``DPE(...).latency`` is the instance's.
DPE_LATENCY = ENGINE_STAGES + 1


def dpe_item_cycles(*, mode, null, vector, cols, tile, ncols=None):
    """Processing cycles of one DPE item (the cycle model of :class:`DPE`).

    null item: 1. INT4: ``G`` (one pass per column group). MXINT8: ``G * (32 / vector) * 4``
    (per column group: every slice of ``vector`` elements times the four nibble products of an
    8x8 multiply). ``G = tile / cols``, or with ``ncols`` (a ``col_skip`` DPE: the item's unit
    has ``ncols`` output channels) ``ceil(ncols / cols)``.
    """
    if null:
        return 1
    groups = tile // cols if ncols is None else max(1, -(-ncols // cols))
    if Mode(mode) == Mode.INT4:
        return groups
    return groups * len(mx_combos(vector))


class DPE(wiring.Component):
    """Dense vector MAC array: per cycle ``vector`` activation elements x ``cols`` output channels.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Lanes: elements of an INT4 vector; an MXINT8 block of 32 takes ``32 / vector`` slices.
    cols : int, 1..64
        Output channels computed per cycle.
    tile : int, a multiple of ``cols``, ``cols``..256
        Output channels per work item (and per result); ``tile / cols`` column groups.
    col_skip : bool
        Issue only the column groups that hold the unit's ``ncols`` output channels (the
        accumulators of the other groups keep stale values: the serializer never reads them).
    product_reg : bool
        A register between the multipliers and the column sums (the ``timing_regs``
        configuration; :func:`hw.engine.result_pipeline`): one cycle more of latency
        (``latency``), the same issue cycles.
    result_queue : bool
        A second result register behind ``o`` (``timing_regs``;
        :func:`hw.engine.result_pipeline`): the engine stalls only when both hold a result,
        so ``o.ready`` reaches neither its stall nor ``i.ready``.
    mant_regs : bool
        The mantissa multiplier's operand and product registers (the ``dsp_regs``
        configuration; :func:`hw.engine.result_pipeline`, :mod:`hw.dsp`): two cycles more of
        latency, the same issue cycles.

    Members
    -------
    mode : In(Mode)
        Arithmetic mode; must be stable while items are in flight.
    i : In(stream.Signature(item_layout(tile)))
        Work items (see :func:`hw.common.item_layout`): one (tap, input vector) x ``tile``
        output channels; ``first`` / ``last`` delimit a unit (one output pixel x one tile).
    o : Out(stream.Signature(result_layout(tile)))
        One result per unit: ``acc[c]`` = exact sum of the unit's terms (docs/numerics.md 4,
        grid 2**-24, 64-bit) and ``sat`` = number of terms clamped to +-TERM_LIMIT.
    busy : Out(1)
        High in every processing cycle.
    macs : Out(range(vector * cols + 1))
        Multiplier operations performed this cycle (``vector * cols`` in a non-null pass).

    Operation and timing
    --------------------
    An item is registered on its handshake and issued in the next :func:`dpe_item_cycles`
    cycles, one pass per cycle: column group ``g`` outer; in MXINT8 mode the slices and nibble
    products of the block inner. Each pass's operands enter the result pipeline of
    :mod:`hw.engine` (:func:`hw.engine.engine_stages` registers; the multipliers and the
    ``cols`` column sums follow its operand register, stage 0), which combines a group's
    passes exactly into ``P`` before the term conversion (RNE per term, so MXINT8 rounds
    exactly as the reference) and accumulates. A ``null`` item takes one cycle. The next item
    is accepted in the last issue cycle of the current one, so items stream back to back with
    no bubble. The result of a ``last`` item is valid on ``o`` ``latency`` cycles after its
    last issue cycle (:data:`DPE_LATENCY` without ``product_reg``).

    Backpressure
    ------------
    ``o`` is a single register. If it still holds an unaccepted result when the pipeline's
    last stage holds the final pass of a ``last`` item, the whole engine (pipeline and issue
    stage, ``i.ready`` low) stalls until ``o.ready``. ``i.ready`` never depends on ``i.valid``;
    ``o.valid`` never on ``o.ready``.
    """

    def __init__(self, *, vector, cols, tile, col_skip=False, product_reg=False,
                 result_queue=False, mant_regs=False):
        with validating(self):
            self.col_skip = check_bool("col_skip", col_skip)
            self.product_reg = check_bool("product_reg", product_reg)
            self.result_queue = check_bool("result_queue", result_queue)
            self.mant_regs = check_bool("mant_regs", mant_regs)
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.cols = check_int("cols", cols, 1, 64)
            self.tile = check_int("tile", tile, cols, 256)
            if tile % cols:
                raise ValueError(f"tile must be a multiple of cols={cols}, got {tile!r}")
        super().__init__({
            "mode": In(Mode),
            "i": In(stream.Signature(item_layout(tile))),
            "o": Out(stream.Signature(result_layout(tile))),
            "busy": Out(1),
            "macs": Out(range(vector * cols + 1)),
        })
        self.latency = engine_stages(self.product_reg, self.mant_regs) + 1

    def elaborate(self, platform):
        m = Module()
        V, N, T = self.vector, self.cols, self.tile
        groups = T // N
        combos = mx_combos(V)
        is_mx = self.mode == Mode.MXINT8

        # no reset (read only while busy): the flip-flops' set/reset input, which the
        # domain reset would take, then zeroes the operands of the dispatcher's null item
        # as it loads, instead of a LUT per bit (docs/hardware.md section 7)
        item = Signal(item_layout(T), reset_less=True)
        busy = Signal()
        g_cnt = Signal(range(max(groups, 2)))  # never 0 bits (Verilator rejects [-1:0])
        c_cnt = Signal(range(len(combos)))
        # a pass's operands: one activation operand per lane, one weight operand per column
        # and lane; stage 0 of the result pipeline registers them before the multipliers
        operands = data.StructLayout({
            "x": data.ArrayLayout(signed(5), V),
            "w": data.ArrayLayout(data.ArrayLayout(signed(5), V), N)})

        def column_products(ops):
            return [lane_products(m, ops.x, ops.w[j], V, f"prod{j}") for j in range(N)]

        issue, pipe_stall = result_pipeline(m, cols=N, tile=T, o=self.o, operands=operands,
                                            column_products=column_products,
                                            product_reg=self.product_reg,
                                            mant_regs=self.mant_regs, platform=platform,
                                            result_queue=self.result_queue)

        # c_cnt == its last value in MXINT8 mode (always in INT4), registered with c_cnt, so
        # that the engine's ready does not start at the mode's comparison
        last_combo = Signal(init=1)

        def set_combo(value):
            return [c_cnt.eq(value), last_combo.eq(Mux(is_mx, value == len(combos) - 1, 1))]

        def is_last_group(g, ncols):  # g: the group's index; with col_skip, the group holding
            last = g == groups - 1     # the unit's last output channel ends the item too
            return last | ((g + 1) * N >= ncols) if self.col_skip else last

        # registered: set as the item loads (group 0) and as g_cnt steps (group g_cnt + 1), so
        # the engine's ready starts from registers
        last_group = Signal()
        final = busy & (item.null | (last_group & last_combo))
        adv = busy & ~pipe_stall
        m.d.comb += [
            self.i.ready.eq(~busy | (final & ~pipe_stall)),
            self.busy.eq(adv),
            self.macs.eq(Mux(adv & ~item.null, V * N, 0)),
        ]

        # pass selection: slice (half) and nibble pair of the block
        half = Signal(range(MX_BLOCK // V))
        xn, wn = Signal(), Signal()
        sh4 = Signal(range(3))
        with m.Switch(c_cnt):
            for k, (h, a, b, s) in enumerate(combos):
                with m.Case(k):
                    m.d.comb += [half.eq(Mux(is_mx, h, 0)), xn.eq(a), wn.eq(b),
                                  sh4.eq(Mux(is_mx, s // 4, 0))]
        nh = MX_BLOCK // V
        x_lane = [Array([item.x[h * V + i] for h in range(nh)])[half] for i in range(V)]
        ops_x = [nibble_operands(x, xn, is_mx) for x in x_lane]

        wsel = Signal(range(groups * nh))  # exact width: a complete case in the Verilog
        m.d.comb += wsel.eq(g_cnt * nh + half)
        ops_w, ms, es = [], [], []
        for j in range(N):
            row = []
            for i in range(V):
                w = Array([item.w[g * N + j][h * V + i]
                           for g in range(groups) for h in range(nh)])[wsel]
                row.append(nibble_operands(w, wn, is_mx))
            ops_w.append(row)
            w_scale = Array([item.w_scale[g * N + j] for g in range(groups)])[g_cnt]
            msc, esc = scale_factors(item.x_scale, w_scale, self.mode)
            ms.append(msc)
            es.append(esc)
        # the whole pass in one assignment (field by field, the Verilog drives the pass wire
        # with one part-select assign per field; Icarus re-resolves all of it per part)
        m.d.comb += issue.eq(pack_value(issue.shape(), {
            "valid": adv, "null": item.null, "first": item.first, "last": item.last,
            "final": final, "pdone": last_combo, "fresh": c_cnt == 0, "sh4": sh4, "group": g_cnt,
            "ops": {"x": ops_x, "w": ops_w}, "m": ms, "e": es}))

        with m.If(adv & ~final):
            with m.If(last_combo):
                m.d.sync += [g_cnt.eq(g_cnt + 1), *set_combo(0),
                             last_group.eq(is_last_group(g_cnt + 1, item.ncols))]
            with m.Else():
                m.d.sync += set_combo(c_cnt + 1)

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [item.eq(self.i.payload), busy.eq(1), g_cnt.eq(0), *set_combo(0),
                         last_group.eq(is_last_group(0, self.i.payload.ncols))]
        with m.Elif(adv & final):
            m.d.sync += busy.eq(0)
        return m

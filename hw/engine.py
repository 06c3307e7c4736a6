"""The result pipeline shared by the DPE and the SPE: from an engine's per-pass partial sums to
its accumulators and its result register.

An engine's *issue stage* (its own control: item register, pass counters, operand selection)
produces per cycle one *pass*: the multiplier operands of that cycle (in the engine's own
``operands`` layout) and the pass's flags. The result pipeline takes it through
:data:`ENGINE_STAGES` registers:

====== ====================================================================================
stage  work
====== ====================================================================================
0      the operand register; the engine's ``column_products`` multiplies the registered
       operands (radix-4 Booth products, :func:`hw.common.lut_product`), and the products of
       each of its ``cols`` computing columns are summed in parts of at most
       :data:`SUM_LANES` into ``s`` (with ``product_reg``: the products are registered
       first, in stage 0p, and summed from there; every later stage and the latency move by
       one); the scale mantissas are multiplied into ``M`` at the same register
1      ``P = (fresh ? 0 : P) + sum_k (s_k << 4 sh4)``: the exact integer vector product, built
       over the passes of an item (SPE) or of a column group (DPE: the slices / nibble
       products); in parallel ``M << term_prescale(E)`` (the fine part of the term's shift)
2      ``mant = P * (M << term_prescale(E))`` (``M`` = product of the activation and weight
       scale mantissas); in parallel the term unit's coarse shift amount (binary, one-hot and
       thermometer) and range flags from ``E`` (with ``mant_regs``: the multiplier's operands
       are registered first, stage 2a, and its product, stage 2b, as an FPGA's multiplier
       block registers them, :func:`hw.dsp.registered_product`; every later stage and the
       latency move by two)
3      the term unit, first half: ``mant * 2**E`` (logarithmic shift in steps of
       :data:`hw.common.TERM_STEP`) and, next to the shift, from ``mant`` and the decoded
       shift amount, the rounding decision's inputs and the clamp's range checks
4      the term unit, second half: ``clamp(RNE(...), +-TERM_LIMIT)`` (docs/numerics.md 4);
       the saturated terms counted per group of up to 4 columns
5      accumulate into column group ``group`` (clear it first if ``first``); a pass with
       ``emit`` (the final pass of a ``last`` item) writes the accumulators to ``o``
====== ====================================================================================

Every stage register moves when the pipeline is not stalled. It stalls (all stages and the
issue stage) in the cycle in which stage 5 (the last) holds an ``emit`` pass while ``o``
still holds an unaccepted result: ``stall = emit5 & o.valid & ~o.ready``. So a result appears
on ``o`` ``engine_stages(product_reg) + 1`` cycles after the final pass of its unit was
issued, and the issue stage loses exactly the cycles in which the pipeline stalls (the cycle
model, :class:`hw.cyclemodel.EngineModel`, steps the same rule).

With ``result_queue`` a second result register ``r1`` holds a result behind ``o``'s (the two
are a queue: ``o`` takes ``r1``'s as its own is accepted), and the pipeline stalls while
stage 5 holds an ``emit`` pass and both are taken: ``stall = emit5 & r1.valid``, a function
of registers. The consumer's ``o.ready`` (the join, which waits for both engines) then
reaches no stage's enable and no input handshake; an engine may finish one result further
ahead of the join.
"""

from amaranth.hdl import Cat, Mux, Signal, signed, unsigned
from amaranth.lib import data

from .common import (ACC_FRAC_BITS, MANT_WIDTH, SAT_WIDTH, TERM_STEP, adder_tree, barrel_shl,
                     decode_scale, lut_product, popcount, term_prescale, term_shift, term_unit)
from .dsp import PRODUCT_REGS, registered_product

__all__ = ["ENGINE_STAGES", "PRODUCT_WIDTH", "SUM_WIDTH", "SUM_LANES", "engine_stages",
           "pass_layout", "scale_factors", "scale_product", "lane_products", "result_handshake",
           "result_pipeline"]

#: Register stages between an engine's issue stage and its result register (stages 0-5),
#: without the product register.
ENGINE_STAGES = 6
#: Signed bits of one 5 x 5-bit operand product (-16 x 15 .. -16 x -16 = 256).
PRODUCT_WIDTH = 10


def engine_stages(product_reg=False, mant_regs=False):
    """Register stages of the result pipeline: :data:`ENGINE_STAGES`, one more with the
    product register (``product_reg``, :func:`result_pipeline`), two more with the mantissa
    multiplier's registers (``mant_regs``)."""
    return ENGINE_STAGES + bool(product_reg) + PRODUCT_REGS * bool(mant_regs)
#: Signed bits of one pass's partial sum per column and part (up to :data:`SUM_LANES` products;
#: the width holds the 32 lanes of one unsplit sum).
SUM_WIDTH = 16
#: The most products per part of a column's partial sum: the sum is registered in
#: ``ceil(lanes / SUM_LANES)`` parts of nearly equal size (short adder trees), which stage 1 adds
#: into ``P`` (the 16 lanes of the ``board`` DPE: three parts, 5 + 5 + 6).
SUM_LANES = 6
#: Signed bits of a term exponent ``E + 24`` (FP8: -9..5 per scale, E8M0: -133..122).
EXP_WIDTH = 10


def pass_layout(cols, groups, operands=None, parts=1):
    """One issued pass: ``valid`` (the issue stage processed a pass), the item's ``null``,
    ``first``, ``last``, ``final`` (the item's last pass), ``pdone`` (this pass completes
    ``P``), ``fresh`` (``P`` starts from zero), ``sh4`` (``s << 4 sh4``: a nibble product's
    weight, 0, 4 or 8 bits; two multiplexer levels), ``group`` (the column
    group the columns compute), per column the scale factors ``m`` (the two scale mantissas
    of :func:`scale_factors` in the issue stage and stage 0, their product from the next
    register on) and ``e`` (exponent sum + 24); and the pass's multiplier operands ``ops``
    (layout ``operands``: the issue stage and stage 0) or, without ``operands``, per column
    the partial sum ``s`` in ``parts`` parts (stage 1; :data:`SUM_LANES`)."""
    data_field = ({"ops": operands} if operands is not None
                  else {"s": data.ArrayLayout(data.ArrayLayout(signed(SUM_WIDTH), parts),
                                              cols)})
    return data.StructLayout({
        "valid": 1, "null": 1, "first": 1, "last": 1, "final": 1, "pdone": 1, "fresh": 1,
        "sh4": range(3),
        "group": range(max(groups, 2)),  # never 0 bits wide (Verilator rejects [-1:0])
        **data_field,
        "m": data.ArrayLayout(unsigned(8), cols),
        "e": data.ArrayLayout(signed(EXP_WIDTH), cols),
    })


def scale_factors(x_scale, w_scale, mode):
    """``((mx, mw), E + 24)`` of a term (:func:`hw.common.decode_scale`): the activation and
    weight scale mantissas, 4 bits each in one 8-bit value (:func:`result_pipeline` multiplies them
    after its operand register, :func:`scale_product`), and the sum of their exponents on the
    accumulator grid."""
    mx, ex = decode_scale(x_scale, mode)
    mw, ew = decode_scale(w_scale, mode)
    return Cat(mx, mw), ex + ew + ACC_FRAC_BITS


def scale_product(m):
    """``M`` of the two mantissas ``m`` of :func:`scale_factors`: their product."""
    return m[:4] * m[4:8]


def lane_products(m, xs, ws, lanes, name, valid=None):
    """``[xs[i] * ws[i] for i < lanes]``, each as :func:`hw.common.lut_product` (named
    ``{name}_{i}``, operands of at most 5 signed bits); with ``valid``, product ``i`` is 0
    where bit ``i`` is clear. One column's products for ``column_products``."""
    parts = []
    for i in range(lanes):
        assert len(xs[i]) <= 5 and len(ws[i]) <= 5, "PRODUCT_WIDTH holds 5 x 5-bit products"
        # an invalid lane's weight operand is zeroed: a term of each partial product's LUT,
        # not a multiplexer after the product's adder
        w = ws[i] if valid is None else Mux(valid[i], ws[i], 0)
        parts.append(lut_product(m, xs[i], w, f"{name}_{i}"))
    return parts


def result_handshake(m, o, emit, *, queue=False, emit_behind=None, name="rp"):
    """The control of an engine's result register ``o`` (with ``queue`` also of the second,
    ``r1``; module docstring) for a pipeline whose last stage holds an ``emit`` pass in the
    cycles ``emit`` is high: drives ``o.valid`` (and ``r1``'s valid flag) and returns ``(stall,
    moves)``, the pipeline's stall and this cycle's data moves, signals ``to_o`` (``o`` loads
    the new result), ``to_r1`` (``r1`` loads it) and ``r1_to_o`` (``o`` loads ``r1``'s).
    :func:`result_pipeline` and :class:`hw.nullspe.NullSPE` (results without data) share it,
    so their timing is the same by construction.

    With ``queue`` (ignored without), ``emit_behind`` (the ``emit`` flag of the stage before the last, which the
    last loads when the pipeline does not stall) makes ``stall`` a flip-flop: its next value,
    ``emit``'s next value and ``r1``'s next valid flag, is registered, so that the stages'
    enables and the issue stage's ``ready`` start at a register. Same values in every cycle."""
    stall = Signal(name=f"{name}_stall")
    moves = {n: Signal(name=f"{name}_{n}") for n in ("to_o", "to_r1", "r1_to_o")}
    new = emit & ~stall
    taken = o.valid & o.ready
    if queue:  # o, then r1; a new result never meets a full queue (it stalls)
        r1_valid = Signal(name=f"{name}_r1_valid")
        m.d.comb += [moves["r1_to_o"].eq(taken & r1_valid),
                     moves["to_r1"].eq(new & o.valid & ~taken),
                     moves["to_o"].eq(new & ~(o.valid & ~taken))]
        if emit_behind is None:
            m.d.comb += stall.eq(emit & r1_valid)
        else:  # (both registers are cleared by reset, and so is stall)
            r1_next = Mux(moves["r1_to_o"], 0, Mux(moves["to_r1"], 1, r1_valid))
            m.d.sync += stall.eq(Mux(stall, emit, emit_behind) & r1_next)
        with m.If(moves["r1_to_o"]):
            m.d.sync += r1_valid.eq(0)
        with m.Elif(moves["to_r1"]):
            m.d.sync += r1_valid.eq(1)
        with m.Elif(moves["to_o"]):
            m.d.sync += o.valid.eq(1)
        with m.Elif(taken):
            m.d.sync += o.valid.eq(0)
    else:
        m.d.comb += [stall.eq(emit & o.valid & ~o.ready), moves["to_o"].eq(new)]
        with m.If(taken):
            m.d.sync += o.valid.eq(0)
        with m.If(new):
            m.d.sync += o.valid.eq(1)
    return stall, moves


def result_pipeline(m, *, cols, tile, o, operands, column_products, product_reg=False,
                    result_queue=False, mant_regs=False, platform=None, name="rp"):
    """Build the pipeline of the module docstring into ``m`` for ``cols`` computing columns
    and ``tile`` accumulators (column ``c`` belongs to group ``c // cols``); ``o`` is the
    engine's result stream (``result_layout(tile)``); ``operands`` is the layout of a pass's
    multiplier operands and ``column_products(ops)`` returns, per computing column, the same
    number of products (:func:`lane_products`; their sum fits ``signed(SUM_WIDTH)``) of the
    registered operands ``ops``. ``product_reg``: a register between the products and their
    sums (the ``timing_regs`` configuration; :func:`engine_stages` stages). ``result_queue``:
    the second result register (module docstring; ``timing_regs``). ``mant_regs``: stages
    2a and 2b (module docstring; ``dsp_regs``), built for ``platform`` (``elaborate``'s:
    :data:`hw.dsp.ECP5` or ``None``).

    Returns ``(inp, stall)``: ``inp`` (a :func:`pass_layout` signal with ``ops``) must be
    driven combinationally by the issue stage, with ``valid`` high only in cycles it
    advances; ``stall`` must hold the issue stage."""
    groups = tile // cols
    inp = Signal(pass_layout(cols, groups, operands), name=f"{name}_in")
    st0 = Signal.like(inp, name=f"{name}_st0")
    layout = pass_layout(cols, groups)  # the fields besides the sum (which st1 adds)
    flags = data.StructLayout({"done": 1, "clear": 1, "emit": 1, "first": 1,
                               "group": layout.members["group"]})
    st2 = Signal(flags, name=f"{name}_st2")
    st3 = Signal(flags, name=f"{name}_st3")
    st4 = Signal(flags, name=f"{name}_st4")
    st5 = Signal(flags, name=f"{name}_st5")
    stall, moves = result_handshake(m, o, st5.emit, queue=result_queue, emit_behind=st4.emit,
                                    name=name)
    go = ~stall

    # stage 0: operands; the products and column sums are computed from this register
    with m.If(go):
        m.d.sync += st0.eq(inp)
    products = column_products(st0.ops)
    fields = [f for f, _ in layout if f != "s"]
    lanes = len(products[0])
    parts = -(-lanes // SUM_LANES)
    cut = [lanes * k // parts for k in range(parts + 1)]  # parts of (nearly) equal size
    st1 = Signal(pass_layout(cols, groups, parts=parts), name=f"{name}_st1")

    def next_field(src, f):  # a field of the register after stage 0: M is multiplied there
        return Cat(*(scale_product(v) for v in src[f])) if f == "m" else src[f]

    if product_reg:  # stage 0p: the products, registered with the pass's other fields
        stp = Signal(data.StructLayout({
            **{f: layout.members[f] for f in fields},
            "p": data.ArrayLayout(data.ArrayLayout(signed(PRODUCT_WIDTH), lanes), cols)}),
            name=f"{name}_stp")
        with m.If(go):
            m.d.sync += [stp[f].eq(next_field(st0, f)) for f in fields]
            m.d.sync += [stp.p[j][i].eq(products[j][i])
                         for j in range(cols) for i in range(lanes)]
        products = [[stp.p[j][i] for i in range(lanes)] for j in range(cols)]
        with m.If(go):
            m.d.sync += [st1[f].eq(stp[f]) for f in fields]
    else:
        with m.If(go):
            m.d.sync += [st1[f].eq(next_field(st0, f)) for f in fields]
    # each column's products summed in parts of at most SUM_LANES (stage 1 adds them): short
    # adder trees in front of st1
    with m.If(go):
        m.d.sync += [st1.s[j][k].eq(adder_tree(products[j][cut[k]:cut[k + 1]]))
                     for j in range(cols) for k in range(parts)]

    # stage 1: P over the passes
    p_reg = [Signal(signed(MANT_WIDTH + 2), name=f"{name}_p{j}") for j in range(cols)]
    p2 = [Signal(signed(MANT_WIDTH + 2), name=f"{name}_p2_{j}") for j in range(cols)]
    # M << term_prescale(E): the term unit then shifts by multiples of TERM_STEP only
    m2 = [Signal(unsigned(8 + TERM_STEP - 1), name=f"{name}_m2_{j}") for j in range(cols)]
    e2 = [Signal(signed(EXP_WIDTH), name=f"{name}_e2_{j}") for j in range(cols)]
    work = st1.valid & ~st1.null
    for j in range(cols):
        p_new = Signal(signed(MANT_WIDTH + 2), name=f"{name}_pnew{j}")
        s_sh = [Mux(st1.sh4[1], s << 8, Mux(st1.sh4[0], s << 4, s)) for s in st1.s[j]]
        m.d.comb += p_new.eq(adder_tree([Mux(st1.fresh, 0, p_reg[j]), *s_sh]))
        m_sh = barrel_shl(m, st1.m[j], term_prescale(st1.e[j]), TERM_STEP - 1,
                          f"{name}_mpre{j}")
        with m.If(go & work):
            m.d.sync += p_reg[j].eq(p_new)
        with m.If(go):
            m.d.sync += [p2[j].eq(p_new), m2[j].eq(m_sh), e2[j].eq(st1.e[j])]
    with m.If(go):
        m.d.sync += [
            st2.done.eq(work & st1.pdone),
            st2.clear.eq(st1.valid & st1.null & st1.first),
            st2.emit.eq(st1.valid & st1.final & st1.last),
            st2.first.eq(st1.first),
            st2.group.eq(st1.group),
        ]

    # stage 2: mantissa; in parallel the term unit's shift amount and range flags (with
    # mant_regs: stages 2a and 2b first, the multiplier's operand and product registers,
    # hw.dsp.registered_product, with the flags and E beside them)
    mant3 = [Signal(signed(MANT_WIDTH + TERM_STEP - 1), name=f"{name}_mant{j}")
             for j in range(cols)]
    shift3 = []
    if mant_regs:
        mant_next = [registered_product(m, p2[j], m2[j], en=go, width=len(mant3[j]),
                                        name=f"{name}_mp{j}", platform=platform)
                     for j in range(cols)]
        st2a = Signal(flags, name=f"{name}_st2a")
        st2b = Signal(flags, name=f"{name}_st2b")
        e2a = [Signal.like(e, name=f"{name}_e2a_{j}") for j, e in enumerate(e2)]
        e2b = [Signal.like(e, name=f"{name}_e2b_{j}") for j, e in enumerate(e2)]
        with m.If(go):
            m.d.sync += [st2a.eq(st2), st2b.eq(st2a),
                         *(a.eq(e) for a, e in zip(e2a, e2)),
                         *(b.eq(a) for b, a in zip(e2b, e2a))]
        st2, e2 = st2b, e2b
    else:
        mant_next = [p2[j] * m2[j] for j in range(cols)]
    with m.If(go):
        m.d.sync += st3.eq(st2)
        m.d.sync += [mant3[j].eq(mant_next[j]) for j in range(cols)]
    for j in range(cols):
        shift = term_shift(m, MANT_WIDTH, e2[j], name=f"{name}_ts{j}")
        regs = [Signal.like(v, name=f"{v.name}3") for v in shift]
        with m.If(go):
            m.d.sync += [r.eq(v) for r, v in zip(regs, shift)]
        shift3.append(regs)

    # stages 3 and 4: the term unit, shift and rounding decision (registered inside
    # term_unit), then the increment and the clamp
    term5 = []
    # the stage's saturated terms, counted in groups of up to 4 columns (stage 5 adds them)
    sats5 = [Signal(range(min(4, cols - c) + 1), name=f"{name}_sat5_{c // 4}")
             for c in range(0, cols, 4)]
    with m.If(go):
        m.d.sync += [st4.eq(st3), st5.eq(st4)]
    sat_bits = []
    for j in range(cols):
        term, tsat = term_unit(m, mant3[j], shift3[j], go=go, name=f"{name}_tu{j}")
        reg = Signal.like(term, name=f"{name}_term{j}")
        with m.If(go):
            m.d.sync += reg.eq(term)
        term5.append(reg)
        sat_bits.append(tsat)
    # (each sat bit a function of the term unit's registered flags)
    sat_counts = [popcount(m, Cat(*sat_bits[4 * i:4 * i + 4]), f"{name}_satcnt{i}")
                  for i in range(len(sats5))]
    with m.If(go):
        m.d.sync += [r.eq(v) for r, v in zip(sats5, sat_counts)]

    # stage 5: accumulate, emit
    acc = [Signal.like(o.payload.acc[c], name=f"{name}_acc{c}") for c in range(tile)]
    acc_next = [Signal.like(o.payload.acc[c], name=f"{name}_acc_next{c}") for c in range(tile)]
    sat = Signal(SAT_WIDTH, name=f"{name}_sat")
    for c in range(tile):
        with m.If(st5.clear):
            m.d.comb += acc_next[c].eq(0)
        with m.Elif(st5.done & (st5.group == c // cols)):
            m.d.comb += acc_next[c].eq(Mux(st5.first, 0, acc[c]) + term5[c % cols])
        with m.Else():
            m.d.comb += acc_next[c].eq(acc[c])
    restart = st5.first & (st5.clear | (st5.done & (st5.group == 0)))
    sat_next = Signal(SAT_WIDTH, name=f"{name}_sat_next")
    m.d.comb += sat_next.eq(Mux(restart, 0, sat)
                            + Mux(st5.done, adder_tree(sats5), 0))

    with m.If(go):
        m.d.sync += [a.eq(n) for a, n in zip(acc, acc_next)]
        m.d.sync += sat.eq(sat_next)
    result = Signal.like(o.payload, name=f"{name}_result")
    m.d.comb += [result.sat.eq(sat_next), *(result.acc[c].eq(acc_next[c]) for c in range(tile))]
    with m.If(moves["to_o"]):
        m.d.sync += o.payload.eq(result)
    if result_queue:
        r1 = Signal.like(o.payload, name=f"{name}_r1")
        with m.If(moves["r1_to_o"]):
            m.d.sync += o.payload.eq(r1)
        with m.If(moves["to_r1"]):
            m.d.sync += r1.eq(result)
    return inp, stall

"""Shared pieces of the SQ-DM gateware: encodings, parameter checks, scale decoding and the term
unit that puts one integer vector product on the accumulator grid (docs/numerics.md section 4).

Nothing here re-defines an encoding or a constant of the arithmetic contract: they are imported
from :mod:`golden.intref` / :mod:`golden.numerics` and only wrapped for Amaranth.
"""

import contextlib

from amaranth.hdl import Array, Cat, Const, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data

from golden import intref
from golden import numerics as nx

__all__ = [
    "Mode", "Format", "ACC_WIDTH", "ACC_FRAC_BITS", "TERM_LIMIT", "MX_BLOCK", "ELEM_SHAPE",
    "TERM_WIDTH", "SAT_WIDTH", "VECTOR_CHOICES", "MANT_WIDTH",
    "validating", "check_int", "check_choice", "barrel_shl", "barrel_shr", "decode_scale",
    "TERM_STEP", "term_prescale", "term_shift", "term_unit",
    "adder_tree", "pack_value", "connect_read_port", "thermometer_count", "ACT_COUNTS_LAYOUT",
    "thermometer_functions", "fresh_or_held",
    "act_counts", "act_nonzero", "act_counts_of", "ACT_NONZERO_BITS",
    "nibble_operands", "lut_product",
    "item_layout", "NCOLS_SHAPE", "result_layout", "mx_combos", "nonzero_mask",
    "nonzero_nibble_mask", "popcount", "shallow_popcount",
]

# --------------------------------------------------------------------------- encodings


#: The precision type of the golden model (a Python ``IntEnum``, which Amaranth takes as a
#: shape: ``unsigned(1)`` / ``unsigned(2)``): ports and descriptor fields use it directly, so
#: the RTL, the traces and the golden model share one definition.
Mode = intref.Mode
Format = intref.Format


# --------------------------------------------------------------------------- constants

ACC_WIDTH = intref.ACC_WIDTH          # signed accumulator bits (64)
ACC_FRAC_BITS = intref.ACC_FRAC_BITS  # accumulator grid 2**-24
TERM_LIMIT = intref.TERM_LIMIT        # +-(2**52 - 1)
TERM_WIDTH = TERM_LIMIT.bit_length() + 1  # signed bits of a clamped term (53)
MX_BLOCK = nx.MX_BLOCK                # 32 elements per MXINT8 block
#: Every activation / weight element travels in a signed 8-bit container (UINT4 15 is +15).
ELEM_SHAPE = signed(8)
#: Bits of the per-unit count of saturated terms that the engines report.
SAT_WIDTH = 24
#: Signed bits of ``P * M`` (docs/numerics.md 4: |P * M| < 2**19 in both modes).
MANT_WIDTH = 20
#: Vector sizes the gateware supports (channels per INT4 vector and per channel-map group).
VECTOR_CHOICES = (4, 8, 16)


# --------------------------------------------------------------------------- parameter checks

@contextlib.contextmanager
def validating(component):
    """Wrap the parameter checks of ``component.__init__``: a rejected component was never
    meant to be elaborated, so silence Amaranth's "never elaborated" warning for it."""
    try:
        yield
    except (TypeError, ValueError):
        component._MustUse__silence = True
        raise


def check_int(name, value, lo, hi=None):
    """Return ``value`` if it is an int in ``[lo, hi]``; else raise TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def check_bool(name, value):
    """Return ``value`` if it is a bool; else raise TypeError (a block's option flags)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(name, value, choices):
    """Return ``value`` if it is an int among ``choices``; else raise TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


# --------------------------------------------------------------------------- layouts

#: Shape of an item's ``ncols`` field (output channels of its unit, up to the largest tile).
NCOLS_SHAPE = range(257)


def item_layout(cols):
    """Work item of the DPE / SPE: one (kernel tap, input vector) for ``cols`` output channels.

    ``x``: 32 activation elements (INT4 mode uses the first ``vector``); ``x_scale``: FP8 code
    (INT4 mode) or E8M0 code (MXINT8 mode); ``w[c]``: the weight elements of output column
    ``c``; ``w_scale[c]`` its scale code. ``first`` clears the accumulators before the item,
    ``last`` makes the engine emit them after it; a ``null`` item contributes nothing and costs
    one cycle (it exists so that every unit reaches both engines). ``ncols``: output channels
    of the unit (``min(tile, cout - tc)``; a DPE with ``col_skip`` issues only the column groups
    holding them); ``pref``: the channel-map bit of the item's vector (the dispatcher's
    preference, ``hw.dispatch``).
    """
    return data.StructLayout({
        "x": data.ArrayLayout(ELEM_SHAPE, MX_BLOCK),
        "x_scale": unsigned(8),
        "w": data.ArrayLayout(data.ArrayLayout(ELEM_SHAPE, MX_BLOCK), cols),
        "w_scale": data.ArrayLayout(unsigned(8), cols),
        "first": 1,
        "last": 1,
        "null": 1,
        "ncols": NCOLS_SHAPE,
        "pref": 1,
    })


def result_layout(cols):
    """Engine result of one unit: ``cols`` accumulators (2**-24 grid) and the saturated-term
    count of the unit."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(ACC_WIDTH), cols),
        "sat": unsigned(SAT_WIDTH),
    })


# --------------------------------------------------------------------------- arithmetic

def decode_scale(code, mode):
    """Integer ``(M, E)`` of a scale code with value ``M * 2**E`` (docs/numerics.md 1, 4).

    INT4 mode: FP8 E4M3 code 0x00..0x7E -> M in 0..15, E = max(exp, 1) - 10.
    MXINT8 mode: E8M0 code s -> M = 1, E = s - 127 - 6.
    """
    exp = code[3:7]
    man = code[0:3]
    fp8_m = Mux(exp == 0, man, man + 8)
    fp8_e = Mux(exp == 0, 1, exp) - 10
    mx_e = code - (nx.MX_SCALE_BIAS + nx.MX_ELEMENT_FRAC_BITS)
    is_mx = mode == Mode.MXINT8
    m = Mux(is_mx, 1, fp8_m)[:4]
    e = Mux(is_mx, mx_e.as_signed(), fp8_e.as_signed())
    return m, e


def barrel_shl(m, value, amount, max_amount, name, step=1):
    """``value << (amount * step)`` as a logarithmic shifter (one 2:1 mux level per bit of
    ``amount``), ``len(value) + max_amount`` bits wide; ``amount * step`` must not exceed
    ``max_amount``. (Cheaper to simulate and to synthesize than a variable shift that becomes a
    case per amount.)"""
    out_width = len(value) + max_amount
    signed_ = value.shape().signed
    x = value
    for b in range(len(amount)):
        if (step << b) > max_amount:
            break
        width = min(len(x) + (step << b), out_width)
        st = Signal(signed(width) if signed_ else unsigned(width), name=f"{name}_shl{b}")
        m.d.comb += st.eq(Mux(amount[b], x << (step << b), x))
        x = st
    return x


def barrel_shr(m, value, amount, step, name):
    """``value >> (amount * step)`` (arithmetic if ``value`` is signed), ``len(value)`` bits,
    as explicit 2:1 mux levels, one per bit of ``amount``: a shifter of a known depth (Yosys
    maps a variable shift by a few bits into deeper logic)."""
    x = value
    for b in range(len(amount)):
        st = Signal(value.shape(), name=f"{name}_shr{b}")
        m.d.comb += st.eq(Mux(amount[b], x >> (step << b), x))
        x = st
    return x


#: The step of the term unit's shifter (:func:`term_shift`): the mantissa is shifted by a
#: multiple of it, the rest (``term_prescale``, 0..3) is applied to ``M`` before the product.
TERM_STEP = 4


def term_prescale(exp, mant_width=MANT_WIDTH, step=TERM_STEP):
    """The fine part of a term's shift, ``(exp + mant_width) mod step`` (a few low bits of
    ``exp``): a pipeline shifts the scale mantissa ``M`` left by it before ``mant = P * M``
    (:mod:`hw.engine`), so that :func:`term_unit` shifts only by multiples of ``step``."""
    assert step & (step - 1) == 0, "a power of two"
    return (exp + mant_width)[:step.bit_length() - 1]


def term_shift(m, mant_width, exp, name="term", step=TERM_STEP):
    """The exponent's half of :func:`term_unit` for a ``mant_width``-bit mantissa and the
    signed shift ``exp``: signals ``(q, qhot, qge, big, small)``. The left shift of the
    mantissa's fixed-point image is ``exp + mant_width = step * q + term_prescale(exp)`` (``q``
    its coarse part; the fine part is applied to the mantissa ahead of the term unit);
    ``qhot`` is ``q`` one-hot and ``qge`` as a thermometer code (bit ``k``: ``q >= k``), both
    decoded from ``exp``, so that the term unit selects mantissa bits without decoding ``q``;
    ``big`` / ``small``: the term saturates (``exp`` too large) or rounds to 0 (too small).
    Combinational, so that a pipeline can compute it a stage ahead of the mantissa
    (``hw.engine``: in parallel with ``mant = P * M``)."""
    mw, top = mant_width, TERM_WIDTH - 1  # |mant| >= 1 shifted by >= 52 always saturates
    fine = step.bit_length() - 1
    nq = ((mw + top - 1) >> fine) + 1  # values of q
    q = Signal(range(nq), name=f"{name}_q")
    big, small = Signal(name=f"{name}_big"), Signal(name=f"{name}_small")
    in_range = (exp >= -mw) & (exp < top)
    qhot = Signal(nq, name=f"{name}_qhot")
    qge = Signal(nq, name=f"{name}_qge")
    m.d.comb += [q.eq(Mux(in_range, (exp + mw) >> fine, 0)), big.eq(exp >= top),
                 small.eq(exp < -mw)]
    m.d.comb += [qhot[k].eq(in_range & (exp >= step * k - mw) & (exp < step * (k + 1) - mw))
                 for k in range(nq)]
    m.d.comb += [qge[k].eq(in_range & (exp >= step * k - mw)) for k in range(nq)]
    return q, qhot, qge, big, small


def term_unit(m, mant, shift, *, go, frac_bits=MANT_WIDTH, step=TERM_STEP, name="term"):
    """``clamp(RNE(mant * 2**(step * q - frac_bits)), +-TERM_LIMIT)`` for a signed integer
    ``mant`` (the term of docs/numerics.md section 4: ``mant = (P * M) << term_prescale(exp)``
    and ``exp = E + 24``), given ``shift = (q, qhot, qge, big, small)`` of :func:`term_shift`
    (registered with ``mant``; ``big``: the term saturates unless ``mant`` is 0, ``small``:
    it is 0), in two halves with a register between them, loaded when ``go``: the shift and,
    next to it from ``mant`` and ``qhot`` / ``qge``, the rounding decision and the range
    checks; then the rounding increment and the clamp. Returns ``(term, saturated)`` signals
    (``term`` is TERM_WIDTH bits) for the ``mant`` and ``shift`` of the previous ``go``
    cycle; ``saturated`` is a function of flags registered in the first half (a pipeline can
    count the saturated terms of its columns in the second, ``hw.engine``)."""
    fb, n = frac_bits, len(mant)
    top = TERM_WIDTH - 1
    q, qhot, qge, big_in, small_in = shift
    nq = len(qhot)
    wide = barrel_shl(m, mant, q, step * (nq - 1), name, step=step)

    def ge(k):  # q >= k
        return Const(1, 1) if k <= 0 else Const(0, 1) if k >= nq else qge[k]

    def groups(bits, key):  # the bits j of mant in groups of equal key(j)
        out = {}
        for j in bits:
            out.setdefault(key(j), []).append(mant[j])
        return out

    # the rounding decision's inputs: the round bit wide[fb - 1] (the mantissa's bit
    # fb - 1 - step * q, selected by qhot) and the sticky bits wide[:fb - 1]: the mantissa's
    # bits j < fb - 1 - step * q, i.e. those with q < ceil((fb - 1 - j) / step); the lsb is
    # the integer part's bit 0
    def bit_at(pos):
        return Cat(*[qhot[k] & mant[pos - step * k] for k in range(nq)
                     if 0 <= pos - step * k < n]).any()

    sticky = Cat(*[~ge(t) & Cat(*bs).any() for t, bs in groups(
        range(min(fb - 1, n)), lambda j: -(-(fb - 1 - j) // step)).items()]).any()
    # the clamp, also from the mantissa: a mantissa narrower than the term makes a term with a
    # fractional part (step * q < fb) far from the limit, so the rounded term exceeds
    # TERM_LIMIT = 2**top - 1 exactly when mant * 2**(step * q - fb) >= 2**top, i.e. mant >=
    # 2**K (K = top + fb - step * q; bit j of mant is at or above K when q >= u(j) =
    # ceil((top + fb - j) / step)), and falls below -TERM_LIMIT exactly when mant <= -2**K,
    # i.e. K < n and not (the bits from K up all ones and a bit below K set)
    assert n <= top, "a mantissa narrower than the term"
    sign = mant[-1]
    above = groups(range(n - 1), lambda j: -(-(top + fb - j) // step))
    over_next = ~sign & Cat(*[ge(u) & Cat(*bs).any() for u, bs in above.items()]).any()
    not_all_above = Cat(*[ge(u) & ~Cat(*bs).all() for u, bs in above.items()]).any()
    none_below = Cat(*[ge(u) | ~Cat(*bs).any() for u, bs in above.items()]).all()
    under_next = sign & ge(-(-(top + fb - (n - 1)) // step)) & (not_all_above | none_below)
    # first half, registered: the integer part, the rounding decision, the out-of-range cases
    # (only its low TERM_WIDTH bits: an unclamped term fits them)
    whole = Signal(signed(TERM_WIDTH), name=f"{name}_whole")
    flags = ("round", "sticky", "big", "small", "over", "under", "mzero", "mneg")
    f = {flag: Signal(name=f"{name}_{flag}") for flag in flags}
    with m.If(go):
        m.d.sync += [whole.eq(wide[fb:fb + TERM_WIDTH].as_signed()),
                     f["round"].eq(bit_at(fb - 1)), f["sticky"].eq(sticky),
                     f["big"].eq(big_in), f["small"].eq(small_in),
                     f["over"].eq(over_next), f["under"].eq(under_next),
                     f["mzero"].eq(mant == 0), f["mneg"].eq(mant < 0)]
    big, small, over, under, mzero, mneg = (
        f[flag] for flag in ("big", "small", "over", "under", "mzero", "mneg"))
    # second half: RNE increment (round half to even) and clamp
    up = Signal(name=f"{name}_up")
    rounded = Signal(signed(TERM_WIDTH), name=f"{name}_rne")
    m.d.comb += [up.eq(f["round"] & (f["sticky"] | whole[0])), rounded.eq(whole + up)]
    term = Signal(signed(TERM_WIDTH), name=name)
    sat = Signal(name=f"{name}_sat")
    with m.If(big):
        m.d.comb += [
            sat.eq(~mzero),
            term.eq(Mux(mzero, 0, Mux(mneg, -TERM_LIMIT, TERM_LIMIT))),
        ]
    with m.Elif(small):
        m.d.comb += term.eq(0)
    with m.Elif(over):
        m.d.comb += [sat.eq(1), term.eq(TERM_LIMIT)]
    with m.Elif(under):
        m.d.comb += [sat.eq(1), term.eq(-TERM_LIMIT)]
    with m.Else():
        m.d.comb += term.eq(rounded)
    return term, sat


def mx_combos(vector):
    """The (half, x_nibble, w_nibble, shift) passes of one MXINT8 block for a ``vector``-lane
    array: 32 / vector element slices times the four nibble products of an 8x8 multiply
    (nibble 1 = signed high nibble, 0 = unsigned low nibble), in issue order."""
    combos = []
    for half in range(MX_BLOCK // vector):
        for xn, wn in ((1, 1), (1, 0), (0, 1), (0, 0)):
            combos.append((half, xn, wn, 4 * (xn + wn)))
    return combos


def nibble_operands(elem, nibble, is_mx):
    """5-bit signed multiplier operand of an element: the whole element in INT4 mode (codes fit
    -16..15), else its signed high nibble (``nibble`` = 1) or unsigned low nibble (0)."""
    hi = elem[4:8].as_signed()
    lo = elem[0:4].as_unsigned()
    whole = elem[0:5].as_signed()
    return Mux(is_mx, Mux(nibble, hi, lo), whole)


def lut_product(m, a, b, name):
    """``a * b`` for a small multiplier operand ``b`` as a sum of shifted partial products,
    one per radix-4 Booth digit ``d`` of ``b`` (``d`` in -2..2 from three bits of ``b``; a
    negative digit's row is ``~(|d| a)`` and its ``+1`` fills an empty low bit of the next
    row). Synthesis sees adders, not a ``$mul``: on an FPGA a 5 x 5-bit product takes a few
    dozen LUTs instead of a whole 18 x 18 DSP block (docs/fpga.md 2), and the array's width is
    then not limited by the device's DSP count; three rows (a LUT level each bit) instead of
    five shorten the adder in front of the product register. The operands are first assigned
    to signals named ``name_a`` / ``name_b`` (each bit of ``b`` is used once per partial
    product: without the signal an operand multiplexer would be repeated for every bit in the
    emitted Verilog)."""
    a_sig = Signal(a.shape(), name=f"{name}_a")
    b_sig = Signal(b.shape(), name=f"{name}_b")
    m.d.comb += [a_sig.eq(a), b_sig.eq(b)]
    a, b = a_sig, b_sig
    if not a.shape().signed:  # a row's top bit is read as its sign
        a = Cat(a, Const(0, 1)).as_signed()
    # b's bits as a signed number (an unsigned b gets a 0 sign bit), b[-1] = 0
    bits = [b[k] for k in range(len(b))] + ([] if b.shape().signed else [Const(0, 1)])

    def bit(k):
        return Const(0, 1) if k < 0 else bits[min(k, len(bits) - 1)]

    rows, neg_prev = [], None
    for j in range((len(bits) + 1) // 2):
        hi, mid, lo = bit(2 * j + 1), bit(2 * j), bit(2 * j - 1)
        one = mid ^ lo
        two = (hi & ~mid & ~lo) | (~hi & mid & lo)
        neg = Signal(name=f"{name}_neg{j}")
        m.d.comb += neg.eq(hi & ~(mid & lo))
        mag = Mux(two, a << 1, Mux(one, a, 0))
        row = Mux(neg, ~mag, mag)
        low = (Const(0, 2 * j) if neg_prev is None
               else Cat(Const(0, 2 * j - 2), neg_prev, Const(0, 1)))  # the previous row's +1
        rows.append(Cat(low, row).as_signed())
        neg_prev = neg
    rows.append(neg_prev << (2 * len(rows) - 2))
    return adder_tree(rows)


def adder_tree(parts):
    """Sum of the values ``parts`` (at least one) as a balanced tree of two-input adds."""
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def pack_value(layout, value):
    """One value with the bits of ``layout`` (nested ``StructLayout`` / ``ArrayLayout``) holding
    ``value`` (a dict per struct, a list per array, a value per leaf, each leaf converted as
    ``.eq`` would: extended by its signedness, then truncated), for driving a whole struct
    signal in one assignment: driven field by field, a wide struct becomes a wire with one
    part-select assign per field, which Icarus re-resolves and fans out once per part
    (docs/hardware.md, "Simulator notes"). A struct or array may also be given whole, as a
    value of exactly its width."""
    if isinstance(layout, data.Layout) and not isinstance(value, (dict, list, tuple)):
        value = Value.cast(value)
        assert len(value) == layout.size
        return value
    if isinstance(layout, data.StructLayout):
        assert set(value) == {name for name, _ in layout}
        parts, pos = [], 0
        for name, field in sorted(layout, key=lambda nf: nf[1].offset):
            assert field.offset == pos, name
            parts.append(pack_value(field.shape, value[name]))
            pos += field.width
        return Cat(*parts)
    if isinstance(layout, data.ArrayLayout):
        assert len(value) == layout.length
        return Cat(*(pack_value(layout.elem_shape, v) for v in value))
    width = Shape.cast(layout).width
    value = Value.cast(value)
    if len(value) < width:
        pad = value[-1] if value.shape().signed else Const(0, 1)
        value = Cat(value, pad.replicate(width - len(value)))
    return value[:width]


def connect_read_port(m, memory, *, en, addr, data):
    """A new synchronous read port of ``memory`` (a ``lib.memory.Memory``) driven by a
    block's ``en`` / ``addr`` outputs, its word onto the block's ``data`` input (the read-port
    contract of :class:`hw.fetch.OperandFetch` and :class:`hw.serializer.JoinSerializer`)."""
    port = memory.read_port()
    m.d.comb += [port.en.eq(en), port.addr.eq(addr), data.eq(port.data)]
    return port


def nonzero_mask(x, count):
    """Bit ``i`` set when element ``x[i]`` (``i < count``) is non-zero."""
    return Cat(*[x[i] != 0 for i in range(count)])


def nonzero_nibble_mask(x, hi):
    """Bit ``i`` set when the high (``hi``, signed ``x >> 4``) or low (``x & 15``) nibble of the
    8-bit element ``x[i]`` (``i < 32``) is non-zero: an MXINT8 sweep of ``nibble_skip``."""
    return Cat(*[Mux(hi, x[i][4:8], x[i][0:4]) != 0 for i in range(MX_BLOCK)])


def thermometer_functions(m, bits, name, funcs):
    """Functions of the count ``K`` of a thermometer code ``bits`` (``bits[k]`` is 1 exactly
    for ``k < K``): ``{key: (f, width)}`` -> ``{key: signal}`` of ``f(K)``, each bit ``f(0)``'s
    XOR the OR of the one-hot edges ``bits[k] & ~bits[k + 1]`` whose ``f(k + 1)`` differs
    from ``f(0)`` there. Logarithmic depth in LUTs, no adder tree, so that any function of
    the count costs no logic after it (for any other code the result is meaningless)."""
    n = len(bits)
    flat, edge = Signal(n, name=f"{name}_bits"), Signal(n, name=f"{name}_edge")
    m.d.comb += [flat.eq(bits), edge.eq(flat & ~(flat >> 1))]
    out = {}
    for key, (f, width) in funcs.items():
        assert all(0 <= f(k) < 2 ** width for k in range(n + 1)), key
        sig = out[key] = Signal(width, name=f"{name}_{key}")
        for b in range(width):
            edges = Cat(*[edge[k] for k in range(n) if (f(k + 1) ^ f(0)) >> b & 1])
            m.d.comb += sig[b].eq(edges.any() ^ (f(0) >> b & 1))
    return out


def thermometer_count(m, bits, name):
    """``K`` for a thermometer code ``bits``: :func:`thermometer_functions`' identity."""
    width = len(bits).bit_length()
    return thermometer_functions(m, bits, name, {"count": (lambda k: k, width)})["count"]


def fresh_or_held(m, value, fresh, name):
    """``value`` in a cycle ``fresh`` is high, and after it the copy of it taken then (the
    register ``name``): for a value valid in one cycle only (a read port's word in the cycle
    after its read, a register loaded in every cycle), so that the copy's load enable is a
    registered flag and not the handshake that made the value."""
    copy = Signal.like(value, name=name)
    with m.If(fresh):
        m.d.sync += copy.eq(value)
    return Mux(fresh, value, copy)


#: Bits per first-level group of :func:`popcount`: one LUT4 per bit of the group's count.
POPCOUNT_GROUP = 4


def popcount(m, bits, name):
    """Sum of the bits of a value: each group of :data:`POPCOUNT_GROUP` bits counted by a
    table (a LUT level, no carry chain), then an adder tree of the groups' counts, each level
    only as wide as its largest sum; the levels are named signals (shallow expressions keep
    the Python simulator's compile time low)."""
    if len(bits) == 0:
        return 0
    flat = Signal(len(bits), name=f"{name}_bits")
    m.d.comb += flat.eq(bits)
    terms = []  # (signal, largest value)
    for g in range(0, len(bits), POPCOUNT_GROUP):
        group = flat[g:g + POPCOUNT_GROUP]
        if len(group) == 1:
            terms.append((group, 1))
            continue
        s = Signal(range(len(group) + 1), name=f"{name}_g{g // POPCOUNT_GROUP}")
        m.d.comb += s.eq(Array([bin(v).count("1") for v in range(1 << len(group))])[group])
        terms.append((s, len(group)))
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms), 2):
            if i + 1 == len(terms):
                nxt.append(terms[i])
                continue
            (a, na), (b, nb) = terms[i], terms[i + 1]
            s = Signal(range(na + nb + 1), name=f"{name}_l{level}_{i // 2}")
            m.d.comb += s.eq(a + b)
            nxt.append((s, na + nb))
        terms = nxt
        level += 1
    return terms[0][0]


#: Bits per table of :func:`shallow_popcount`'s compression levels (one LUT6 per output bit).
COMPRESS_GROUP = 6


def shallow_popcount(m, bits, name):
    """Sum of the bits of a value in a few LUT levels and no carry chain, for a count that
    must reach a register within a cycle (:func:`act_counts_of`). The bits, in columns by
    weight, are compressed level by level: each column's bits in groups of at most
    :data:`COMPRESS_GROUP`, each group counted by a table whose bits go to that column and
    the next ones, until no column holds more than three bits (32 bits: two levels, nine
    bits left); then each bit of the sum is a table of the bits of its weight and below.
    Every table is a named signal."""
    width = len(bits).bit_length()  # bits of the sum
    if len(bits) <= 1:
        return Value.cast(bits) if len(bits) else Const(0, 1)
    cols = [[Value.cast(bits)[i] for i in range(len(bits))]] + [[] for _ in range(width - 1)]
    level = 0
    while max(map(len, cols)) > 3:
        nxt = [[] for _ in cols]
        for w, col in enumerate(cols):
            if len(col) <= 2:  # (no fewer bits from a table)
                nxt[w] += col
                continue
            groups = -(-len(col) // COMPRESS_GROUP)  # of equal sizes (+-1), at least 3 bits
            for g in range(groups):
                group = col[g * len(col) // groups:(g + 1) * len(col) // groups]
                s = Signal(range(len(group) + 1), name=f"{name}_l{level}w{w}g{g}")
                m.d.comb += s.eq(Array([bin(v).count("1") for v in range(1 << len(group))])
                                 [Cat(*group)])
                for k in range(len(s)):
                    if w + k < width:  # (a carry out of the sum's width is always 0)
                        nxt[w + k].append(s[k])
        cols, level = nxt, level + 1
    out = Signal(width, name=name)
    for k in range(width):
        ins = [(w, b) for w in range(k + 1) for b in cols[w]]
        m.d.comb += out[k].eq(Array([
            sum(1 << w for j, (w, _) in enumerate(ins) if v >> j & 1) >> k & 1
            for v in range(1 << len(ins))])[Cat(*(b for _, b in ins))])
    return out


#: The non-zero counts of an item's 32 activation elements (:func:`act_counts`): ``all`` of
#: them, the first ``vec`` ones (an INT4 vector), and their non-zero ``hi`` and ``lo`` nibbles.
ACT_COUNTS_LAYOUT = data.StructLayout({
    "all": range(MX_BLOCK + 1), "vec": range(MX_BLOCK + 1), "hi": range(MX_BLOCK + 1),
    "lo": range(MX_BLOCK + 1)})


#: Bits of :func:`act_nonzero`'s flags: per element its high nibble, its low nibble, itself.
ACT_NONZERO_BITS = 3 * MX_BLOCK


def act_nonzero(x):
    """The non-zero flags of the 32 elements ``x``'s high nibbles (bits 0-31), low nibbles
    (bits 32-63) and whole elements (bits 64-95): what :func:`act_counts_of` counts, each
    count a table and an adder tree from flags of its own (no OR before it when registered)."""
    return Cat(Cat(*[x[e][4:8] != 0 for e in range(MX_BLOCK)]),
               Cat(*[x[e][0:4] != 0 for e in range(MX_BLOCK)]),
               Cat(*[x[e] != 0 for e in range(MX_BLOCK)]))


def act_counts_of(m, nz, vector, name="nnz"):
    """The counts of :data:`ACT_COUNTS_LAYOUT` from the flags ``nz`` of :func:`act_nonzero`
    (e.g. registered), as a view of the layout (:func:`shallow_popcount`: a register's
    input within a cycle of the flags)."""
    assert len(nz) == ACT_NONZERO_BITS, "the flags of act_nonzero"
    hi, lo, nz_all = nz[:MX_BLOCK], nz[MX_BLOCK:2 * MX_BLOCK], nz[2 * MX_BLOCK:]
    return ACT_COUNTS_LAYOUT(pack_value(ACT_COUNTS_LAYOUT, {
        "all": shallow_popcount(m, nz_all, f"{name}_all"),
        "vec": shallow_popcount(m, nz_all[:vector], f"{name}_vec"),
        "hi": shallow_popcount(m, hi, f"{name}_hi"),
        "lo": shallow_popcount(m, lo, f"{name}_lo")}))


def act_counts(m, x, vector, name="nnz"):
    """The counts of :data:`ACT_COUNTS_LAYOUT` of the 32 elements ``x`` (an item's ``x``),
    the first ``vector`` of them in ``vec``: the SPE's item cost (:func:`hw.spe.spe_item_cycles`)
    is a function of them and the mode (:func:`shallow_popcount`); a view of the layout."""
    return act_counts_of(m, act_nonzero(x), vector, name)

"""Post-processing unit (PPU): per-channel scale, bias, residual, saturation, ReLU and
re-quantization of one output block (docs/numerics.md section 5), as the wiring of three
stream components: :class:`hw.ppu_fixed.PPUFixedPoint` (the fixed-point value),
:class:`hw.ppu_queue.BlockQueue` (value buffer, closed blocks, scale and thresholds) and
:class:`hw.ppu_drain.BlockQuantizer` (the codes, into the output block)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref

from .common import VECTOR_CHOICES, Format, check_choice, check_int, validating
from .ppu_drain import DRAIN_LATENCY, BlockQuantizer, ppu_out_layout
from .ppu_fixed import PPUFixedPoint, fixed_latency, ppu_in_layout
from .ppu_queue import BUFFER_DEPTH, QUEUE_LATENCY, BlockQueue

__all__ = ["PPU", "PPU_LATENCY", "ppu_latency", "BUFFER_DEPTH", "ppu_block_out", "block_closed_by",
           "ppu_in_layout", "ppu_out_layout"]

#: Cycles from the handshake of a block's last element to its first code when the drain is
#: free: the fixed-point stage's product and fixed-point registers f1, f2
#: (:data:`~hw.ppu_fixed.FIXED_LATENCY` = 2), the queue's closed-block, scale and threshold
#: registers b1, b2, b3 (:data:`~hw.ppu_queue.QUEUE_LATENCY` = 3), the quantizer's
#: buffer-read and comparison registers q, c (:data:`~hw.ppu_drain.DRAIN_LATENCY` = 2).
PPU_LATENCY = fixed_latency(False) + QUEUE_LATENCY + DRAIN_LATENCY


def ppu_latency(fixed_split=False):
    """:data:`PPU_LATENCY` of a PPU built with ``fixed_split``
    (:data:`hw.ppu_fixed.SPLIT_REGISTERS` fixed-point registers more)."""
    return fixed_latency(fixed_split) + QUEUE_LATENCY + DRAIN_LATENCY


def ppu_block_out(last_cycle, count, prev_out, latency=PPU_LATENCY):
    """Cycle in which a block is on ``o``: its last element's handshake in ``last_cycle``, its
    ``count`` codes one per cycle from ``latency`` (:func:`ppu_latency`) cycles later, not
    before the previous block was on ``o`` (``prev_out``; ``None`` for the first). Exact while
    ``o`` is always ready and the PPU never stalls its input, which the accelerator's
    serializer guarantees (blocks arrive no faster than one element per cycle;
    docs/hardware.md 4.5)."""
    start = last_cycle + latency
    if prev_out is not None:
        start = max(start, prev_out)
    return start + count


def block_closed_by(chan, channels, block):
    """Channel count of the output block that channel ``chan`` (of ``channels``) closes, i.e.
    that it enters the PPU with ``last`` set: block position ``block - 1`` or the last
    channel; 0 if it closes none."""
    if chan % block == block - 1 or chan == channels - 1:
        return chan % block + 1
    return 0


class PPU(wiring.Component):
    """Element-serial, pipelined post-processing and re-quantization.

    Parameters (keyword-only; ``hw.top.block_args`` derives them from the configuration)
    ------------------------------------------------------------------------------------
    vector : int, one of 4, 8, 16
        Channels per UINT4/INT4 output vector (MXINT8 output blocks have 32).
    max_channels : int, 1..4096
        Largest channel index + 1 (width of ``chan`` / ``base``).
    fixed_split : bool (default False)
        The fixed-point stage's five extra registers (:class:`hw.ppu_fixed.PPUFixedPoint`'s
        ``split``; :func:`ppu_latency`).
    running_scale : bool (default False)
        Per-value scale comparisons: made in halves by the fixed-point stage
        (``PPUFixedPoint(scale_codes=True)``), ORed per block by the queue
        (:class:`hw.ppu_queue.BlockQueue`).

    Members
    -------
    shift : In(range(64)), relu : In(1), res_en : In(1), out_format : In(Format)
        Layer configuration, stable while elements are in flight. UINT4 output needs ``relu``.
    i : In(stream.Signature(ppu_in_layout(max_channels)))
        One channel per transfer, channels of a block consecutive and in order.
    o : Out(stream.Signature(ppu_out_layout(max_channels)))
        One transfer per output block.

    Function (per element, exactly golden.intref.ppu_fixed and quantize_output)
    -----------------------------------------------------------------------------
    ``Y = RNE(acc * k * 2**-shift) + bias (+ residual)``, clamped to signed 32 bits (counted
    in ``sat``), ``max(Y, 0)`` if ``relu``. Per block, with ``m = max |Y|``: UINT4/INT4
    (``qmax`` 15/7): scale = the smallest FP8 code with ``qmax * value * 2**16 >= m`` (127
    constant comparators, a thermometer count), codes ``clamp(RNE(|Y| / (value * 2**16)),
    qmax)`` with the sign of ``Y`` (``qmax`` comparisons of ``2|Y|`` with ``(2j+1) * M' <<
    (E' + 16)``, ties to even). MXINT8: ``p = floor(log2 m)``, scale ``p + 111`` (``0`` for an
    all-zero block), codes ``clamp(RNE(Y * 2**(6 - p)), +-127)``.

    Structure, timing and backpressure
    ----------------------------------
    Three stream components in a row, each with its own contract: ``fixed``
    (:class:`hw.ppu_fixed.PPUFixedPoint`): the product register f1 ``acc * k`` (with ``bias +
    residual``) and the fixed-point register f2 ``Y`` (shift, round, add, clamp, ReLU), moving
    whenever the queue takes values; ``queue`` (:class:`hw.ppu_queue.BlockQueue`): a circular
    value buffer of :data:`BUFFER_DEPTH` (LUT RAM), where a ``last`` element closes its block
    (first slot, count, max ``|Y|``) into three registers: b1 (closed; with a second entry b0
    for a block that closes while b1 cannot move on), b2 (the FP8 scale's thermometer count
    or the MXINT8 maximum's leading one), b3 (the 15 rounding thresholds, the MXINT8 shift),
    whose block is read out one element per cycle (the read address register); ``drain``
    (:class:`hw.ppu_drain.BlockQuantizer`): one quantizer, the buffer-read register (the
    comparisons with the block's parameters) and the comparison register (the count and
    sign), straight into ``o``'s payload. A block is on ``o`` at :func:`ppu_block_out`:
    ``count`` cycles after its first code, which is :data:`PPU_LATENCY` cycles after its
    last handshake or the cycle the previous block was on ``o``. The drain pauses while a
    finished block waits on ``o`` (``o.valid & ~o.ready``); the input (``i.ready``, a
    function of registers only) stalls while b0 is taken or the buffer is full (never in the
    accelerator, whose blocks arrive no faster than their length).
    """

    def __init__(self, *, vector, max_channels, fixed_split=False, running_scale=False):
        with validating(self):
            self.vector = check_choice("vector", vector, VECTOR_CHOICES)
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        self.fixed_split, self.running_scale = bool(fixed_split), bool(running_scale)
        super().__init__({
            "shift": In(range(intref.SCALE_SHIFT_MAX + 1)),
            "relu": In(1),
            "res_en": In(1),
            "out_format": In(Format),
            "i": In(stream.Signature(ppu_in_layout(max_channels))),
            "o": Out(stream.Signature(ppu_out_layout(max_channels))),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.max_channels
        m.submodules.fixed = fixed = PPUFixedPoint(max_channels=C, split=self.fixed_split,
                                                   scale_codes=self.running_scale)
        m.submodules.queue = queue = BlockQueue(max_channels=C,
                                                running_scale=self.running_scale)
        m.submodules.drain = drain = BlockQuantizer(max_channels=C)
        wiring.connect(m, wiring.flipped(self.i), fixed.i)
        wiring.connect(m, fixed.o, queue.i)
        wiring.connect(m, queue.o, drain.i)
        wiring.connect(m, drain.o, wiring.flipped(self.o))
        m.d.comb += [
            fixed.shift.eq(self.shift), fixed.relu.eq(self.relu), fixed.res_en.eq(self.res_en),
            *([fixed.out_format.eq(self.out_format)] if self.running_scale else []),
            queue.out_format.eq(self.out_format), drain.out_format.eq(self.out_format),
            # the queue counts an element from the input handshake: the buffer keeps a slot
            # for each one in the fixed stage's registers (i.ready = queue.i.ready, the fixed
            # stage is lockstep)
            queue.accepted.eq(self.i.valid & self.i.ready),
        ]
        return m

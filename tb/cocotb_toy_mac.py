"""cocotb tests of :class:`hw.toy_mac.ToyMAC` (run through :func:`tb.simulator.run_cocotb`).

Driver -> DUT -> monitor, checked in order against a numpy reference. Inputs come with random
valid gaps and the output with random ready backpressure; the seed is fixed (:data:`SEED`).

Sampling rule used by the stream helpers: signals are written right after a rising edge and
sampled in the ``ReadOnly`` phase of the same time step, i.e. just before the next edge, so a
handshake seen there happens at that next edge. This is race-free on Verilator and Icarus alike.
"""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.toy_mac import ACT_SHAPE, LATENCY, WEIGHT_SHAPE, ToyMAC

SEED = 0x5D_0001
CLOCK_NS = 10
#: Random vectors per parametrized case (three cases) plus the corner cases.
N_RANDOM = 100


class StreamSource:
    """Drives ``<prefix>valid``/``<prefix>payload``; idle cycles before each word with
    probability ``1 - p_valid`` per cycle."""

    def __init__(self, dut, prefix, rng, p_valid):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}valid")
        self.ready = getattr(dut, f"{prefix}ready")
        self.payload = getattr(dut, f"{prefix}payload")
        self.rng, self.p_valid = rng, p_valid

    async def send(self, words):
        self.valid.value = 0
        for word in words:
            while self.rng.random() >= self.p_valid:
                await RisingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = int(word)
            while True:
                await ReadOnly()
                accepted = self.ready.value == 1
                await RisingEdge(self.clk)
                if accepted:
                    break
            self.valid.value = 0


class StreamSink:
    """Accepts words from ``<prefix>valid``/``<prefix>payload`` with ``<prefix>ready`` high
    with probability ``p_ready`` per cycle; records (cycle, signed payload)."""

    def __init__(self, dut, prefix, rng, p_ready):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}valid")
        self.ready = getattr(dut, f"{prefix}ready")
        self.payload = getattr(dut, f"{prefix}payload")
        self.rng, self.p_ready = rng, p_ready
        self.received = []   # signed payloads, in order
        self.cycles = []     # cycle index of each handshake

    async def receive(self, count):
        cycle = 0
        while len(self.received) < count:
            self.ready.value = int(self.rng.random() < self.p_ready)
            await ReadOnly()
            if self.valid.value == 1 and self.ready.value == 1:
                self.received.append(self.payload.value.to_signed())
                self.cycles.append(cycle)
            await RisingEdge(self.clk)
            cycle += 1
        self.ready.value = 0


class TB:
    def __init__(self, dut, seed):
        self.dut = dut
        # i__payload packs `lanes` UINT4 activations then `lanes` INT4 weights.
        self.lanes = len(dut.i__payload) // (ACT_SHAPE.width + WEIGHT_SHAPE.width)
        self.layout = ToyMAC.payload_layout(self.lanes)
        self.rng = np.random.default_rng(seed)
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        Clock(dut.clk, CLOCK_NS, unit="ns").start()

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def vectors(self, count):
        """Corner cases followed by ``count`` random vectors: (activations, weights)."""
        a_max, w_min, w_max = 2 ** ACT_SHAPE.width - 1, -(2 ** (WEIGHT_SHAPE.width - 1)), \
            2 ** (WEIGHT_SHAPE.width - 1) - 1
        lanes = self.lanes
        corners_a = np.array([[a_max] * lanes, [a_max] * lanes, [0] * lanes, [a_max] * lanes])
        corners_w = np.array([[w_min] * lanes, [w_max] * lanes, [w_min] * lanes, [0] * lanes])
        a = self.rng.integers(0, a_max + 1, size=(count, lanes))
        w = self.rng.integers(w_min, w_max + 1, size=(count, lanes))
        return np.vstack([corners_a, a]), np.vstack([corners_w, w])

    def pack(self, a, w):
        return self.layout.const({"a": [int(x) for x in a], "w": [int(x) for x in w]}).as_bits()

    async def run(self, a, w, p_valid, p_ready):
        """Send all vectors, return the signed results and the sink's handshake cycles."""
        source = StreamSource(self.dut, "i__", self.rng, p_valid)
        sink = StreamSink(self.dut, "o__", self.rng, p_ready)
        words = [self.pack(x, y) for x, y in zip(a, w)]
        receiving = cocotb.start_soon(sink.receive(len(words)))
        await source.send(words)
        await receiving
        return sink.received, sink.cycles


def check(received, a, w):
    expected = (a.astype(np.int64) * w.astype(np.int64)).sum(axis=1)
    assert len(received) == len(expected), f"{len(received)} results for {len(expected)} inputs"
    bad = [(k, got, int(exp)) for k, (got, exp) in enumerate(zip(received, expected))
           if got != exp]
    assert not bad, f"{len(bad)} wrong results (index, got, expected), first: {bad[:5]}"


@cocotb.test(timeout_time=200, timeout_unit="us")
@cocotb.parametrize((("p_valid", "p_ready"), [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9)]))
async def test_random_gaps_and_backpressure(dut, p_valid, p_ready):
    """Random vectors, random valid gaps, random ready backpressure, in-order exact check."""
    tb = TB(dut, SEED + int(100 * p_valid) + int(10_000 * p_ready))
    await tb.reset()
    a, w = tb.vectors(N_RANDOM)
    received, _ = await tb.run(a, w, p_valid, p_ready)
    check(received, a, w)


@cocotb.test(timeout_time=50, timeout_unit="us")
async def test_full_throughput(dut):
    """With no gaps and no backpressure the unit takes and returns one vector per cycle."""
    tb = TB(dut, SEED)
    await tb.reset()
    a, w = tb.vectors(N_RANDOM)
    received, cycles = await tb.run(a, w, 1.0, 1.0)
    check(received, a, w)
    assert cycles == list(range(LATENCY, LATENCY + len(a))), \
        f"expected one result per cycle from cycle {LATENCY}, got cycles {cycles[:8]}..."

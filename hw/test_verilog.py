# amaranth: UnusedElaboratable=no
"""Python-simulator (amaranth.sim) tests of hw/toy_mac.py and tests of hw/verilog.py.

The cocotb/Verilator/Icarus side of the same block is in tb/test_toolchain.py.

The first line silences Amaranth's UnusedElaboratable for objects created in this file: a
constructor that raises leaves a half-built component behind, whose warning (raised from
``__del__``) pytest's ``filterwarnings = error`` would turn into a failure of a later test.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.toy_mac import ACT_SHAPE, LATENCY, WEIGHT_SHAPE, ToyMAC
from hw.verilog import emit_verilog

SEED = 0x5D_0002


def _random_vectors(rng, count, lanes):
    a = rng.integers(0, 2 ** ACT_SHAPE.width, size=(count, lanes))
    w = rng.integers(-(2 ** (WEIGHT_SHAPE.width - 1)), 2 ** (WEIGHT_SHAPE.width - 1),
                     size=(count, lanes))
    return a, w


def _simulate(dut, a, w, *, p_valid, p_ready, rng):
    """Stream (a, w) through ``dut``; return (results in order, cycle of each output)."""
    received, cycles = [], []
    # Generous bound so that a lost result ends the simulation (and fails the comparison)
    # instead of hanging: the mean cost of a vector is 1/p_valid + 1/p_ready cycles.
    max_cycles = 20 * len(a) * int(1 / p_valid + 1 / p_ready + 1)

    async def source(ctx):
        for x, y in zip(a, w):
            while rng.random() >= p_valid:
                await ctx.tick()
            ctx.set(dut.i.payload, {"a": [int(v) for v in x], "w": [int(v) for v in y]})
            ctx.set(dut.i.valid, 1)
            # Not `ctx.tick().until(...)`: a background testbench abandoned inside `until()`
            # raises "aclose(): asynchronous generator is already running" when collected.
            while not (await ctx.tick().sample(dut.i.ready))[2]:
                pass
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        cycle = 0
        while len(received) < len(a) and cycle < max_cycles:
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                received.append(payload)
                cycles.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)  # the sink decides when the test is over
    sim.add_testbench(sink)
    sim.run()
    return received, cycles


@pytest.mark.parametrize("lanes", [1, 4, 7])
@pytest.mark.parametrize("p_valid,p_ready", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9)])
def test_toy_mac_matches_numpy(lanes, p_valid, p_ready):
    rng = np.random.default_rng([SEED, lanes, int(10 * p_valid), int(10 * p_ready)])
    a, w = _random_vectors(rng, 150, lanes)
    # Extremes first: the widest negative and positive sums.
    a[0], w[0] = 15, -8
    a[1], w[1] = 15, 7
    dut = ToyMAC(lanes=lanes)
    received, _ = _simulate(dut, a, w, p_valid=p_valid, p_ready=p_ready, rng=rng)
    expected = (a.astype(np.int64) * w).sum(axis=1)
    assert received == expected.tolist()
    assert expected[0] == lanes * 15 * -8


def test_toy_mac_full_throughput():
    rng = np.random.default_rng(SEED)
    a, w = _random_vectors(rng, 64, 4)
    received, cycles = _simulate(ToyMAC(), a, w, p_valid=1.0, p_ready=1.0, rng=rng)
    assert received == (a.astype(np.int64) * w).sum(axis=1).tolist()
    assert cycles == list(range(LATENCY, LATENCY + len(a)))


def test_toy_mac_compute_model():
    assert ToyMAC.compute([15, 15], [-8, 7]) == -15
    with pytest.raises(ValueError, match="same length"):
        ToyMAC.compute([1, 2], [3])


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
def test_sum_width_is_exact(lanes):
    width = ToyMAC.sum_width(lanes)
    lowest, highest = lanes * 15 * -8, lanes * 15 * 7
    assert -(2 ** (width - 1)) <= lowest and highest < 2 ** (width - 1)
    # One bit fewer would not hold both extremes.
    assert lowest < -(2 ** (width - 2)) or highest >= 2 ** (width - 2)


@pytest.mark.parametrize("lanes", [0, -1, 2.0, "4", True, None])
def test_toy_mac_rejects_bad_lanes(lanes):
    with pytest.raises(ValueError, match=f"lanes must be an integer >= 1, not {lanes!r}"):
        ToyMAC(lanes=lanes)


def test_emit_verilog_writes_file_and_ports(tmp_path):
    path = tmp_path / "deeper" / "toy_mac.v"
    text = emit_verilog(ToyMAC(lanes=2), "toy_mac", path)
    assert path.read_text() == text
    assert not [p for p in path.parent.iterdir() if p.name != "toy_mac.v"]  # no temp files left
    assert "module toy_mac(" in text
    for port in ("clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid",
                 "o__ready"):
        assert f" {port};" in text
    assert "input [15:0] i__payload;" in text  # 2 x UINT4 + 2 x INT4
    assert f"output [{ToyMAC.sum_width(2) - 1}:0] o__payload;" in text


@pytest.mark.parametrize("name", ["", "1top", "top-level", None])
def test_emit_verilog_rejects_bad_name(name):
    with pytest.raises(ValueError, match="Verilog module name must be an identifier"):
        emit_verilog(object(), name)  # the name is checked before the design is used

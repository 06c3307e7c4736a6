"""cocotb unit tests of the emitted blocks (DPE, SPE, PPU) with random backpressure.

Each test builds its cases with the same builders as the amaranth.sim unit tests
(:func:`hw.simtest.engine_case`, :func:`hw.simtest.ppu_case`: random data, the golden
reference, the block's cycle model), then drives the block's Verilog ports: a producer on the
``i`` stream with random idle cycles, a consumer on ``o`` that holds ``ready`` low at random,
and a monitor that counts the cycles ``busy`` is high. Run by ``tb/test_blocks.py`` through
:func:`tb.simulator.run_cocotb`; the environment variable ``SQDM_BLOCK`` names the block and its
parameters as JSON (``{"block": "dpe", "params": {...}, "cases": [{...}, ...]}``).
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from golden import intref
from hw.common import item_layout, result_layout
from hw.ppu import ppu_in_layout, ppu_out_layout
from hw.simtest import dpe_cycles, engine_case, ppu_case, spe_cycles

CLOCK_NS = 10


def layouts(block, params):
    """(input payload layout, output payload layout) of a block."""
    if block == "dpe":
        return item_layout(params["tile"]), result_layout(params["tile"])
    if block == "spe":
        return item_layout(params["cols"]), result_layout(params["cols"])
    if block == "ppu":
        return ppu_in_layout(params["max_channels"]), ppu_out_layout(params["max_channels"])
    raise ValueError(f"unknown block {block!r}")


def build_case(block, params, case):
    """The :class:`hw.simtest.StreamCase` of one JSON case description."""
    if block == "ppu":
        return ppu_case(out_format=intref.Format[case["out_format"].upper()],
                        relu=case["relu"], residual=case["residual"], seed=case["seed"],
                        vector=params["vector"], channels=case.get("channels", 40),
                        pixels=case.get("pixels", 3))
    if block == "dpe":
        tile = params["tile"]
        cycles = dpe_cycles(params["vector"], params["cols"], tile)
    else:
        tile = params["cols"]
        cycles = spe_cycles(params["vector"], params["lanes"])
    return engine_case(tile=tile, x_format=intref.Format[case["x_format"].upper()],
                       units=case["units"], seed=case["seed"], item_cycles=cycles,
                       sparsity=case.get("sparsity", 0.0), vector=params["vector"])


async def put(dut, bits, rnd, gap):
    """One transfer on ``i``, after random idle cycles."""
    while rnd.random() < gap:
        await RisingEdge(dut.clk)
    dut.i__valid.value = 1
    dut.i__payload.value = bits
    while True:
        await ReadOnly()
        ready = int(dut.i__ready.value)
        await RisingEdge(dut.clk)
        if ready:
            break
    dut.i__valid.value = 0


async def get(dut, rnd, gap):
    """One transfer from ``o`` (``ready`` held low for random cycles first); its bits."""
    while rnd.random() < gap:
        dut.o__ready.value = 0
        await RisingEdge(dut.clk)
    dut.o__ready.value = 1
    while True:
        await ReadOnly()
        valid = int(dut.o__valid.value)
        bits = int(dut.o__payload.value) if valid else None
        await RisingEdge(dut.clk)
        if valid:
            break
    dut.o__ready.value = 0
    return bits


async def run_case(dut, case, in_layout, out_layout):
    """Drive one case; returns the number of cycles ``busy`` was high (None without busy)."""
    for name, value in case.config.items():
        getattr(dut, name).value = value
    in_rnd, out_rnd = random.Random(case.seed), random.Random(case.seed + 1)
    results, busy = [], {"cycles": 0, "stop": False}

    async def producer():
        for payload in case.inputs:
            await put(dut, in_layout.const(payload).as_bits(), in_rnd, case.in_gap)

    async def monitor():
        while not busy["stop"]:
            await ReadOnly()
            busy["cycles"] += int(dut.busy.value)
            await RisingEdge(dut.clk)

    prod = cocotb.start_soon(producer())
    mon = cocotb.start_soon(monitor()) if case.busy_cycles is not None else None
    for _ in range(case.outputs):
        results.append(out_layout.from_bits(await get(dut, out_rnd, case.out_gap)))
    await prod
    if mon is not None:
        for _ in range(4):  # the engine goes idle within a cycle of its last result
            await RisingEdge(dut.clk)
        busy["stop"] = True
        await mon
    case.check(results)
    if case.busy_cycles is not None:
        assert busy["cycles"] == case.busy_cycles, (busy["cycles"], case.busy_cycles)
    return busy["cycles"]


@cocotb.test()
async def block_cases(dut):
    """Every case of ``SQDM_BLOCK`` on the block, one after the other (no reset between)."""
    spec = json.loads(os.environ["SQDM_BLOCK"])
    block, params = spec["block"], spec["params"]
    in_layout, out_layout = layouts(block, params)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for k, desc in enumerate(spec["cases"]):
        case = build_case(block, params, desc)
        busy = await run_case(dut, case, in_layout, out_layout)
        dut._log.info("%s case %d %s: %d transfers in, %d out, busy %s: ok", block, k, desc,
                      len(case.inputs), case.outputs, busy)

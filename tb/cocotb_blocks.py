"""cocotb unit tests of the emitted blocks (DPE, SPE, PPU, sparsity detector, address
generator) with random backpressure.

Each test builds its cases with the same builders as the amaranth.sim unit tests
(:mod:`hw.simtest`: ``engine_case``, ``ppu_case``, ``detector_case``, ``addrgen_case``: random
data, the golden reference, the block's cycle model), then drives the block's Verilog ports:
producers with random idle cycles, consumers that hold ``ready`` low at random, and a monitor
that counts the cycles ``busy`` is high. Run by ``tb/test_blocks.py`` through
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
from hw.addrgen import addr_item_layout
from hw.common import item_layout, result_layout
from hw.detector import detector_in_layout
from hw.ppu import ppu_in_layout, ppu_out_layout
from hw.simtest import addrgen_case, detector_case, dpe_cycles, engine_case, ppu_case, spe_cycles

CLOCK_NS = 10


def layouts(block, params):
    """(input payload layout, output payload layout) of a block."""
    if block == "dpe":
        return item_layout(params["tile"]), result_layout(params["tile"])
    if block == "spe":
        return item_layout(params["cols"]), result_layout(params["cols"])
    if block == "ppu":
        return ppu_in_layout(params["max_channels"]), ppu_out_layout(params["max_channels"])
    return None, None  # detector, addrgen: own runners


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


def port(dut, stream, name):
    """The Verilog port ``<stream>__<name>`` (Amaranth's flattening of interface members)."""
    return getattr(dut, f"{stream}__{name}")


async def put(dut, bits, rnd, gap, stream="i"):
    """One transfer on ``stream``, after random idle cycles."""
    while rnd.random() < gap:
        await RisingEdge(dut.clk)
    port(dut, stream, "valid").value = 1
    port(dut, stream, "payload").value = bits
    while True:
        await ReadOnly()
        ready = int(port(dut, stream, "ready").value)
        await RisingEdge(dut.clk)
        if ready:
            break
    port(dut, stream, "valid").value = 0


async def get(dut, rnd, gap, stream="o"):
    """One transfer from ``stream`` (``ready`` held low for random cycles first); its bits."""
    while rnd.random() < gap:
        port(dut, stream, "ready").value = 0
        await RisingEdge(dut.clk)
    port(dut, stream, "ready").value = 1
    while True:
        await ReadOnly()
        valid = int(port(dut, stream, "valid").value)
        bits = int(port(dut, stream, "payload").value) if valid else None
        await RisingEdge(dut.clk)
        if valid:
            break
    port(dut, stream, "ready").value = 0
    return bits


async def run_detector(dut, params, desc):
    """Clear, stream a layer's zero flags in with random gaps, read back counts and map."""
    case = detector_case(out_format=intref.Format[desc["out_format"].upper()],
                         channels=desc["channels"], threshold=desc["threshold"],
                         seed=desc["seed"], vector=params["vector"])
    layout = detector_in_layout(params["max_channels"])
    for name, value in case["config"].items():
        getattr(dut, name).value = value
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    rnd = random.Random(case["seed"])
    for payload in case["inputs"]:
        await put(dut, layout.const(payload).as_bits(), rnd, 0.3)
    await RisingEdge(dut.clk)
    counts = []
    for c in range(desc["channels"]):
        dut.rd_chan.value = c
        await ReadOnly()
        counts.append(int(dut.rd_count.value))
        await RisingEdge(dut.clk)
    bits = int(dut.map.value)
    groups = len(case["map_bits"])
    assert counts == case["counts"], (counts, case["counts"])
    assert [(bits >> g) & 1 for g in range(groups)] == case["map_bits"]
    assert bits >> groups == 0, f"map bits set beyond {groups} groups: {bits:#x}"
    return len(case["inputs"])


async def run_addrgen(dut, params, desc):
    """Start one layer walk; consume both item streams with random ready; exact items."""
    shape = intref.ConvShape(*desc["shape"])
    groups = -(-params["max_cin"] // params["vector"])
    case = addrgen_case(shape, intref.Format[desc["x_format"].upper()], groups=groups,
                        seed=desc["seed"], tile=params["tile"], vector=params["vector"])
    layout = addr_item_layout()
    dut.desc.value = case["desc"].as_bits()
    dut.map.value = case["route"]
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    got = {}

    async def consume(name, rnd):
        items = []
        for _ in range(len(case["want"][name])):
            it = layout.from_bits(await get(dut, rnd, 0.3, stream=name))
            items.append({k: int(getattr(it, k))
                          for k in ("act_addr", "w_addr", "first", "last", "null")})
        got[name] = items

    tasks = [cocotb.start_soon(consume(n, random.Random(case["seed"] + k)))
             for k, n in enumerate(("d", "s"))]
    for t in tasks:
        await t
    for name in ("d", "s"):
        for k, (g, w) in enumerate(zip(got[name], case["want"][name])):
            assert g == w, f"stream {name} item {k}: got {g}, expected {w}"
    return sum(len(v) for v in got.values())


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
    for stream, member in {"dpe": (("i", "valid"), ("o", "ready")),
                           "spe": (("i", "valid"), ("o", "ready")),
                           "ppu": (("i", "valid"), ("o", "ready")),
                           "detector": (("i", "valid"),),
                           "addrgen": (("d", "ready"), ("s", "ready"))}[block]:
        port(dut, stream, member).value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for k, desc in enumerate(spec["cases"]):
        if block in ("detector", "addrgen"):
            run = run_detector if block == "detector" else run_addrgen
            transfers = await run(dut, params, desc)
            dut._log.info("%s case %d %s: %d transfers: ok", block, k, desc, transfers)
            continue
        case = build_case(block, params, desc)
        busy = await run_case(dut, case, in_layout, out_layout)
        dut._log.info("%s case %d %s: %d transfers in, %d out, busy %s: ok", block, k, desc,
                      len(case.inputs), case.outputs, busy)

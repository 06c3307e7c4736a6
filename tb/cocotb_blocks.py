"""cocotb unit tests of the emitted blocks (DPE, SPE, PPU, sparsity detector, address
generator, operand fetch, join serializer, output writer) with random backpressure.

Each test builds its cases with the same builders as the amaranth.sim unit tests
(:mod:`hw.simtest`: ``engine_case``, ``ppu_case``, ``detector_case``, ``addrgen_case``,
``fetch_case``, ``serializer_case``, ``writer_case``: random data, the Python reference, the
block's cycle model), then drives the block's Verilog ports: producers with random idle cycles,
consumers that hold ``ready`` low at random, synchronous memories on the read ports
(:func:`read_port`), a monitor that counts the cycles ``busy`` is high, and a
:func:`tb.streamcheck.stream_checker` on every stream port. Run by ``tb/test_blocks.py``
through :func:`tb.simulator.run_cocotb`; the environment variable ``SQDM_BLOCK`` names the block,
its parameters, its stream ports and their direction as JSON (``{"block": "dpe", "params":
{...}, "streams": {"i": "in", "o": "out"}, "cases": [{...}, ...]}``).

``broken_driver`` is a deliberately failing test (``SQDM_FAULT``: ``drop`` or ``change``): a
producer that breaks the handshake, which the stream checker must report.
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
from hw.simtest import (addrgen_case, detector_case, dpe_cycles, engine_case, fetch_case,
                        ppu_case, serializer_case, spe_cycles, writer_case)
from tb.streamcheck import stream_checker

CLOCK_NS = 10


def layouts(block, params):
    """(input payload layout, output payload layout) of a block."""
    if block == "dpe":
        return item_layout(params["tile"]), result_layout(params["tile"])
    if block == "spe":
        return item_layout(params["cols"]), result_layout(params["cols"])
    if block == "ppu":
        return ppu_in_layout(params["max_channels"]), ppu_out_layout(params["max_channels"])
    return None, None  # the others: own runners


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


async def tally(dut, totals):
    """Until cancelled: adds each port's value at every rising edge into ``totals`` (port name
    -> running sum)."""
    while True:
        await ReadOnly()
        for name in totals:
            totals[name] += int(getattr(dut, name).value)
        await RisingEdge(dut.clk)


async def read_port(dut, prefix, words, en=None):
    """Until cancelled: a synchronous read port of a memory holding ``words`` (from address 0)
    on the ports ``<prefix>_addr`` / ``<prefix>_data`` and the enable ``en`` (default
    ``<prefix>_en``). At a rising edge with the enable high, the word at the address is on
    the data port after the edge; the data holds while the enable is low."""
    en = getattr(dut, f"{prefix}_en") if en is None else en
    addr, data = getattr(dut, f"{prefix}_addr"), getattr(dut, f"{prefix}_data")
    while True:
        await ReadOnly()
        read = int(addr.value) if int(en.value) else None
        await RisingEdge(dut.clk)
        if read is not None:
            assert read < len(words), f"{prefix}: read of word {read} of {len(words)}"
            data.value = words[read]


async def configure(dut, config):
    """Set the layer configuration ports, pulse ``clear`` for a cycle, wait one more (the
    serializer's ``tile_end`` follows the configuration a cycle later)."""
    for name, value in config.items():
        getattr(dut, name).value = value
    dut.clear.value = 1
    await RisingEdge(dut.clk)
    dut.clear.value = 0
    await RisingEdge(dut.clk)


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
            items.append({k: int(getattr(it, k)) for k, _ in layout})
        got[name] = items

    tasks = [cocotb.start_soon(consume(n, random.Random(case["seed"] + k)))
             for k, n in enumerate(("d", "s"))]
    for t in tasks:
        await t
    for name in ("d", "s"):
        for k, (g, w) in enumerate(zip(got[name], case["want"][name])):
            assert g == w, f"stream {name} item {k}: got {g}, expected {w}"
    return sum(len(v) for v in got.values())


def _gaps(desc):
    return desc.get("in_gap", 0.3), desc.get("out_gap", 0.3)


async def run_fetch(dut, params, desc):
    """Address items in with random gaps, work items out with random ready, the activation
    and weight memories on the read ports; exact items and read count."""
    case = fetch_case(tile=params["tile"], items=desc["items"], seed=desc["seed"])
    in_gap, out_gap = _gaps(desc)
    in_layout, out_layout = addr_item_layout(), item_layout(params["tile"])
    totals = {"reads": 0}
    tasks = [cocotb.start_soon(read_port(dut, "act", case["act_words"], en=dut.act_rd_en)),
             cocotb.start_soon(read_port(dut, "w", case["w_words"], en=dut.w_rd_en)),
             cocotb.start_soon(tally(dut, totals))]

    async def producer(rnd):
        for item in case["inputs"]:
            await put(dut, in_layout.const(item).as_bits(), rnd, in_gap)

    prod = cocotb.start_soon(producer(random.Random(case["seed"] + 1)))
    rnd = random.Random(case["seed"] + 2)
    results = [out_layout.from_bits(await get(dut, rnd, out_gap)) for _ in case["inputs"]]
    await prod
    for t in tasks:
        t.cancel()
    case["check"](results)
    assert totals["reads"] == case["reads"], (totals["reads"], case["reads"])
    return len(results)


async def run_serializer(dut, params, desc):
    """Pairs of engine results in on ``d`` and ``s`` with independent random gaps, PPU
    elements out with random ready, the param and residual memories on the read ports; exact
    elements and reads (one join per unit: ``d.ready = s.ready = join``)."""
    case = serializer_case(vector=params["vector"], tile=params["tile"], cout=desc["cout"],
                           out_format=intref.Format[desc["out_format"].upper()],
                           res_en=desc["res_en"], pixels=desc["pixels"], seed=desc["seed"])
    in_gap, out_gap = _gaps(desc)
    in_layout, out_layout = result_layout(params["tile"]), ppu_in_layout(params["max_channels"])
    await configure(dut, case["config"])
    totals = {"reads": 0}
    tasks = [cocotb.start_soon(read_port(dut, "par_rd", case["par_words"])),
             cocotb.start_soon(read_port(dut, "res_rd", case["res_words"])),
             cocotb.start_soon(tally(dut, totals))]

    async def producer(stream, which, rnd):
        for unit in case["units"]:
            await put(dut, in_layout.const(unit[which]).as_bits(), rnd, in_gap, stream=stream)

    prods = [cocotb.start_soon(producer(n, k, random.Random(case["seed"] + k)))
             for k, n in enumerate(("d", "s"))]
    rnd = random.Random(case["seed"] + 2)
    results = [out_layout.from_bits(await get(dut, rnd, out_gap)) for _ in case["want"]]
    for t in prods:
        await t
    for t in tasks:
        t.cancel()
    case["check"](results)
    assert totals["reads"] == case["reads"], (totals["reads"], case["reads"])
    return len(results)


async def run_writer(dut, params, desc):
    """Output blocks in with random gaps; a write port model collects the out memory; exact
    image, in order, and ``done`` with the last word only."""
    case = writer_case(out_format=intref.Format[desc["out_format"].upper()],
                       channels=desc["channels"], pixels=desc["pixels"], seed=desc["seed"],
                       vector=desc.get("vector", 16))
    in_layout = ppu_out_layout(params["max_channels"])
    await configure(dut, case["config"])
    writes = []

    async def write_port():
        while True:
            await ReadOnly()
            done = int(dut.done.value)
            if int(dut.wr_en.value):
                writes.append((int(dut.wr_addr.value), int(dut.wr_data.value), done))
            else:
                assert not done, f"done without a write at {len(writes)} words"
            await RisingEdge(dut.clk)

    mon = cocotb.start_soon(write_port())
    rnd = random.Random(case["seed"])
    for block in case["inputs"]:
        await put(dut, in_layout.const(block).as_bits(), rnd, _gaps(desc)[0])
    mon.cancel()
    want = sorted(case["want"].items())
    assert [(a, w) for a, w, _ in writes] == want, "out memory writes differ"
    assert [d for _, _, d in writes] == [0] * (len(want) - 1) + [1]
    return len(writes)


RUNNERS = {"detector": run_detector, "addrgen": run_addrgen, "fetch": run_fetch,
           "serializer": run_serializer, "writer": run_writer}


async def run_case(dut, case, in_layout, out_layout):
    """Drive one case; returns the number of cycles ``busy`` was high (None without busy)."""
    for name, value in case.config.items():
        getattr(dut, name).value = value
    in_rnd, out_rnd = random.Random(case.seed), random.Random(case.seed + 1)
    results, totals = [], {"busy": 0}

    async def producer():
        for payload in case.inputs:
            await put(dut, in_layout.const(payload).as_bits(), in_rnd, case.in_gap)

    prod = cocotb.start_soon(producer())
    mon = cocotb.start_soon(tally(dut, totals)) if case.busy_cycles is not None else None
    for _ in range(case.outputs):
        results.append(out_layout.from_bits(await get(dut, out_rnd, case.out_gap)))
    await prod
    if mon is not None:
        for _ in range(4):  # the engine goes idle within a cycle of its last result
            await RisingEdge(dut.clk)
        mon.cancel()
    case.check(results)
    if case.busy_cycles is not None:
        assert totals["busy"] == case.busy_cycles, (totals["busy"], case.busy_cycles)
    return totals["busy"]


async def start(dut, streams):
    """Clock, every stream checker, idle stream inputs, two cycles of reset."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    for stream, flow in streams.items():
        port(dut, stream, "valid" if flow == "in" else "ready").value = 0
        cocotb.start_soon(stream_checker(dut, stream))
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def block_cases(dut):
    """Every case of ``SQDM_BLOCK`` on the block, one after the other (no reset between)."""
    spec = json.loads(os.environ["SQDM_BLOCK"])
    block, params = spec["block"], spec["params"]
    in_layout, out_layout = layouts(block, params)
    await start(dut, spec["streams"])
    for k, desc in enumerate(spec["cases"]):
        if block in RUNNERS:
            transfers = await RUNNERS[block](dut, params, desc)
            dut._log.info("%s case %d %s: %d transfers: ok", block, k, desc, transfers)
            continue
        case = build_case(block, params, desc)
        busy = await run_case(dut, case, in_layout, out_layout)
        dut._log.info("%s case %d %s: %d transfers in, %d out, busy %s: ok", block, k, desc,
                      len(case.inputs), case.outputs, busy)


@cocotb.test()
async def broken_driver(dut):
    """Deliberately failing (run on the operand fetch by ``tb/test_blocks.py``): with ``o``
    stalled, a producer offers an item on ``i`` and then, before ``i.ready``, drops ``valid``
    (``SQDM_FAULT=drop``) or changes the payload (``change``). The stream checker must fail
    the test."""
    spec = json.loads(os.environ["SQDM_BLOCK"])
    await start(dut, spec["streams"])
    rnd = random.Random(0)
    await put(dut, 0, rnd, 0.0)  # taken at once (the stage is empty); i.ready is low from now
    port(dut, "i", "valid").value = 1
    port(dut, "i", "payload").value = 1
    await RisingEdge(dut.clk)
    if os.environ["SQDM_FAULT"] == "drop":
        port(dut, "i", "valid").value = 0
    else:
        port(dut, "i", "payload").value = 2
    for _ in range(3):
        await RisingEdge(dut.clk)

"""Host-side driver of the accelerator top (``sqdm_top``) in cocotb: clock and reset, memory
loads through the host port, one layer run from ``start`` to ``done``, read-back of the out
memory, zero counters, next map and counters. Shared by the cocotb modules :mod:`tb.replay`
(trace replay) and :mod:`tb.cocotb_e2e` (hardware in the loop). cocotb 2.x API only; imported
inside the simulator only.
"""

from pathlib import Path

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hw.config import COUNTERS
from hw.top import MemSel
from traces.replay import HOST_MEMS
from tb.loader import load_file

__all__ = ["AcceleratorTB"]


def _value(handle, name, unknown):
    """The integer value of ``handle``; X/Z bits read as 0 and ``name`` is appended to
    ``unknown`` (Icarus is 4-state; Verilator never reports X)."""
    value = handle.value
    try:
        return value.to_unsigned()  # fast path; is_resolvable scans every bit in Python
    except ValueError:
        pass
    unknown.append(name)
    return int(str(value).translate(str.maketrans("xXzZuUwW-", "000000000")), 2)


class AcceleratorTB:
    """Clock, reset and the host-side operations on the top: load memories, run, read back."""

    def __init__(self, dut, clock_ns):
        self.dut = dut
        self.clock_ns = clock_ns
        self.groups_out = len(dut.next_map)
        self.has_loader = hasattr(dut, "tb_load")

    async def reset(self):
        dut = self.dut
        Clock(dut.clk, self.clock_ns, unit="ns").start()  # C++ (GPI) clock
        dut.rst.value = 1
        dut.start.value = 0
        dut.host_we.value = 0
        dut.host_sel.value = 0
        dut.host_addr.value = 0
        dut.host_wdata.value = 0
        if self.has_loader:
            dut.tb_load.value = 0
            dut.tb_load_words.value = 0
        dut.zc_chan.value = 0
        dut.desc.value = 0
        dut.map.value = 0
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def load(self, sel, words):
        """Write ``words`` to memory ``sel`` from address 0, one word per clock edge: by the
        :mod:`tb.loader` wrapper from a ``$readmemh`` file when the toplevel is that wrapper,
        else word by word from Python."""
        dut = self.dut
        dut.host_sel.value = sel.value
        if self.has_loader:
            if len(words):
                Path(load_file(sel)).write_text("".join(f"{w:x}\n" for w in words))
                dut.tb_load_words.value = len(words)
                dut.tb_load.value = 1
                await RisingEdge(dut.clk)       # the wrapper reads the file at this edge
                dut.tb_load.value = 0
                await FallingEdge(dut.tb_load_busy)  # at the edge that writes the last word
            return
        dut.host_we.value = 1
        for addr, word in enumerate(words):
            dut.host_addr.value = addr
            dut.host_wdata.value = word
            await RisingEdge(dut.clk)
        dut.host_we.value = 0

    async def run(self, desc_value, map_value):
        """Program the descriptor and map, pulse ``start``, wait for ``done``. Returns the
        clock cycles from the edge that samples ``start`` to the edge that raises ``done``."""
        dut = self.dut
        dut.desc.value = desc_value
        dut.map.value = map_value
        dut.start.value = 1
        await RisingEdge(dut.clk)           # the edge that registers desc/map: cycle 0 ends
        t_start = get_sim_time("ns")
        dut.start.value = 0
        await RisingEdge(dut.done)          # the whole layer runs without Python
        t_done = get_sim_time("ns")
        await ReadOnly()
        return round((t_done - t_start) / self.clock_ns)

    async def read_back(self, out_words, cout):
        """Out memory words ``0 .. out_words-1``, the zero counters of channels ``0 .. cout-1``,
        ``next_map`` bits and all counters. Pipelined: the address set after edge k is read in
        the ``ReadOnly`` phase after edge k+1 (host_rdata has one cycle of latency);
        ``zc_count`` is combinational from ``zc_chan``."""
        dut = self.dut
        unknown = []  # names of values with X/Z bits (4-state simulators); read as 0 there
        await RisingEdge(dut.clk)
        counters = {n: _value(getattr(dut, f"cnt_{n}"), f"cnt_{n}", unknown) for n in COUNTERS}
        next_bits = _value(dut.next_map, "next_map", unknown)
        next_map = [(next_bits >> g) & 1 for g in range(self.groups_out)]
        dut.host_sel.value = MemSel.OUT.value
        words, zeros = [], []
        n = max(out_words, cout)
        for i in range(n + 1):
            if i < n:
                dut.host_addr.value = i
                dut.zc_chan.value = min(i, cout - 1)
            await ReadOnly()
            if 0 < i <= out_words:
                words.append(_value(dut.host_rdata, f"out word {i - 1}", unknown))
            if i < cout:
                zeros.append(_value(dut.zc_count, f"zc_count of channel {i}", unknown))
            await RisingEdge(dut.clk)
        return {"out_words": words, "zero_counts": zeros, "next_map": next_map,
                "counters": counters, "unknown": unknown}

    async def execute(self, job):
        """Load ``job``'s memories (a :class:`traces.replay.Job`), run it and read
        everything back: the ``actual`` dict of :func:`traces.replay.compare`."""
        for name, sel in HOST_MEMS.items():
            if name in job.images:
                await self.load(sel, job.images[name])
        span = await self.run(job.desc_value, job.map_value)
        actual = await self.read_back(job.out_words, job.descriptor.cout)
        actual["cycles_start_to_done"] = span
        return actual

"""Deliberately failing cocotb tests: ``tb/test_toolchain.py`` proves that
:func:`tb.simulator.run_cocotb` reports them as failures (TOOLCHAIN.md pitfall 6).

Not a test of any design; runs on ``ToyMAC`` only because it needs some top-level.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

#: The message the failing test raises; the pytest side looks for it in the report.
FAILURE_MESSAGE = "deliberate failure: the result checker must catch this"


async def _idle(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)


@cocotb.test()
async def test_passes(dut):
    """A passing neighbour: must not be listed among the failures."""
    await _idle(dut)
    assert dut.o__valid.value == 0


@cocotb.test()
async def test_deliberately_fails(dut):
    """Fails after the simulation has run a little, as a real checker would: the reset
    output is not valid, and this test claims it is."""
    await _idle(dut)
    assert dut.o__valid.value == 1, FAILURE_MESSAGE

"""cocotb unit tests of the DPE, SPE, PPU, sparsity detector, address generator, operand fetch,
join serializer and output writer Verilog with random backpressure (tb/cocotb_blocks.py): every
result against the Python reference, the engines' busy cycles against their cycle models, every
stream port under the cocotb stream checker (tb/streamcheck.py). Verilator for every block;
Icarus (4-state) for the DPE with an MXINT8 case first after reset, where 4-state simulation once
found X values (hw.toolchain.ICARUS_GENERATION). The checker is shown to fail a deliberately
broken driver."""

import json
import re
import shutil

import pytest
from amaranth.lib import wiring

from hw.addrgen import AddrGen
from hw.detector import SparsityDetector
from hw.dpe import DPE
from hw.fetch import OperandFetch
from hw.ppu import PPU
from hw.serializer import JoinSerializer
from hw.spe import SPE
from hw.streamcheck import stream_members
from hw.verilog import emit_verilog
from hw.writer import OutputWriter
from tb.simulator import CocotbFailure, run_cocotb

#: block -> (class, small parameters, cases). Small sizes keep the builds short; the
#: amaranth.sim tests (hw/test_*.py) cover the other sizes with the same case builders.
BLOCKS = {
    "dpe": (DPE, dict(vector=16, cols=4, tile=8), [
        dict(x_format="mxint8", units=6, seed=301),
        dict(x_format="uint4", units=8, seed=302),
        dict(x_format="int4", units=8, seed=303),
    ]),
    "spe": (SPE, dict(vector=16, lanes=2, cols=8), [
        dict(x_format="mxint8", units=6, seed=311, sparsity=0.5),
        dict(x_format="uint4", units=8, seed=312, sparsity=0.65),
        dict(x_format="int4", units=8, seed=313, sparsity=0.3),
    ]),
    "ppu": (PPU, dict(vector=16, max_channels=64), [
        dict(out_format="mxint8", relu=True, residual=True, seed=321),
        dict(out_format="uint4", relu=True, residual=False, seed=322),
        dict(out_format="int4", relu=False, residual=True, seed=323),
        dict(out_format="uint4", relu=True, residual=True, seed=324, channels=17, pixels=2),
    ]),
    "detector": (SparsityDetector, dict(vector=16, max_channels=80, max_pixels=16), [
        dict(out_format="uint4", channels=40, threshold=30, seed=331),
        dict(out_format="mxint8", channels=72, threshold=65, seed=332),
        dict(out_format="int4", channels=7, threshold=0, seed=333),
    ]),
    "addrgen": (AddrGen, dict(vector=16, tile=4, max_cin=80), [
        dict(shape=[4, 5, 20, 3, 3, 1, 1], x_format="uint4", seed=341),
        dict(shape=[5, 4, 16, 6, 3, 2, 2], x_format="int4", seed=342),
        dict(shape=[4, 4, 70, 5, 3, 1, 2], x_format="mxint8", seed=343),
    ]),
    "fetch": (OperandFetch, dict(tile=2), [
        dict(items=40, seed=351),
        dict(items=30, seed=352, in_gap=0.0, out_gap=0.7),
        dict(items=30, seed=353, in_gap=0.7, out_gap=0.0),
        dict(items=20, seed=354, in_gap=0.0, out_gap=0.0),
    ]),
    "serializer": (JoinSerializer, dict(vector=16, tile=4, max_channels=64), [
        dict(cout=6, out_format="int4", res_en=1, pixels=3, seed=361),
        dict(cout=40, out_format="mxint8", res_en=1, pixels=2, seed=362, out_gap=0.6),
        dict(cout=9, out_format="uint4", res_en=0, pixels=3, seed=363, in_gap=0.6),
        dict(cout=1, out_format="int4", res_en=1, pixels=3, seed=364, in_gap=0.0, out_gap=0.0),
    ]),
    "writer": (OutputWriter, dict(max_channels=64), [
        dict(out_format="mxint8", channels=40, pixels=3, seed=371),
        dict(out_format="uint4", channels=17, pixels=4, seed=372, vector=8),
        dict(out_format="int4", channels=64, pixels=2, seed=373, in_gap=0.0),
    ]),
}


@pytest.fixture(scope="module")
def block_verilog(tmp_path_factory):
    """``emit(block)`` -> (Verilog path, ``{stream port: "in" | "out"}`` of the component)."""
    folder = tmp_path_factory.mktemp("blocks")
    emitted = {}

    def emit(block):
        if block not in emitted:
            cls, params, _ = BLOCKS[block]
            path = folder / f"sqdm_{block}.v"
            component = cls(**params)
            members = component.signature.members
            streams = {name: "in" if members[name].flow == wiring.In else "out"
                       for name in stream_members(component)}
            emit_verilog(component, f"sqdm_{block}", path)
            emitted[block] = path, streams
        return emitted[block]
    return emit


def run_block(block, block_verilog, simulator, testcase="block_cases", extra_env=None):
    """Run ``testcase`` of tb/cocotb_blocks.py on the block; ``SQDM_BLOCK`` also names every
    stream port and its direction, for the stream checkers."""
    _, params, cases = BLOCKS[block]
    path, streams = block_verilog(block)
    spec = {"block": block, "params": params, "streams": streams, "cases": cases}
    env = {"SQDM_BLOCK": json.dumps(spec), **(extra_env or {})}
    return run_cocotb([path], f"sqdm_{block}", "tb.cocotb_blocks", simulator=simulator,
                      testcase=testcase, extra_env=env, vpi_access="ports")


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_on_verilator(block, block_verilog):
    result = run_block(block, block_verilog, "verilator")
    assert result.tests == 1 and result.failed == 0


def test_dpe_on_icarus(block_verilog):
    result = run_block("dpe", block_verilog, "icarus")
    assert result.tests == 1 and result.failed == 0


@pytest.mark.parametrize("fault,message", [
    ("drop", "valid dropped before ready"),
    ("change", "payload changed while valid & ~ready"),
])
def test_stream_checker_fails_broken_driver(fault, message, block_verilog):
    """A producer that breaks the handshake on the fetch stage's ``i`` (``broken_driver``)
    fails the cocotb test with the checker's message, naming the stream and the time."""
    with pytest.raises(CocotbFailure) as info:
        run_block("fetch", block_verilog, "verilator", testcase="broken_driver",
                  extra_env={"SQDM_FAULT": fault})
    (name, text), = info.value.failed
    assert name == "broken_driver"
    assert re.search(rf"stream i: {re.escape(message)} at \d+ ns", text), text
    shutil.rmtree(info.value.result.run_dir)

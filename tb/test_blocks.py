"""cocotb unit tests of the DPE, SPE, PPU, sparsity detector and address generator Verilog
with random backpressure (tb/cocotb_blocks.py): every result against the golden reference,
the engines' busy cycles against their cycle models. Verilator for every block; Icarus (4-state) for the DPE with an MXINT8 case first
after reset, where 4-state simulation once found X values (hw.toolchain.ICARUS_GENERATION)."""

import json

import pytest

from hw.addrgen import AddrGen
from hw.detector import SparsityDetector
from hw.dpe import DPE
from hw.ppu import PPU
from hw.spe import SPE
from hw.verilog import emit_verilog
from tb.simulator import run_cocotb

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
}


@pytest.fixture(scope="module")
def block_verilog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    paths = {}

    def emit(block):
        if block not in paths:
            cls, params, _ = BLOCKS[block]
            paths[block] = folder / f"sqdm_{block}.v"
            emit_verilog(cls(**params), f"sqdm_{block}", paths[block])
        return paths[block]
    return emit


def run_block(block, verilog, simulator):
    cls, params, cases = BLOCKS[block]
    spec = {"block": block, "params": params, "cases": cases}
    return run_cocotb([verilog], f"sqdm_{block}", "tb.cocotb_blocks", simulator=simulator,
                      extra_env={"SQDM_BLOCK": json.dumps(spec)}, vpi_access="ports")


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_on_verilator(block, block_verilog):
    result = run_block(block, block_verilog(block), "verilator")
    assert result.tests == 1 and result.failed == 0


def test_dpe_on_icarus(block_verilog):
    result = run_block("dpe", block_verilog("dpe"), "icarus")
    assert result.tests == 1 and result.failed == 0

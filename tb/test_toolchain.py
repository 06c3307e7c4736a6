"""End-to-end toolchain test: Amaranth -> hw/verilog.py -> tb/simulator.py -> cocotb on
Verilator and Icarus, with hw/toy_mac.py as the design."""

import os
import shutil
import subprocess
import sys

import pytest

from hw.toy_mac import ToyMAC
from hw.verilog import REPO_ROOT, emit_verilog
from tb.simulator import (SIMULATORS, CocotbFailure, SimulationError, build_key,
                          run_cocotb)

TOPLEVEL = "toy_mac"
# Same text as tb/cocotb_must_fail.py:FAILURE_MESSAGE (that module imports cocotb, which is
# meant to be imported inside a simulator only).
FAILURE_MESSAGE = "deliberate failure: the result checker must catch this"


@pytest.fixture(scope="module")
def toy_mac_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("verilog") / f"{TOPLEVEL}.v"
    emit_verilog(ToyMAC(lanes=4), TOPLEVEL, path)
    return path


def test_verilog_is_byte_identical(toy_mac_verilog):
    first = toy_mac_verilog.read_bytes()
    assert emit_verilog(ToyMAC(lanes=4), TOPLEVEL).encode() == first
    # A fresh interpreter with another hash seed: no set/dict ordering may leak into the text.
    script = ("import sys; from hw.toy_mac import ToyMAC; from hw.verilog import emit_verilog; "
              f"sys.stdout.write(emit_verilog(ToyMAC(lanes=4), {TOPLEVEL!r}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    other = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                           capture_output=True, check=True).stdout
    assert other == first


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_toy_mac_cocotb(simulator, toy_mac_verilog):
    result = run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_toy_mac", simulator=simulator)
    assert result.failed == 0
    assert result.tests == 4
    assert "test_full_throughput" in result.passed_tests


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_failing_cocotb_test_is_reported(simulator, toy_mac_verilog):
    with pytest.raises(CocotbFailure) as info:
        run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_must_fail", simulator=simulator)
    failure = info.value
    assert [name for name, _ in failure.failed] == ["test_deliberately_fails"]
    assert failure.result.tests == 2 and failure.result.failed == 1
    assert failure.result.passed_tests == ("test_passes",)
    assert "test_deliberately_fails" in str(failure)
    assert FAILURE_MESSAGE in str(failure)
    assert failure.result.run_dir.is_dir()  # kept for debugging; not needed here
    shutil.rmtree(failure.result.run_dir)


def test_failures_can_be_returned_instead(toy_mac_verilog):
    result = run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_must_fail",
                        simulator="icarus", check=False)
    assert result.failed_tests == ("test_deliberately_fails",)
    shutil.rmtree(result.run_dir)


def test_testcase_selects_and_unknown_testcase_is_an_error(toy_mac_verilog):
    result = run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_must_fail",
                        simulator="icarus", testcase="test_passes")
    assert result.passed_tests == ("test_passes",) and result.tests == 1
    with pytest.raises(SimulationError, match="no cocotb test ran") as info:
        run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_must_fail", simulator="icarus",
                   testcase="test_does_not_exist")
    assert (info.value.run_dir / "sim.log").is_file()  # kept for debugging; not needed here
    shutil.rmtree(info.value.run_dir)


def test_build_key_follows_text_and_flags(toy_mac_verilog, tmp_path):
    key = build_key("verilator", TOPLEVEL, [toy_mac_verilog])
    moved = tmp_path / toy_mac_verilog.name
    moved.write_bytes(toy_mac_verilog.read_bytes())
    assert build_key("verilator", TOPLEVEL, [moved]) == key  # the folder does not matter
    edited = tmp_path / "edited" / toy_mac_verilog.name
    edited.parent.mkdir()
    edited.write_bytes(toy_mac_verilog.read_bytes() + b"\n")
    others = {
        build_key("verilator", TOPLEVEL, [edited]),
        build_key("verilator", TOPLEVEL, [toy_mac_verilog], build_args=["-O3"]),
        build_key("verilator", TOPLEVEL, [toy_mac_verilog], waves=True),
        build_key("verilator", TOPLEVEL, [toy_mac_verilog], parameters={"N": 2}),
        build_key("icarus", TOPLEVEL, [toy_mac_verilog]),
    }
    assert key not in others and len(others) == 5


def test_rejects_bad_arguments(toy_mac_verilog):
    with pytest.raises(ValueError, match="simulator must be one of .* not 'vcs'"):
        run_cocotb([toy_mac_verilog], TOPLEVEL, "tb.cocotb_toy_mac", simulator="vcs")
    with pytest.raises(ValueError, match="at least one file"):
        run_cocotb([], TOPLEVEL, "tb.cocotb_toy_mac")

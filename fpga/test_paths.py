"""fpga.paths: delay estimates on small hand-built netlists, grouping, the command line."""

import json

import pytest

from fpga.paths import (CELL_NS, SETUP_NS, Netlist, block_counts, estimate, fanouts, group_name,
                        last_nets, main, routed_endpoints, routed_report, summary)


def _cell(ctype, inputs, outputs, **params):
    conns = {**inputs, **outputs}
    dirs = {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}}
    return {"type": ctype, "connections": conns, "port_directions": dirs,
            "parameters": params}


def _write(tmp_path, cells, netnames):
    doc = {"modules": {"top": {"attributes": {"top": 1}, "cells": cells,
                               "netnames": {n: {"bits": b} for n, b in netnames.items()}}}}
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    return path


def _ff(d, q, clk=1):
    return _cell("TRELLIS_FF", {"CLK": [clk], "DI": [d]}, {"Q": [q]})


def test_lut_chain_and_carry_chain(tmp_path):
    """Two LUTs between registers; a carry chain (no hop into CIN); a LUT into a PFUMX (none
    into ALUT)."""
    cells = {
        "a": _ff(20, 2), "l1": _cell("LUT4", {"A": [2]}, {"Z": [3]}),
        "l2": _cell("LUT4", {"A": [3], "B": [2]}, {"Z": [4]}), "b": _ff(4, 5),
        "c0": _cell("CCU2C", {"A0": [2]}, {"COUT": [6], "S0": [7]}),
        "c1": _cell("CCU2C", {"CIN": [6]}, {"S0": [8]}), "c": _ff(8, 9),
        "m": _cell("PFUMX", {"ALUT": [3], "C0": [2]}, {"Z": [10]}), "d": _ff(10, 11),
    }
    path = _write(tmp_path, cells, {"acc3": [5], "cnt": [9], "sel": [11], "x": [2]})
    ends, arrival = estimate(Netlist(path), hop_ns=1.0)
    got = {e.name: e.arrival_ns for e in ends if e.port == "DI"}
    ff, lut = CELL_NS["TRELLIS_FF"], CELL_NS["LUT4"]
    assert got["acc3"] == pytest.approx(ff + 2 * (1 + lut) + 1 + SETUP_NS)
    assert got["cnt"] == pytest.approx(ff + 1 + CELL_NS["CCU2C"] + CELL_NS["CCU2C.cin_sum"]
                                       + 1 + SETUP_NS)
    assert got["sel"] == pytest.approx(ff + 1 + lut + CELL_NS["PFUMX"] + 1 + SETUP_NS)
    assert ends[0].name == "acc3"  # latest first
    assert arrival(4)[1] == 3  # the path into acc3 comes through l1


def test_hop_scales_routing_only(tmp_path):
    cells = {"a": _ff(9, 2), "l": _cell("LUT4", {"A": [2]}, {"Z": [3]}), "b": _ff(3, 4)}
    path = _write(tmp_path, cells, {"q": [4]})
    for hop in (0.0, 2.0):
        (end, *_), _ = estimate(Netlist(path), hop_ns=hop)
        assert end.arrival_ns == pytest.approx(CELL_NS["TRELLIS_FF"] + CELL_NS["LUT4"]
                                               + 2 * hop + SETUP_NS)


def test_block_ram_and_multiplier(tmp_path):
    """A block RAM's data starts a path, an unregistered multiplier is in it."""
    cells = {"r": _cell("DP16KD", {"CLKA": [1], "ADA0": [2]}, {"DOA0": [3]}),
             "x": _cell("MULT18X18D", {"A0": [3]}, {"P0": [4]}), "f": _ff(4, 5),
             "a": _ff(9, 2)}
    path = _write(tmp_path, cells, {"prod": [5]})
    ends, _ = estimate(Netlist(path))
    got = {(e.cell, e.port): e.arrival_ns for e in ends}
    assert got[("f", "DI")] == pytest.approx(CELL_NS["DP16KD"] + 1 + CELL_NS["MULT18X18D"]
                                             + 1 + SETUP_NS)
    assert ("r", "ADA0") in got and ("r", "CLKA") not in got


def test_multiplier_block_registers(tmp_path):
    """A multiplier block with its input and output registers: its A and B inputs end
    paths, its P outputs start them; the multiplier is on neither."""
    regs = {"REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0", "REG_OUTPUT_CLK": "CLK0"}
    cells = {"a": _ff(9, 2), "l": _cell("LUT4", {"A": [2]}, {"Z": [3]}),
             "x": _cell("MULT18X18D", {"A0": [3], "B0": [2], "CLK0": [1]}, {"P0": [4]},
                        **regs),
             "f": _ff(4, 5)}
    path = _write(tmp_path, cells, {"prod": [5]})
    ends, _ = estimate(Netlist(path))
    got = {(e.cell, e.port): e.arrival_ns for e in ends}
    ff, lut = CELL_NS["TRELLIS_FF"], CELL_NS["LUT4"]
    assert got[("x", "A0")] == pytest.approx(ff + 1 + lut + 1 + SETUP_NS)
    assert got[("x", "B0")] == pytest.approx(ff + 1 + SETUP_NS)
    assert ("x", "CLK0") not in got
    assert got[("f", "DI")] == pytest.approx(CELL_NS["MULT18X18D"] + 1 + SETUP_NS)


def test_combinational_loop_terminates(tmp_path):
    cells = {"l1": _cell("LUT4", {"A": [3]}, {"Z": [2]}),
             "l2": _cell("LUT4", {"A": [2]}, {"Z": [3]}), "f": _ff(3, 4)}
    path = _write(tmp_path, cells, {"q": [4]})
    ends, _ = estimate(Netlist(path))
    assert len(ends) == 1 and ends[0].arrival_ns > 0


def test_group_names_and_summary():
    assert group_name("core.top.dpe.rp_acc3[12]") == "core.top.dpe.rp_acc#"
    assert group_name("core.top.spe.idx0_TRELLIS_FF_Q_DI[1]") == "core.top.spe.idx#"
    assert group_name("core.top.ppu.queue.$542[0]") == "core.top.ppu.queue.$"

    class E:
        def __init__(self, t, name):
            self.arrival_ns, self.name = t, name
    groups = summary([E(12.0, "a1[0]"), E(8.0, "a2[1]"), E(5.0, "b")], target_mhz=100)
    assert groups == [{"name": "a#", "endpoints": 2, "worst_ns": 12.0, "failing": 1},
                      {"name": "b", "endpoints": 1, "worst_ns": 5.0, "failing": 0}]


def test_block_counts():
    class E:
        def __init__(self, t, name):
            self.arrival_ns, self.name = t, name
    ends = [E(12.0, "core.top.dpe.acc1[0]"), E(11.0, "core.top.dpe.p_LUT4_Z[2]"),
            E(3.0, "core.top.spe.idx0"), E(20.0, "q")]
    assert block_counts(ends, target_mhz=100) == [
        {"block": "core.top.dpe", "endpoints": 2, "failing": 2},
        {"block": "(top)", "endpoints": 1, "failing": 1},
        {"block": "core.top.spe", "endpoints": 1, "failing": 0}]


def test_cli_report_and_path(tmp_path, capsys):
    cells = {"a": _ff(9, 2), "l": _cell("LUT4", {"A": [2]}, {"Z": [3]}), "b": _ff(3, 4)}
    path = _write(tmp_path, cells, {"core.reg": [4], "core.src": [2]})
    out = tmp_path / "paths.json"
    assert main([str(path), "--path", "reg", "--json", str(out), "--target-mhz", "500",
                 "--blocks"]) == 0
    text = capsys.readouterr().out
    assert "worst path into core.reg (DI)" in text and "core.src" in text
    assert "1 of      2  core" in text  # core.src and core.reg, one failing
    report = json.loads(out.read_text())
    assert report["endpoints"] == 2 and report["failing"] == 1
    assert report["path_end"]["name"] == "core.reg" and report["blocks"][0]["block"] == "core"
    assert [p["cell"] for p in report["path"]] == ["LUT4", "TRELLIS_FF"]


def test_fanouts(tmp_path, capsys):
    """Nets ranked by sinks, clock pins not counted; the driver's type and the pin kinds."""
    cells = {"r": _ff(9, 2), "a": _ff(2, 3), "b": _ff(2, 4),
             "l": _cell("LUT4", {"A": [2], "B": [5]}, {"Z": [6]}),
             "c": _cell("TRELLIS_FF", {"CLK": [1], "DI": [6], "LSR": [2]}, {"Q": [7]})}
    path = _write(tmp_path, cells, {"rst": [2], "clk": [1], "in": [5]})
    rows = fanouts(Netlist(path), top=2)
    assert rows[0] == {"net": "rst", "sinks": 4, "driver": "TRELLIS_FF",
                       "pins": {"TRELLIS_FF.DI": 2, "LUT4.A": 1, "TRELLIS_FF.LSR": 1}}
    assert rows[1]["sinks"] == 1 and rows[1]["driver"] in ("TRELLIS_FF", "LUT4", "(input)")
    assert all(r["net"] != "clk" for r in fanouts(Netlist(path), top=10))
    out = tmp_path / "f.json"
    assert main([str(path), "--fanout", "1", "--json", str(out)]) == 0
    assert "     4  rst  (from TRELLIS_FF: TRELLIS_FF.DI 2" in capsys.readouterr().out
    assert json.loads(out.read_text())["fanouts"][0]["net"] == "rst"


def _nextpnr_report(tmp_path, nets):
    """A report as nextpnr writes it with ``--detailed-timing-report`` (``delay``: the
    arrival's minimum and maximum, ns)."""
    clk = "posedge $glbnet$clk"
    doc = {"fmax": {}, "critical_paths": [], "utilization": {}, "detailed_net_timings": [
        {"net": net, "driver": "d", "port": "Q", "event": launch, "sources": [],
         "endpoints": [{"cell": c, "port": p, "event": clk, "delay": [ns / 2, ns]}
                       for c, p, ns in sinks]}
        for net, launch, sinks in nets]}
    path = tmp_path / "nextpnr_report.json"
    path.write_text(json.dumps(doc))
    return path


def test_routed_endpoints_and_report(tmp_path, capsys):
    """Per endpoint the latest clocked arrival (an endpoint on two nets' lists counts once,
    with its later one); the reset pin's asynchronous paths aside; ranked and grouped as the
    estimate is."""
    clk = "posedge $glbnet$clk"
    path = _nextpnr_report(tmp_path, [
        ("a", clk, [("core.top.dpe.rp_mant3_TRELLIS_FF_Q_21", "DI", 13.22),
                    ("core.top.dpe.rp_mant3_TRELLIS_FF_Q_2", "DI", 9.5)]),
        ("b", clk, [("core.top.dpe.rp_mant3_TRELLIS_FF_Q_2", "DI", 10.5),
                    ("core.link.stage_TRELLIS_FF_Q", "CE", 4.0)]),
        ("rst", "<async>", [("core.link.stage_TRELLIS_FF_Q", "LSR", 30.0)])])
    ends = routed_endpoints(path)
    assert [(e.name, e.port, e.arrival_ns) for e in ends] == [
        ("core.top.dpe.rp_mant3_TRELLIS_FF_Q_21", "DI", 13.22),
        ("core.top.dpe.rp_mant3_TRELLIS_FF_Q_2", "DI", 10.5),
        ("core.link.stage_TRELLIS_FF_Q", "CE", 4.0)]
    rep = routed_report(path, target_mhz=100)
    assert rep["worst_ns"] == 13.22 and rep["fmax_mhz"] == 75.64
    assert rep["endpoints"] == 3 and rep["failing"] == 2
    assert rep["groups"][0] == {"name": "core.top.dpe.rp_mant#", "endpoints": 2,
                                "worst_ns": 13.22, "failing": 2}
    assert rep["blocks"][0] == {"block": "core.top.dpe", "endpoints": 2, "failing": 2}
    out = tmp_path / "routed.json"
    assert main([str(path), "--routed", "--blocks", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "routed (nextpnr): worst 13.22 ns (~75.64 MHz), 2 of 3 endpoints over 10.0 ns" in text
    assert "2 of      2  core.top.dpe" in text
    assert json.loads(out.read_text())["report"] == str(path)


def test_routed_last_nets(tmp_path, capsys):
    """The nets that deliver the latest arrival of the most failing endpoints: one LUT to many
    set/reset pins is one row; an endpoint counts under the net of its latest arrival only,
    and endpoints within the target not at all."""
    clk = "posedge $glbnet$clk"
    path = _nextpnr_report(tmp_path, [
        ("clear", clk, [(f"core.top.det.cnt_TRELLIS_FF_Q_{k}", "LSR", 10.5 + k / 10)
                        for k in range(3)] + [("core.top.wr.n_TRELLIS_FF_Q", "LSR", 9.0)]),
        ("d1", clk, [("core.top.dpe.rp_mant3_TRELLIS_FF_Q", "DI", 13.22)]),
        ("d2", clk, [("core.top.dpe.rp_mant3_TRELLIS_FF_Q", "DI", 12.0),
                     ("core.top.det.cnt_TRELLIS_FF_Q_0", "LSR", 10.2)])])
    rows = last_nets(path, target_mhz=100, top=5)
    assert rows == [
        {"net": "clear", "driver": "d.Q", "port": "LSR", "failing": 3, "worst_ns": 10.7},
        {"net": "d1", "driver": "d.Q", "port": "DI", "failing": 1, "worst_ns": 13.22}]
    assert routed_report(path, nets=1)["last_nets"] == rows[:1]
    assert "last_nets" not in routed_report(path)
    assert main([str(path), "--routed", "--nets", "2"]) == 0
    assert "       3   10.70 ns  LSR  clear  (from d.Q)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(path), "--nets", "2"])
    assert "--nets reads a routed report" in capsys.readouterr().err


@pytest.mark.parametrize("content,msg", [
    (None, "no nextpnr report at"),
    ("not json", "is not JSON"),
    ('{"fmax": {}, "critical_paths": []}', "detailed-timing-report"),
    ('{"detailed_net_timings": [{"net": "a", "event": "x", "endpoints": [{"cell": "c"}]}]}',
     "missing 'port'"),
])
def test_routed_rejects_bad_reports(tmp_path, capsys, content, msg):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert main([str(path), "--routed"]) == 2
    assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path), "--routed", "--path", "x"])
    assert "--path and --fanout read a netlist" in capsys.readouterr().err


@pytest.mark.parametrize("content,msg", [
    (None, "no netlist at"),
    ("not json", "is not a Yosys JSON netlist"),
    ('{"modules": {"a": {}, "b": {}}}', "expected one top module, found 0"),
])
def test_cli_rejects_bad_netlists(tmp_path, capsys, content, msg):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    assert msg in capsys.readouterr().err


def test_cli_rejects_bad_options(tmp_path, capsys):
    path = _write(tmp_path, {"a": _ff(9, 2)}, {"q": [2]})
    with pytest.raises(SystemExit):
        main([str(path), "--hop", "-1"])
    assert "--hop must be >= 0" in capsys.readouterr().err
    assert main([str(path), "--path", "nothing"]) == 2
    assert "no register name contains 'nothing'" in capsys.readouterr().err

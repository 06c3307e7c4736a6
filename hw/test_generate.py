"""hw.generate is byte-identical run to run; hw.lint accepts its output and rejects bad code."""

import json

import pytest

from .generate import generate
from .lint import lint_file


def test_generate_is_deterministic_and_lint_clean(tmp_path):
    first = generate(tmp_path / "a", ["sqdm_addrgen"])
    generate(tmp_path / "b", ["sqdm_addrgen"])
    for name in ("sqdm_addrgen.v", "report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report == first
    mod = report["modules"]["sqdm_addrgen"]
    assert mod["parameters"] == {"vector": 16, "tile": 32, "max_cin": 512, "merged": True}
    assert mod["lines"] > 100 and "sqdm_addrgen" in mod["verilog_modules"]
    ok, text = lint_file(tmp_path / "a" / "sqdm_addrgen.v")
    assert ok, text


def test_lint_fails_on_a_real_warning(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input wire a, output wire [1:0] y, output wire z);\n"
                   "  wire unused_b;\n  assign y = {a, a};\nendmodule\n")
    ok, text = lint_file(bad)
    assert not ok and "UNDRIVEN" in text and "'z'" in text


@pytest.mark.parametrize("block,kwargs", [
    ("dpe", {"tile": 24}),                    # 3 column groups of 8: a tile not a power of two
    ("dpe", {"cols": 4, "tile": 4}),          # one column group (the dense peers' tile = cols)
    ("nullspe", {"tile": 4}),                 # a dense top's null engine
    ("ag", {"max_cin": 16}),                  # one vector group (micro): no zero-width index
])
def test_unusual_shapes_build(block, kwargs, tmp_path):
    """Shapes the configuration accepts lint clean with the build waivers (the Array
    lowering's incomplete cases are waived, nothing else fires): a tile that is not a power of
    two, a single column group, the null engine, a walker of one vector group."""
    from .addrgen import AddrGen
    from .dpe import DPE
    from .nullspe import NullSPE
    from .simtest import default_args
    from .toolchain import BUILD_WAIVERS, verilator_env, verilator_executable, waiver_flags
    from .verilog import emit_verilog
    import subprocess
    path = tmp_path / f"sqdm_{block}.v"
    dut = {"dpe": lambda: DPE(**default_args("dpe", **kwargs)),
           "ag": lambda: AddrGen(**default_args("ag", **kwargs)),
           "nullspe": lambda: NullSPE(**kwargs)}[block]()
    emit_verilog(dut, f"sqdm_{block}", path)
    proc = subprocess.run([str(verilator_executable()), "--lint-only",
                           *waiver_flags(BUILD_WAIVERS), "--top-module", f"sqdm_{block}",
                           str(path)],
                          capture_output=True, text=True, env=verilator_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""Tests of the FPGA bring-up kit (python -m fpga.bringup) on a small random layer.

The layer's trace is written with weight words packed for tile 8 so that the ``tiny``
configuration (hw/config.py PRESETS) serves it: its Verilog emits in ~20 s and Verilator
builds it in ~35 s (cold; ccache makes rebuilds fast). Icarus builds and runs it in a few seconds
(docs/hardware.md, "Simulator notes").
"""

import shutil

import pytest

from traces.format import write_trace
from traces.hexfiles import hex_header, write_hex_files
from traces.synth import random_execution

from .bringup import generate, run
from hw.config import PRESETS

CONFIG = PRESETS["tiny"]


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    ex = random_execution(cin=24, cout=12, height=3, width=3, kernel=3, stride=1,
                          sparsity=0.65, mode="int4", seed=1, padding=1, out_format="uint4",
                          channel_map="random")
    write_trace(root, [ex], header={"source": "random-layer", "hex": hex_header(CONFIG)},
                extra_files=lambda e, i, f: write_hex_files(e, i, f, config=CONFIG))
    return root


@pytest.fixture(scope="module")
def bench(trace, tmp_path_factory):
    out = tmp_path_factory.mktemp("bringup")
    info = generate(trace, 0, out, config=CONFIG)
    return out, info


def test_generated_files(bench):
    out, info = bench
    for name in ("sqdm_top.v", "tb_bringup.v", "act.hex", "weight.hex", "param.hex",
                 "out_expected.hex", "bringup.json"):
        assert (out / name).is_file(), name
    tb = (out / "tb_bringup.v").read_text()
    assert f"48'd{info['expected']['counters']['cycles']}" in tb  # COUNTER_BITS = 48
    assert "$readmemh(\"out_expected.hex\"" in tb


def test_verilator_pass(bench):
    out, _ = bench
    report = run(out, "verilator")
    assert report["result"] == "PASS", report["first_failure"]
    assert report["counters"]["cycles"] > 0


def test_verilator_fail_names_the_word(bench, tmp_path):
    out, _ = bench
    bad = tmp_path / "bad"
    shutil.copytree(out, bad, ignore=shutil.ignore_patterns("verilator", "icarus"))
    lines = (bad / "out_expected.hex").read_text().splitlines()
    word = 3
    digit = "1" if lines[word][-1] != "1" else "2"
    lines[word] = lines[word][:-1] + digit
    (bad / "out_expected.hex").write_text("\n".join(lines) + "\n")
    report = run(bad, "verilator")
    assert report["result"] == "FAIL"
    assert report["exit_status"] != 0
    assert report["first_failure"].startswith(f"FAIL out word {word} (address {word})")


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_icarus_pass(bench):
    out, info = bench
    report = run(out, "icarus", timeout=120)
    assert report["result"] == "PASS", report["first_failure"]
    assert report["counters"]["cycles"] == info["expected"]["counters"]["cycles"]


def test_hex_file_that_disagrees_with_the_arrays_is_refused(trace, tmp_path):
    """A hex file edited after export (hashes not verified) is named with its line."""
    from .bringup import BringupError
    bad = tmp_path / "trace"
    shutil.copytree(trace, bad)
    path = next(bad.glob("*/out_expected.hex"))
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1] + ("1" if lines[2][-1] != "1" else "2")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BringupError, match=r"out_expected.hex \[line 3\]: holds"):
        generate(bad, 0, tmp_path / "out", config=CONFIG, verify=False)
    with pytest.raises(BringupError, match="tile=32"):
        generate(trace, 0, tmp_path / "out2", config=PRESETS["default"])


def test_missing_or_corrupt_trace_is_a_one_line_error(trace, tmp_path, capsys):
    from .bringup import main
    assert main(["--trace", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
                 "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open trace") and "does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
    bad = tmp_path / "bad"
    shutil.copytree(trace, bad)
    with open(next(bad.glob("*/arrays.npz")), "ab") as f:
        f.write(b"\0")
    assert main(["--trace", str(bad), "--out", str(tmp_path / "o"), "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "arrays.npz" in err and "corrupt or modified" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        main(["--trace", str(trace), "--config", "huge"])
    assert exit_.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err

"""Trace folders: round trip, determinism, and every kind of damage rejected by name."""

import json
import re
import shutil

import numpy as np
import pytest

from golden import intref as ir
from traces.__main__ import main
from traces.format import (SCHEMA_VERSION, TraceError, open_trace, recompute, sha256_file,
                           write_trace)
from traces.synth import random_execution


def small_trace(path, **overrides):
    args = dict(cin=20, cout=18, height=5, width=6, kernel=3, stride=1, sparsity=0.6,
                mode="int4", seed=3)
    args.update(overrides)
    write_trace(path, [random_execution(**args)], header={"source": "test"})
    return path


@pytest.fixture
def trace_dir(tmp_path):
    return small_trace(tmp_path / "t")


def test_round_trip_and_recompute(trace_dir):
    trace = open_trace(trace_dir)
    ex = trace.load(0)
    for name, want in recompute(ex).items():
        assert np.array_equal(want, ex.arrays[name]), name


def test_export_is_deterministic(tmp_path):
    a, b = small_trace(tmp_path / "a"), small_trace(tmp_path / "b")
    for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert sha256_file(a / f) == sha256_file(b / f), f


@pytest.mark.parametrize("mode, kw", [("int4", dict(cin=33, cout=5, stride=2)),
                                      ("mxint8", dict(cin=40, cout=20, kernel=1)),
                                      ("int4", dict(residual=True, out_format="int4")),
                                      ("int4", dict(height=1, width=1, kernel=1))])
def test_random_layers_of_odd_shapes_validate(tmp_path, mode, kw):
    d = small_trace(tmp_path / "t", mode=mode, **kw)
    assert main(["check", "--recompute", str(d)]) == 0


def test_flipped_byte_is_rejected(trace_dir):
    f = trace_dir / "exec0000" / "arrays.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(TraceError, match=r"exec0000/arrays.npz.*SHA-256"):
        open_trace(trace_dir)


def test_truncated_file_is_rejected(trace_dir):
    f = trace_dir / "exec0000" / "arrays.npz"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(TraceError, match="arrays.npz.*SHA-256"):
        open_trace(trace_dir)
    trace = open_trace(trace_dir, verify_hashes=False)
    with pytest.raises(TraceError, match="arrays.npz.*cannot be read"):
        trace.load(0)


def test_missing_files_are_rejected(trace_dir, tmp_path):
    (trace_dir / "exec0000" / "arrays.npz").unlink()
    with pytest.raises(TraceError, match="arrays.npz: file is missing"):
        open_trace(trace_dir)
    (trace_dir / "manifest.json").unlink()
    with pytest.raises(TraceError, match="manifest.json: manifest is missing"):
        open_trace(trace_dir)
    with pytest.raises(TraceError, match="does not exist"):
        open_trace(tmp_path / "nowhere")


def edit_manifest(trace_dir, edit):
    path = trace_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_wrong_schema_version_is_rejected(trace_dir):
    edit_manifest(trace_dir, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(TraceError, match=r"manifest.json \[schema_version\]"):
        open_trace(trace_dir)


def test_bad_descriptor_is_rejected(trace_dir):
    edit_manifest(trace_dir, lambda m: m["executions"][0]["descriptor"].update(kernel=5))
    with pytest.raises(TraceError, match=r"executions\[0\].descriptor.*kernel"):
        open_trace(trace_dir)


def test_out_of_range_code_is_rejected(trace_dir, tmp_path):
    """Rewrite an .npz with a UINT4 code of 16 and a matching hash: the range check catches it."""
    trace = open_trace(trace_dir)
    ex = trace.load(0)
    ex.arrays["x_codes"][1, 2, 3] = 16
    bad = tmp_path / "bad"
    with pytest.raises(TraceError, match=r"x_codes.*value 16 at index \(1, 2, 3\)"):
        write_trace(bad, [ex], header={})
    # the same damage in an existing folder (hash updated, so only the range check can see it)
    from traces.format import _write_npz
    f = trace_dir / "exec0000" / "arrays.npz"
    _write_npz(f, ex.arrays)
    edit_manifest(trace_dir, lambda m: m["sha256"].update({"exec0000/arrays.npz":
                                                           sha256_file(f)}))
    with pytest.raises(TraceError, match=r"arrays.npz \[x_codes\].*outside \[0, 15\]"):
        open_trace(trace_dir).load(0)


def test_mismatched_shape_is_rejected(trace_dir):
    edit_manifest(trace_dir, lambda m: m["executions"][0]["descriptor"].update(cin=19))
    with pytest.raises(TraceError, match=r"\[x_codes\]: shape is \(5, 6, 20\), expected \(5, 6, 19\)"):
        open_trace(trace_dir).load(0)


def test_wrong_expected_result_is_caught_by_recompute(trace_dir, capsys):
    from traces.format import _write_npz
    ex = open_trace(trace_dir).load(0)
    ex.arrays["out_codes"][0, 0, 0] ^= 1
    f = trace_dir / "exec0000" / "arrays.npz"
    _write_npz(f, ex.arrays)
    edit_manifest(trace_dir, lambda m: m["sha256"].update({"exec0000/arrays.npz":
                                                           sha256_file(f)}))
    assert main(["check", str(trace_dir)]) == 0
    assert main(["check", "--recompute", str(trace_dir)]) == 1
    assert "[out_codes]: differs from the golden" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--cin", "0"], "cin must be a positive int"),
    (["--kernel", "3", "--padding", "3"], "padding must be in"),
    (["--sparsity", "1.5"], "sparsity must be in"),
    (["--height", "1", "--padding", "0"], "smaller than the 3x3 kernel"),
    (["--cin", "5000"], "cin must be < 4096 (a descriptor field), got 5000"),
    (["--cin", "4000", "--height", "4000", "--width", "4000"],
     "values; a random layer is limited to 67,108,864"),
])
def test_random_layer_rejects_illegal_arguments(tmp_path, capsys, argv, message):
    base = {"--cin": "16", "--cout": "16", "--height": "4", "--width": "4", "--kernel": "3"}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v
    args = ["random-layer", "--out", str(tmp_path / "x")]
    for k, v in base.items():
        args += [k, v]
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_info_prints_a_summary(trace_dir, capsys):
    assert main(["info", str(trace_dir)]) == 0
    out = capsys.readouterr().out
    assert "random.int4.c20k18" in out and "5x6x20->18 k3s1" in out


def test_copy_of_a_trace_still_verifies(trace_dir, tmp_path):
    shutil.copytree(trace_dir, tmp_path / "copy")
    assert len(open_trace(tmp_path / "copy")) == 1


def test_hex_files_hold_the_arrays(tmp_path):
    from hw import layout
    from traces.hexfiles import EXPORT_CONFIG
    d = tmp_path / "h"
    assert main(["random-layer", "--cin", "40", "--cout", "20", "--height", "3", "--width", "4",
                 "--kernel", "3", "--residual", "--out", str(d)]) == 0
    trace = open_trace(d)
    ex = trace.load(0)
    files = trace.records[0]["files"]
    assert sorted(f.split("/")[-1] for f in files) == [
        "act.hex", "arrays.npz", "out_expected.hex", "param.hex", "res.hex", "weight.hex"]
    desc = ex.descriptor
    words = layout.read_memh(d / "exec0000" / "out_expected.hex", layout.ACT_WORD_BITS, 3 * 4 * 2)
    codes, scales = layout.unpack_outputs(words, out_height=3, out_width=4, cout=20,
                                          out_format=desc.out_format)
    assert np.array_equal(codes, ex.arrays["out_codes"])
    assert np.array_equal(scales, ex.arrays["out_scales"])
    act = layout.read_memh(d / "exec0000" / "act.hex", layout.ACT_WORD_BITS, 3 * 4 * 3)
    first, scale = layout.unpack_vector(act[0], 16)
    assert first == ex.arrays["x_codes"][0, 0, :16].tolist()
    assert scale == ex.arrays["x_scales"][0, 0, 0]
    w = layout.read_memh(d / "exec0000" / "weight.hex", layout.weight_word_bits(EXPORT_CONFIG.tile),
                         9 * 3)
    assert len([x for x in w if x]) > 0
    cycles = ex.meta["cycles"]
    assert cycles["cycles"] > cycles["dpe_busy"] > 0 and cycles["mem_writes"] == 3 * 4 * 2


@pytest.mark.parametrize("mode", ["int4", "mxint8"])
def test_saturating_random_layer_saturates(mode):
    """``saturate=True`` exercises the PPU clamp in both modes and the term clamp in MXINT8
    (INT4 terms cannot reach +-TERM_LIMIT), without changing the layer's shape."""
    kw = dict(cin=40, cout=20, height=3, width=3, kernel=3, stride=1, sparsity=0.5, seed=11,
              mode=mode, residual=True)
    plain = ir.run_layer(**random_execution(**kw).inputs())
    ex = random_execution(**kw, saturate=True)
    r = ir.run_layer(**ex.inputs())
    assert plain.saturated_terms == 0 and plain.out.saturated == 0
    assert r.out.saturated > 0 and ".sat." in ex.name
    assert (r.saturated_terms > 0) == (mode == "mxint8")


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:-1], r"act.hex: has 35 lines, the arrays \(x_codes, x_scales\) give 36"),
    (lambda lines: [lines[0][:-1] + "g"] + lines[1:], r"act.hex \[line 1\]: is '.*g', expected 66"),
    (lambda lines: lines[:1] + [lines[1][:-1] + ("1" if lines[1][-1] != "1" else "2")]
     + lines[2:], r"act.hex \[line 2\]: holds .*, the arrays \(x_codes, x_scales\) give"),
])
def test_hex_file_that_disagrees_with_the_arrays_is_named(tmp_path, capsys, edit, message):
    """A hex file edited after export (its hash updated, so only the content check can tell)
    fails `traces check` with the file, the line and the arrays it should hold."""
    d = tmp_path / "h"
    assert main(["random-layer", "--cin", "40", "--cout", "20", "--height", "3", "--width", "4",
                 "--kernel", "3", "--out", str(d)]) == 0
    assert main(["check", str(d)]) == 0
    path = d / "exec0000" / "act.hex"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    edit_manifest(d, lambda m: m["sha256"].update({"exec0000/act.hex": sha256_file(path)}))
    capsys.readouterr()
    assert main(["check", str(d)]) == 1
    assert re.search(message, capsys.readouterr().err)


def test_writing_a_trace_replaces_an_older_one_whole(tmp_path):
    """A shorter trace written over a longer one leaves no execution folder of the old one."""
    d = tmp_path / "t"
    exs = [random_execution(cin=16, cout=16, height=2, width=2, kernel=1, stride=1,
                            sparsity=0.5, mode="int4", seed=s) for s in range(3)]
    write_trace(d, exs, header={"source": "test"})
    assert sorted(p.name for p in d.iterdir()) == ["exec0000", "exec0001", "exec0002",
                                                   "manifest.json"]
    write_trace(d, exs[:1], header={"source": "test"})
    assert sorted(p.name for p in d.iterdir()) == ["exec0000", "manifest.json"]
    assert len(open_trace(d)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary folder left


def test_writing_a_trace_never_replaces_other_data(tmp_path, capsys):
    """A non-empty folder that holds no trace, or a file, is refused and left as it was; the
    command line reports it in one line."""
    ex = random_execution(cin=16, cout=16, height=2, width=2, kernel=1, stride=1,
                          sparsity=0.5, mode="int4", seed=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    with pytest.raises(TraceError, match="non-empty folder that holds no trace"):
        write_trace(mine, [ex], header={})
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    f = tmp_path / "file.txt"
    f.write_text("keep me too\n")
    assert main(["random-layer", "--cin", "16", "--cout", "8", "--height", "2", "--width", "2",
                 "--kernel", "1", "--out", str(f)]) == 1
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "Traceback" not in err
    assert f.read_text() == "keep me too\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "mine"]

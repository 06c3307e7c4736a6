"""The project's only Verilog emitter.

Every block reaches Verilog through :func:`emit_verilog`, so port names are predictable
(``clk``, ``rst``, ``i__payload``, ``i__valid``, ``i__ready``, ...) and the text is
byte-identical from run to run (``emit_src=False`` drops the Python source locations).
"""

import os
import tempfile
from pathlib import Path

from amaranth.back import verilog

__all__ = ["REPO_ROOT", "BUILD_ROOT", "emit_verilog"]

#: Root of the git checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Everything generated (caches, Verilog, simulator builds) lives below this folder.
BUILD_ROOT = REPO_ROOT / "build"
def _set_cache_home():
    # Amaranth runs Yosys as WebAssembly; wasmtime caches the compiled module under
    # $XDG_CACHE_HOME (the first conversion costs ~5 s, later ones ~0.4 s). Keep that cache in
    # the build tree unless the user chose a location.
    os.environ.setdefault("XDG_CACHE_HOME", str(BUILD_ROOT / "cache"))


def emit_verilog(component, name, path=None, platform=None):
    """Convert ``component`` to Verilog and return the text.

    Parameters
    ----------
    component : :class:`amaranth.lib.wiring.Component`
        The design. Its signature gives the ports; ``clk`` and ``rst`` are added when the
        design uses the ``sync`` domain.
    name : :class:`str`
        Name of the top-level Verilog module (a Verilog identifier).
    path : path-like or ``None``
        If given, the text is also written there, atomically (a temporary file in the same
        folder, then a rename), so parallel test workers never read a half-written file. Parent
        folders are created.
    platform : ``None`` or :data:`hw.dsp.ECP5`
        The generation target, passed to every ``elaborate`` (:mod:`hw.dsp`).

    Sets ``XDG_CACHE_HOME`` to ``<repo>/build/cache`` in this process if it is unset.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Verilog module name must be an identifier, not {name!r}")
    _set_cache_home()
    text = verilog.convert(component, name=name, platform=platform, emit_src=False)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    return text

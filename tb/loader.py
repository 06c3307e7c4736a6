"""A simulation-only wrapper of the accelerator top that loads memories from ``$readmemh`` files.

Driving the host port from Python costs one cocotb ``await`` (and, for a weight word, an
8448-bit value conversion) per word; on a whole MNIST sample that was ~40 % of a replay's wall
time. The wrapper ``sqdm_tb`` has every port of ``sqdm_top`` under the same name, plus:

- ``tb_load`` (in): sampled at a rising edge, it reads ``sqdm_load_<mem>.hex`` from the
  simulator's working folder (``<mem>``: the memory ``host_sel`` selects, lower case, as
  :class:`hw.top.MemSel` names it) into a buffer of that memory's shape, words ``0 ..
  tb_load_words - 1``;
- ``tb_load_words`` (in, 32 bits): the words to load;
- ``tb_load_busy`` (out): high from that edge until the edge that writes the last word.

While busy, the wrapper drives the top's host port itself, one word per clock edge from address
0 (``host_we`` high; the host's own ``host_we/addr/wdata`` are ignored): the same writes, in the
same order and at the same rate, as :meth:`tb.host.AcceleratorTB.load` issues word by word, so
the top cannot tell the two apart. Nothing of it is synthesised: ``hw/`` never sees it.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hw.config import AcceleratorConfig
from hw.top import MemSel
from tb.simulator import module_header

__all__ = ["LOADER_TOP", "LOADED_MEMS", "load_file", "port_declarations", "loader_verilog",
           "write_loader"]

#: Module name of the wrapper (the cocotb toplevel of a replay).
LOADER_TOP = "sqdm_tb"
#: The memories the wrapper loads (the host port's writable ones).
LOADED_MEMS = tuple(m for m in MemSel if m is not MemSel.OUT)
#: The wrapper's own ports (name, direction, bits).
_OWN_PORTS = (("tb_load", "input", 1), ("tb_load_words", "input", 32),
              ("tb_load_busy", "output", 1))
#: The host-port inputs the wrapper drives while it loads.
_DRIVEN = ("host_we", "host_addr", "host_wdata")


def load_file(sel: MemSel) -> str:
    """The file name (in the simulator's working folder) the wrapper loads memory ``sel``
    from."""
    return f"sqdm_load_{sel.name.lower()}.hex"


def port_declarations(verilog_text: str, toplevel: str) -> list[tuple[str, str, int]]:
    """``(name, direction, bits)`` of each port of module ``toplevel`` in ``verilog_text``
    (non-ANSI declarations, as Yosys writes them), in header order."""
    header = module_header(verilog_text, toplevel)
    if header is None:
        raise ValueError(f"no `module {toplevel}(...);` header found")
    names, end = header
    body = verilog_text[end:verilog_text.find("endmodule", end)]
    decls = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s+)?(\w+)\s*;",
                         body, re.MULTILINE):
        decls.setdefault(m.group(3), (m.group(1), int(m.group(2) or 0) + 1))
    missing = [n for n in names if n not in decls]
    if missing:
        raise ValueError(f"module {toplevel}: no declaration of port(s) {', '.join(missing)}")
    return [(n, *decls[n]) for n in names]


def loader_verilog(top_verilog: str, config: AcceleratorConfig, toplevel: str = "sqdm_top"
                   ) -> str:
    """The Verilog of :data:`LOADER_TOP` around ``toplevel`` (whose Verilog is
    ``top_verilog``, generated with ``config``: its memories' depths and word widths size the
    buffers)."""
    ports = port_declarations(top_verilog, toplevel)
    bits = {name: b for name, _, b in ports}
    for name in (*_DRIVEN, "host_sel", "clk"):
        if name not in bits:
            raise ValueError(f"module {toplevel} has no port {name!r}")
    taken = sorted(set(bits) & {n for n, _, _ in _OWN_PORTS})
    if taken:
        raise ValueError(f"module {toplevel} already has port(s) {', '.join(taken)}")
    addr_bits, data_bits = bits["host_addr"], bits["host_wdata"]
    mems = [(sel, config.depths[sel.name.lower()], config.widths[sel.name.lower()])
            for sel in LOADED_MEMS]
    for sel, depth, width in mems:
        if depth > 1 << addr_bits or width > data_bits:
            raise ValueError(f"memory {sel.name.lower()} ({depth} words of {width} bits) does "
                             f"not fit the host port ({addr_bits} address, {data_bits} data "
                             f"bits): the Verilog was not generated with this configuration")

    def decl(direction, name, b):
        return f"  {direction} {f'[{b - 1}:0] ' if b > 1 else ''}{name};"

    all_ports = ports + [(n, d, b) for n, d, b in _OWN_PORTS]
    lines = [f"// Simulation-only wrapper of {toplevel} (tb/loader.py): $readmemh memory loads.",
             f"module {LOADER_TOP}({', '.join(n for n, _, _ in all_ports)});"]
    lines += [decl(d, n, b) for n, d, b in all_ports]
    lines += ["  reg tb_busy = 1'b0;", "  reg [31:0] tb_idx = 32'd0;",
              "  assign tb_load_busy = tb_busy;"]
    for sel, depth, width in mems:
        lines.append(f"  reg [{width - 1}:0] tb_{sel.name.lower()} [0:{depth - 1}];")
    lines.append(f"  reg [{data_bits - 1}:0] tb_word;")
    lines.append("  always @(*) begin")
    lines.append(f"    tb_word = {data_bits}'d0;")
    lines.append("    case (host_sel)")
    for sel, depth, width in mems:
        lines.append(f"      {sel.value}: tb_word = tb_{sel.name.lower()}"
                     f"[tb_idx[{max(depth - 1, 1).bit_length() - 1}:0]];")
    lines += ["      default: ;", "    endcase", "  end",
              "  always @(posedge clk) begin",
              "    if (tb_load) begin",
              "      case (host_sel)"]
    for sel, _, _ in mems:
        lines.append(f'        {sel.value}: $readmemh("{load_file(sel)}", '
                     f"tb_{sel.name.lower()}, 0, tb_load_words - 1);")
    lines += ["        default: ;", "      endcase",
              "      tb_busy <= 1'b1;", "      tb_idx <= 32'd0;",
              "    end else if (tb_busy) begin",
              "      tb_idx <= tb_idx + 32'd1;",
              "      if (tb_idx + 32'd1 == tb_load_words) tb_busy <= 1'b0;",
              "    end",
              "  end"]
    conns = []
    for name, _, _ in ports:
        if name == "host_we":
            conns.append(".host_we(host_we | tb_busy)")
        elif name == "host_addr":
            conns.append(f".host_addr(tb_busy ? tb_idx[{addr_bits - 1}:0] : host_addr)")
        elif name == "host_wdata":
            conns.append(".host_wdata(tb_busy ? tb_word : host_wdata)")
        else:
            conns.append(f".{name}({name})")
    lines.append(f"  {toplevel} dut (")
    lines.append(",\n".join(f"    {c}" for c in conns))
    lines += ["  );", "endmodule", ""]
    return "\n".join(lines)


def write_loader(top_path: Path, config: AcceleratorConfig, toplevel: str = "sqdm_top") -> Path:
    """Write the wrapper of the top in ``top_path`` beside it (``<LOADER_TOP>.v``; replaced
    atomically, so parallel shards may call this at once). Returns its path."""
    top_path = Path(top_path)
    text = loader_verilog(top_path.read_text(), config, toplevel)
    out = top_path.with_name(f"{LOADER_TOP}.v")
    if out.is_file() and out.read_text() == text:
        return out
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{LOADER_TOP}-", suffix=".v")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    return out

"""Estimated register-to-register delays of a synthesised ECP5 netlist, before placement.

``python -m fpga.paths NETLIST.json [--hop 1.0] [--target-mhz 100] [--top 30] [--blocks]
[--path NAME] [--fanout N] [--json OUT]`` reads the JSON netlist Yosys' ``synth_ecp5``
writes (``python -m fpga.synth --no-pnr`` leaves one in its run folder, ``python -m
fpga.bitstream`` too) and estimates, for every timing endpoint (a flip-flop's data, enable
or set/reset input; a block RAM's or LUT RAM's input), the arrival of its latest signal:
the cells' own delays (``CELL_NS``) plus a fixed routing delay per net hop (``--hop``, ns;
none into a carry input or between a LUT and its PFUMX / L6MUX21, which are wired inside the
slice). It prints the endpoints grouped by the
name of the register they load, worst first, with how many miss ``--target-mhz``, and with
``--path`` the worst path into a register whose name contains NAME. ``--fanout N`` also
prints the N nets with the most sinks (clock nets aside), with their driver and the kinds of
pin they reach: a net to thousands of pins is routed as thousands of arcs (the board's reset
was one of ~20 k, docs/fpga.md 0.6).

``python -m fpga.paths --routed NEXTPNR_REPORT.json [--target-mhz 100] [--top 30]
[--blocks] [--nets N] [--json OUT]`` ranks the same way the routed arrival of every endpoint,
from the report nextpnr writes with ``--report FILE --detailed-timing-report`` (``python -m
fpga.bitstream --nextpnr-arg=--detailed-timing-report`` leaves ``nextpnr_report.json`` in
its run folder): where nextpnr's log names one critical path, this shows how many endpoints
of which blocks miss the target after routing, and with ``--nets`` which nets deliver the
latest arrival of the most of them (one LUT to a thousand set/reset pins is one row).

What it is for: ranking what to pipeline next in seconds, where nextpnr needs a placement
(15-20 minutes for the ``board`` preset) to print one critical path. What it is not: timing
sign-off. Routing delay depends on placement and fan-out, not on a constant; with the default
hop of 1.0 ns the worst path came within 0.1-2.3 ns of nextpnr's post-placement estimate of
the ``board`` preset (docs/fpga.md 2), but it measures logic depth, not wire length, and only
the routed figure counts.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import sys
from pathlib import Path

__all__ = ["CELL_NS", "Endpoint", "Netlist", "estimate", "estimate_report", "describe",
           "group_name", "summary", "block_counts", "trace", "fanouts", "routed_endpoints",
           "last_nets", "routed_report", "describe_routed", "main"]

#: Delay (ns) of a cell from its inputs to its output, or for a register or block RAM from its
#: clock to its output (ECP5 speed grade 6, rounded: nextpnr's timing database).
CELL_NS = {
    "LUT4": 0.45, "PFUMX": 0.25, "L6MUX21": 0.25,
    "CCU2C": 0.5,            # an operand input to a sum or the carry out
    "CCU2C.carry": 0.06,     # carry in -> carry out (per two bits)
    "CCU2C.cin_sum": 0.3,    # carry in -> sum
    "MULT18X18D": 3.9,       # unregistered multiplier
    "TRELLIS_DPR16X4": 0.9,  # LUT RAM read address -> data
    "TRELLIS_FF": 0.5,       # clock -> Q
    "DP16KD": 4.2,           # block RAM clock -> data (no output register)
}
#: Set-up time (ns) of an endpoint.
SETUP_NS = 0.1
#: Combinational cells and the inputs that time through them.
COMB_INPUTS = {
    "LUT4": {"A", "B", "C", "D"},
    "PFUMX": {"ALUT", "BLUT", "C0"},
    "L6MUX21": {"D0", "D1", "SD"},
    "CCU2C": {"A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1", "CIN"},
    "MULT18X18D": {f"{p}{i}" for p in "AB" for i in range(18)},
    "TRELLIS_DPR16X4": {"RAD"},  # the asynchronous read port
}
#: Inputs wired inside a slice or a carry chain: no routing hop.
NO_HOP = {("PFUMX", "ALUT"), ("PFUMX", "BLUT"), ("L6MUX21", "D0"), ("L6MUX21", "D1"),
          ("CCU2C", "CIN")}
#: Cells whose inputs (other than their clocks) are timing endpoints.
SEQUENTIAL = {"TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4"}
CLOCKS = {"CLK", "CLKA", "CLKB", "WCK"}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One timed input: ``arrival_ns`` (with set-up), the register it loads (``name``), the
    cell and port, and the net bit that arrives last."""
    arrival_ns: float
    name: str
    cell: str
    port: str
    bit: int


class Netlist:
    """The top module of a Yosys JSON netlist: cells, the driver of every net bit and a
    readable name per bit (a public net name where there is one)."""

    def __init__(self, path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no netlist at {path}")
        try:
            doc = json.loads(path.read_text())
            modules = doc["modules"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a Yosys JSON netlist ({exc})") from None
        tops = [m for m in modules.values() if m.get("attributes", {}).get("top")]
        if len(tops) != 1:
            raise ValueError(f"{path}: expected one top module, found {len(tops)}")
        top = tops[0]
        self.cells = top.get("cells", {})
        self.names = {}
        for name, info in top.get("netnames", {}).items():
            for i, bit in enumerate(info["bits"]):
                if not isinstance(bit, int):
                    continue
                label = f"{name}[{i}]" if len(info["bits"]) > 1 else name
                old = self.names.get(bit)
                if old is None or (old.startswith("$") and not name.startswith("$")):
                    self.names[bit] = label
        self.driver = {}
        for cname, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) == "output":
                    for bit in bits:
                        if isinstance(bit, int):
                            self.driver[bit] = (cname, port)

    def inputs(self, cname):
        """``(port, bit)`` of every connected input of a cell."""
        cell = self.cells[cname]
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port, "input") == "input":
                for bit in bits:
                    if isinstance(bit, int):
                        yield port, bit


def _comb_delay(ctype, in_port, out_port):
    if ctype == "CCU2C" and in_port == "CIN":
        return CELL_NS["CCU2C.carry"] if out_port == "COUT" else CELL_NS["CCU2C.cin_sum"]
    return CELL_NS[ctype]


def _dsp_register(cell, which):
    """Whether ``cell`` is a multiplier block with its ``which`` register (``OUTPUT``,
    ``INPUTA``) clocked."""
    return (cell["type"] == "MULT18X18D"
            and cell.get("parameters", {}).get(f"REG_{which}_CLK", "NONE") not in ("NONE", ""))


def _is_start(cell):
    """The cell's outputs start paths: a register, a block RAM, a multiplier block with its
    output register, or an unknown cell."""
    return cell["type"] not in COMB_INPUTS or _dsp_register(cell, "OUTPUT")


def _is_endpoint(cell, port):
    """Whether input ``port`` of ``cell`` loads a register: a register's, a block RAM's
    (not their clocks, not a LUT RAM's read address), a multiplier block's A and B with its
    input registers."""
    if _dsp_register(cell, "INPUTA"):
        return port in COMB_INPUTS["MULT18X18D"]
    return (cell["type"] in SEQUENTIAL and port not in CLOCKS
            and port not in COMB_INPUTS.get(cell["type"], ()))


def estimate(netlist: Netlist, hop_ns=1.0):
    """Every endpoint of ``netlist`` (:class:`Endpoint`, latest first) and the arrival
    function ``arrival(bit) -> (ns, previous bit)`` for tracing paths. A combinational loop
    is cut where it closes (its back edge counts as a start)."""
    memo = {}

    def arrival(bit):
        if bit in memo:
            return memo[bit]
        # iterative depth-first evaluation: the netlist's cones are thousands of cells deep
        stack = [(bit, False)]
        while stack:
            b, expanded = stack.pop()
            if b in memo and not expanded:
                continue
            drv = netlist.driver.get(b)
            if drv is None:
                memo[b] = (0.0, None)
                continue
            cname, out_port = drv
            cell = netlist.cells[cname]
            if _is_start(cell):
                memo[b] = (CELL_NS.get(cell["type"], CELL_NS["TRELLIS_FF"]), None)
                continue
            timed = [(p, ib) for p, ib in netlist.inputs(cname)
                     if p in COMB_INPUTS[cell["type"]]]
            if not expanded:
                memo[b] = None  # in progress: a loop back to it reads as a start
                stack.append((b, True))
                stack.extend((ib, False) for _, ib in timed if ib not in memo)
                continue
            best = (0.0, None)
            for port, ib in timed:
                got = memo.get(ib)
                start = got[0] if got else 0.0
                hop = 0.0 if (cell["type"], port) in NO_HOP else hop_ns
                t = start + hop + _comb_delay(cell["type"], port, out_port)
                if t > best[0]:
                    best = (t, ib)
            memo[b] = best
        return memo[bit]

    ends = []
    for cname, cell in netlist.cells.items():
        if cell["type"] not in SEQUENTIAL and not _dsp_register(cell, "INPUTA"):
            continue
        q = cell["connections"].get("Q", [None])[0] if cell["type"] == "TRELLIS_FF" else None
        name = netlist.names.get(q, cname) if isinstance(q, int) else cname
        for port, bit in netlist.inputs(cname):
            if not _is_endpoint(cell, port):
                continue
            ends.append(Endpoint(round(arrival(bit)[0] + hop_ns + SETUP_NS, 3), name, cname,
                                 port, bit))
    ends.sort(key=lambda e: (-e.arrival_ns, e.name, e.port))
    return ends, arrival


#: Where Yosys' generated net-name suffixes (``_LUT4_Z_D...``) begin.
_SUFFIX = re.compile(r"_(?:LUT4|CCU2C|PFUMX|L6MUX21|TRELLIS|DP16KD|MULT18X18D)")


def _design_name(name):
    """A net name without Yosys' generated suffix."""
    return _SUFFIX.split(name)[0]


def group_name(name):
    """The register a flip-flop's name belongs to: Yosys' generated suffixes, bit indices and
    trailing digits (``acc3`` -> ``acc#``) removed."""
    name = _design_name(name)
    name = re.sub(r"\[\d+\]", "", name)
    name = re.sub(r"\$\d+", "$", name)
    return re.sub(r"\d+$", "#", name)


def summary(ends, target_mhz=100.0):
    """Per register group: endpoints, worst arrival and how many miss ``target_mhz``, worst
    group first."""
    period = 1000.0 / target_mhz
    groups = collections.OrderedDict()
    for e in ends:
        name = group_name(e.name)
        g = groups.setdefault(name, {"name": name, "endpoints": 0, "worst_ns": e.arrival_ns,
                                     "failing": 0})
        g["endpoints"] += 1
        g["failing"] += e.arrival_ns > period
    return list(groups.values())


def block_counts(ends, target_mhz=100.0):
    """Per block (a register name's hierarchy, its last component dropped): endpoints and how
    many miss ``target_mhz``, most failing first."""
    period = 1000.0 / target_mhz
    blocks = collections.Counter()
    failing = collections.Counter()
    for e in ends:
        block = _design_name(e.name).rsplit(".", 1)[0] if "." in e.name else "(top)"
        blocks[block] += 1
        failing[block] += e.arrival_ns > period
    return [{"block": b, "endpoints": blocks[b], "failing": failing[b]}
            for b in sorted(blocks, key=lambda b: (-failing[b], b))]


def trace(arrival, netlist, bit):
    """The path into ``bit``: ``[(arrival ns, cell type, net name)]``, latest first (Yosys'
    generated suffixes cut from the names)."""
    out = []
    while bit is not None:
        t, prev = arrival(bit)
        drv = netlist.driver.get(bit)
        name = netlist.names.get(bit, str(bit))
        short = _design_name(name)
        index = re.search(r"\[\d+\]$", name)
        if short != name and index:
            short += index.group()
        out.append((t, netlist.cells[drv[0]]["type"] if drv else "input", short))
        bit = prev
    return out


def fanouts(netlist: Netlist, top=20):
    """The ``top`` nets with the most sinks, most first, clock inputs not counted (the clock
    is on a global network): ``{"net", "sinks", "driver", "pins"}``, ``driver`` the driving
    cell's type (``"(input)"`` for a port), ``pins`` the sinks per ``"CELL.PORT"``, most
    first."""
    pins = collections.defaultdict(collections.Counter)
    for cname, cell in netlist.cells.items():
        for port, bit in netlist.inputs(cname):
            if port not in CLOCKS:
                pins[bit][f"{cell['type']}.{port}"] += 1
    ranked = sorted(pins.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
    rows = []
    for bit, kinds in ranked:
        driver = netlist.driver.get(bit)
        rows.append({"net": netlist.names.get(bit, f"${bit}"), "sinks": sum(kinds.values()),
                     "driver": netlist.cells[driver[0]]["type"] if driver else "(input)",
                     "pins": dict(kinds.most_common())})
    return rows


def estimate_report(path, *, hop_ns=1.0, target_mhz=100.0, top=10, trace_name=None,
                    fanout=0):
    """The estimate of the netlist at ``path`` as a JSON-ready dict: ``hop_ns``,
    ``target_mhz``, ``endpoints``, ``failing`` (endpoints over the target's period),
    ``worst_ns``, ``estimate_mhz``, the ``top`` worst register ``groups``, the ``top``
    ``blocks`` with the most failing endpoints (:func:`block_counts`) and, with
    ``trace_name``, the worst ``path`` into a register whose name contains it and that
    endpoint (``path_end``; ``[]`` and None when none does); with ``fanout``, the
    ``fanout`` nets with the most sinks (``fanouts``, :func:`fanouts`). The synthesis and
    bitstream flows put it in their reports (``path_estimate``)."""
    netlist = Netlist(path)
    ends, arrival = estimate(netlist, hop_ns)
    path_rows, path_end = [], None
    if trace_name:
        hit = next((e for e in ends if trace_name in e.name), None)
        if hit is not None:
            path_end = {"name": hit.name, "port": hit.port, "ns": hit.arrival_ns}
            path_rows = [{"ns": t, "cell": c, "net": n}
                         for t, c, n in trace(arrival, netlist, hit.bit)]
    return {"hop_ns": hop_ns, **_ranking(ends, target_mhz, top, "estimate_mhz"),
            "path_end": path_end, "path": path_rows,
            **({"fanouts": fanouts(netlist, fanout)} if fanout else {})}


def _ranking(ends, target_mhz, top, mhz_key):
    """What the estimate's and the routed report share, from endpoints latest first:
    ``target_mhz``, ``endpoints``, ``failing`` (over the target's period), ``worst_ns``, the
    clock of the worst as ``mhz_key``, the ``top`` worst register ``groups`` and the ``top``
    ``blocks`` with the most failing endpoints."""
    period = 1000.0 / target_mhz
    worst = ends[0].arrival_ns if ends else 0.0
    return {"target_mhz": target_mhz, "endpoints": len(ends),
            "failing": sum(1 for e in ends if e.arrival_ns > period), "worst_ns": worst,
            mhz_key: round(1000.0 / worst, 2) if worst else None,
            "groups": summary(ends, target_mhz)[:top],
            "blocks": block_counts(ends, target_mhz)[:top]}


def _routed_arrivals(path):
    """``{(cell, port): (ns, net, driver)}`` from nextpnr's JSON report written with
    ``--detailed-timing-report``: per endpoint, its latest arrival on a path launched by a
    clock edge (paths from asynchronous inputs, such as the reset pin's, aside), the net that
    delivers it and that net's driver (``cell.port``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no nextpnr report at {path}")
    try:
        nets = json.loads(path.read_text())["detailed_net_timings"]
        worst = {}
        for net in nets:
            if net["event"] == "<async>":
                continue
            for e in net["endpoints"]:
                key, ns = (e["cell"], e["port"]), float(e["delay"][-1])
                if e["event"] != "<async>" and ns > worst.get(key, (-1.0,))[0]:
                    worst[key] = (ns, net["net"], f"{net['driver']}.{net['port']}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc})") from None
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"{path} is not a nextpnr report with detailed net timings (nextpnr "
                         f"--report FILE --detailed-timing-report; missing {exc})") from None
    return worst


def routed_endpoints(path):
    """The timing endpoints of a placed and routed design (:class:`Endpoint`, latest first,
    ``bit`` -1, ``name`` the packed cell's) from nextpnr's JSON report written with
    ``--detailed-timing-report``: per endpoint, its latest arrival, routing included
    (:func:`_routed_arrivals`). The worst arrival is nextpnr's critical path (the clock's
    period at its Fmax)."""
    return _endpoints_of(_routed_arrivals(path))


def _endpoints_of(arrivals):
    """:class:`Endpoint` rows, latest first, of :func:`_routed_arrivals`' mapping."""
    ends = [Endpoint(round(ns, 3), cell, cell, port, -1)
            for (cell, port), (ns, _, _) in arrivals.items()]
    ends.sort(key=lambda e: (-e.arrival_ns, e.name, e.port))
    return ends


def last_nets(path, *, target_mhz=100.0, top=10):
    """The nets that deliver the latest arrival of the most endpoints over the target's
    period in nextpnr's report at ``path``, ``top`` rows of ``net``, ``driver``, the
    endpoints' ``port``, ``failing`` and ``worst_ns``, most failing first. A net of one
    driver to many set/reset or enable pins (a wide clear or load enable) shows here as one
    row; a data path ends in a LUT's own net per endpoint."""
    return _last_nets_of(_routed_arrivals(path), target_mhz, top)


def _last_nets_of(arrivals, target_mhz, top):
    """:func:`last_nets` of :func:`_routed_arrivals`' mapping."""
    period = 1000.0 / target_mhz
    rows = {}
    for (_, port), (ns, net, driver) in arrivals.items():
        if ns > period:
            row = rows.setdefault((net, port), {"net": net, "driver": driver, "port": port,
                                                "failing": 0, "worst_ns": 0.0})
            row["failing"] += 1
            row["worst_ns"] = max(row["worst_ns"], round(ns, 3))
    return sorted(rows.values(), key=lambda r: (-r["failing"], -r["worst_ns"], r["net"],
                                                r["port"]))[:top]


def routed_report(path, *, target_mhz=100.0, top=10, nets=0):
    """:func:`routed_endpoints` of the report at ``path`` as a JSON-ready dict, in the shape of
    :func:`estimate_report`: ``target_mhz``, ``endpoints``, ``failing``, ``worst_ns``,
    ``fmax_mhz`` (of the worst arrival), the ``top`` worst register ``groups`` and the
    ``top`` ``blocks`` with the most failing endpoints; with ``nets``, the ``nets`` nets
    that deliver the most failing endpoints' arrivals (``last_nets``, :func:`last_nets`)."""
    arrivals = _routed_arrivals(path)  # (the report read once for both)
    rep = _ranking(_endpoints_of(arrivals), target_mhz, top, "fmax_mhz")
    if nets:
        rep["last_nets"] = _last_nets_of(arrivals, target_mhz, nets)
    return rep


def describe_routed(rep):
    """One line for a flow's log: the worst routed arrival and the endpoints over the target."""
    return (f"routed (nextpnr): worst {rep['worst_ns']:.2f} ns (~{rep['fmax_mhz']} MHz), "
            f"{rep['failing']:,} of {rep['endpoints']:,} endpoints over "
            f"{1000 / rep['target_mhz']:.1f} ns")


def describe(rep):
    """One line for a flow's log: the worst estimate and the endpoints over the target."""
    return (f"pre-placement estimate (fpga.paths, {rep['hop_ns']} ns per hop): worst "
            f"{rep['worst_ns']:.1f} ns (~{rep['estimate_mhz']} MHz), {rep['failing']:,} of "
            f"{rep['endpoints']:,} endpoints over {1000 / rep['target_mhz']:.1f} ns")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fpga.paths", description=__doc__.split("\n")[0])
    p.add_argument("netlist", help="synth_ecp5 JSON netlist (with --routed: nextpnr's report)")
    p.add_argument("--routed", action="store_true",
                   help="the file is nextpnr's --report written with --detailed-timing-report: "
                        "rank the routed arrivals")
    p.add_argument("--hop", type=float, default=1.0, help="routing delay per net hop, ns")
    p.add_argument("--target-mhz", type=float, default=100.0)
    p.add_argument("--top", type=int, default=30, help="register groups to print")
    p.add_argument("--path", metavar="NAME", help="print the worst path into a register "
                   "whose name contains NAME")
    p.add_argument("--blocks", action="store_true",
                   help="also print the failing endpoints per block")
    p.add_argument("--fanout", type=int, default=0, metavar="N",
                   help="also print the N nets with the most sinks")
    p.add_argument("--nets", type=int, default=0, metavar="N",
                   help="with --routed: also print the N nets that deliver the latest arrival "
                        "of the most endpoints over the target")
    p.add_argument("--json", metavar="OUT", help="write the estimate as JSON")
    args = p.parse_args(argv)
    if args.hop < 0 or args.target_mhz <= 0 or min(args.top, args.fanout, args.nets) < 0:
        p.error("--hop must be >= 0, --target-mhz > 0, --top, --fanout and --nets >= 0")
    if args.routed and (args.path or args.fanout):
        p.error("--path and --fanout read a netlist, not a routed report")
    if args.nets and not args.routed:
        p.error("--nets reads a routed report (--routed)")
    try:
        if args.routed:
            rep = routed_report(args.netlist, target_mhz=args.target_mhz, top=args.top,
                                nets=args.nets)
        else:
            rep = estimate_report(args.netlist, hop_ns=args.hop, target_mhz=args.target_mhz,
                                  top=args.top, trace_name=args.path, fanout=args.fanout)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.path and not rep["path"]:
        print(f"error: no register name contains {args.path!r}", file=sys.stderr)
        return 2
    print(describe_routed(rep) if args.routed else describe(rep))
    for g in rep["groups"]:
        print(f"  {g['worst_ns']:6.1f} ns  {g['endpoints']:6d} endpoints  {g['failing']:6d} "
              f"failing  {g['name']}")
    if args.blocks:
        print("failing endpoints per block:")
        for b in rep["blocks"]:
            print(f"  {b['failing']:6d} of {b['endpoints']:6d}  {b['block']}")
    if args.path:
        end = rep["path_end"]
        print(f"worst path into {end['name']} ({end['port']}), {end['ns']:.1f} ns:")
        for row in rep["path"]:
            print(f"  {row['ns']:6.1f}  {row['cell']:14s} {row['net']}")
    if args.fanout:
        print("nets with the most sinks (clock inputs aside):")
        for f in rep["fanouts"]:
            kinds = ", ".join(f"{k} {n}" for k, n in list(f["pins"].items())[:3])
            print(f"  {f['sinks']:6d}  {f['net']}  (from {f['driver']}: {kinds})")
    if args.nets:
        print("nets into the most endpoints over the target (their latest arrival's last net):")
        for r in rep["last_nets"]:
            print(f"  {r['failing']:6d}  {r['worst_ns']:6.2f} ns  {r['port']:4s} {r['net']}  "
                  f"(from {r['driver']})")
    if args.json:
        source = "report" if args.routed else "netlist"
        Path(args.json).write_text(json.dumps({source: str(args.netlist), **rep},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m traces {check,info,random-layer}``: trace folders from the command line."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from golden import intref as ir
from traces.format import TraceError, open_trace, recompute, write_trace


def cmd_check(args) -> int:
    from traces.hexfiles import check_hex_files
    trace = open_trace(args.dir)
    for i in range(len(trace)):
        ex = trace.load(i)
        check_hex_files(trace, i, ex)
        if args.recompute:
            for name, want in recompute(ex).items():
                if not np.array_equal(want, ex.arrays[name]):
                    raise TraceError(trace.root / trace.records[i]["folder"] / "arrays.npz",
                                     name, "differs from the golden integer reference")
    print(f"{args.dir}: OK, {len(trace)} execution(s), {len(trace.manifest['sha256'])} "
          f"file(s) verified" + (", hex files equal to the arrays" if trace.manifest.get("hex")
                                 else "") + (", results recomputed" if args.recompute else ""))
    return 0


def cmd_info(args) -> int:
    trace = open_trace(args.dir, verify_hashes=False)
    header = {k: v for k, v in trace.manifest.items() if k not in ("executions", "sha256")}
    for key, value in sorted(header.items()):
        print(f"{key}: {value}")
    print(f"{'#':>4} {'name':<44} {'shape':<22} {'mode':<6} {'in 0%':>6} {'out 0%':>6} "
          f"{'sparse grp':>10}")
    for i in range(len(trace)):
        ex = trace.load(i)
        d, a = ex.descriptor, ex.arrays
        shape = f"{d.height}x{d.width}x{d.cin}->{d.cout} k{d.kernel}s{d.stride}"
        print(f"{i:>4} {ex.name[:44]:<44} {shape:<22} {d.mode.name.lower():<6} "
              f"{100 * np.mean(a['x_codes'] == 0):>5.1f}% {100 * np.mean(a['out_codes'] == 0):>5.1f}% "
              f"{int(a['channel_map'].sum()):>4}/{a['channel_map'].size:<5}")
    return 0


def cmd_export(args) -> int:
    from traces.export import export_sample
    path = export_sample(args.out, steps=args.steps, num_steps=args.num_steps, seed=args.seed,
                         plan_path=args.plan, model_name=args.model)
    print(f"wrote {path}")
    return 0


def cmd_random_layer(args) -> int:
    from traces.synth import random_execution
    ex = random_execution(cin=args.cin, cout=args.cout, height=args.height, width=args.width,
                          kernel=args.kernel, stride=args.stride, sparsity=args.sparsity,
                          mode=args.mode, seed=args.seed, padding=args.padding,
                          residual=args.residual, out_format=args.out_format,
                          saturate=args.saturate,
                          channel_map=args.channel_map, threshold_pct=args.threshold)
    from traces.hexfiles import (cycle_model_header, hex_header, predicted_counters,
                                 write_hex_files)
    ex.meta["cycles"] = predicted_counters(ex)
    header = {"source": "random-layer", "hex": hex_header(), "cycle_model": cycle_model_header()}
    path = write_trace(args.out, [ex], header=header, extra_files=write_hex_files)
    print(f"wrote {path} ({ex.name})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m traces", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate manifest, hashes, shapes and value ranges")
    c.add_argument("dir")
    c.add_argument("--recompute", action="store_true",
                   help="also recompute every expected result with the golden reference")
    c.set_defaults(func=cmd_check)
    i = sub.add_parser("info", help="human-readable summary")
    i.add_argument("dir")
    i.set_defaults(func=cmd_info)
    e = sub.add_parser("export", help="export the layer executions of one golden sample")
    e.add_argument("--out", required=True)
    e.add_argument("--steps", default="default",
                   help="'default' (first, middle, last step), 'all', or e.g. '0,5,17'")
    e.add_argument("--num-steps", type=int, default=18, help="Heun sampler steps")
    e.add_argument("--seed", type=int, default=0, help="seed of the latent")
    e.add_argument("--plan", default=None,
                   help="precision plan JSON (default: the committed plan), or int4 / mxint8: "
                        "every layer in that precision")
    e.add_argument("--model", default="digits", choices=("digits", "mnist"),
                   help="the workload whose ReLU checkpoint a uniform --plan (int4 / mxint8) "
                        "runs on (a plan JSON names its own checkpoint)")
    e.set_defaults(func=cmd_export)
    r = sub.add_parser("random-layer", help="synthesise a trace of one random layer")
    r.add_argument("--cin", type=int, required=True)
    r.add_argument("--cout", type=int, required=True)
    r.add_argument("--height", type=int, required=True)
    r.add_argument("--width", type=int, required=True)
    r.add_argument("--kernel", type=int, choices=(1, 3), required=True)
    r.add_argument("--stride", type=int, choices=(1, 2), default=1)
    r.add_argument("--padding", type=int, default=None, help="default: kernel // 2")
    r.add_argument("--sparsity", type=float, default=0.65)
    r.add_argument("--mode", choices=("int4", "mxint8"), default="int4")
    r.add_argument("--out-format", choices=("uint4", "int4", "mxint8"), default=None)
    r.add_argument("--residual", action="store_true")
    r.add_argument("--saturate", action="store_true",
                   help="exercise the saturation paths (accumulator terms and PPU)")
    r.add_argument("--channel-map", choices=("detect", "dense", "sparse", "random"),
                   default="detect")
    r.add_argument("--threshold", type=int, default=ir.THRESHOLD_DEFAULT_PCT)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.set_defaults(func=cmd_random_layer)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (TraceError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

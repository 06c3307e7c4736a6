"""The trace folder format: writing, loading and validating layer executions.

A trace folder holds one ``manifest.json`` and, per layer execution, one ``.npz`` with every
operand and expected result (and ``$readmemh`` files, see ``traces.hexfiles``). The manifest
lists the executions with their descriptors and records a SHA-256 of every file, so a loader
can name the file and the field of any problem. ``docs/traces.md`` is the full specification.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from golden import intref as ir
from golden import numerics as nx
from hw.job import Descriptor

SCHEMA = "sqdm-trace"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class TraceError(ValueError):
    """A trace is missing, corrupt or inconsistent; the message names the file and field."""

    def __init__(self, path, field: str | None, message: str):
        self.path, self.field = str(path), field
        where = f"{path}" + (f" [{field}]" if field else "")
        super().__init__(f"{where}: {message}")


# The descriptor is the job layer's (hw.job.Descriptor): the same fields in traces and RTL.

# --------------------------------------------------------------------------- array contract

def array_specs(d: Descriptor) -> dict[str, tuple[tuple[int, ...], np.dtype, int, int]]:
    """name -> (shape, dtype, min, max) of every array an execution's .npz must hold."""
    s = d.shape
    xf, of = ir.Format(d.x_format), ir.Format(d.out_format)
    wf = xf.mode.weight_format
    xnb, onb = -(-d.cin // d.x_block), -(-d.cout // d.out_block)
    groups_in, groups_out = -(-d.cin // d.vector), -(-d.cout // d.vector)
    ho, wo = s.out_height, s.out_width

    def codes(fmt):
        dtype, lo, hi = ir._code_range(fmt)
        return np.dtype(dtype), lo, hi

    def scales(fmt):
        return np.dtype(np.uint8), 0, (254 if fmt == ir.Format.MXINT8 else nx.FP8_MAX_CODE)

    i32 = (np.dtype(np.int32), -2 ** 31, 2 ** 31 - 1)
    specs = {
        "x_codes": ((d.height, d.width, d.cin), *codes(xf)),
        "x_scales": ((d.height, d.width, xnb), *scales(xf)),
        "w_codes": ((d.cout, d.kernel, d.kernel, d.cin), *codes(wf)),
        "w_scales": ((d.cout, d.kernel, d.kernel, xnb), *scales(wf)),
        "scale_mant": ((d.cout,), np.dtype(np.int32), -(2 ** 15 - 1), 2 ** 15 - 1),
        "bias": ((d.cout,), *i32),
        "channel_map": ((groups_in,), np.dtype(np.bool_), 0, 1),
        "out_codes": ((ho, wo, d.cout), *codes(of)),
        "out_scales": ((ho, wo, onb), *scales(of)),
        "zero_counts": ((d.cout,), np.dtype(np.int64), 0, ho * wo),
        "next_map": ((groups_out,), np.dtype(np.bool_), 0, 1),
    }
    if d.residual:
        specs["residual"] = ((ho, wo, d.cout), *i32)
    return specs


def check_arrays(arrays: dict, d: Descriptor, path) -> None:
    """Raise TraceError naming ``path`` and the array unless ``arrays`` fit the descriptor."""
    specs = array_specs(d)
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise TraceError(path, missing[0], "array is missing")
    extra = sorted(set(arrays) - set(specs))
    if extra:
        raise TraceError(path, extra[0], "unexpected array")
    for name, (shape, dtype, lo, hi) in specs.items():
        a = arrays[name]
        if a.dtype != dtype:
            raise TraceError(path, name, f"dtype is {a.dtype}, expected {dtype}")
        if a.shape != shape:
            raise TraceError(path, name, f"shape is {a.shape}, expected {shape}")
        if a.size and a.dtype != np.bool_ and (a.min() < lo or a.max() > hi):
            bad = np.argwhere((a < lo) | (a > hi))[0]
            raise TraceError(path, name, f"value {a[tuple(bad)]} at index "
                             f"{tuple(int(i) for i in bad)} is outside [{lo}, {hi}]")


# --------------------------------------------------------------------------- one execution

@dataclasses.dataclass
class Execution:
    """One layer execution: where it comes from, its descriptor, operands and expectations."""
    name: str                       # e.g. "step03.eval0.enc8.conv_a"
    descriptor: Descriptor
    arrays: dict[str, np.ndarray]
    meta: dict = dataclasses.field(default_factory=dict)   # step, eval, layer, sigma, cycles...

    def inputs(self) -> dict:
        """Keyword arguments of ``golden.intref.run_layer`` for this execution."""
        d, a = self.descriptor, self.arrays
        return dict(shape=d.shape, x_codes=a["x_codes"], x_scales=a["x_scales"],
                    w_codes=a["w_codes"], w_scales=a["w_scales"], scale_mant=a["scale_mant"],
                    scale_shift=d.scale_shift, bias=a["bias"], residual=a.get("residual"),
                    x_format=ir.Format(d.x_format), out_format=ir.Format(d.out_format),
                    relu=d.relu, threshold_pct=d.threshold_pct, vector=d.vector)


def expected_arrays(result: ir.LayerResult) -> dict[str, np.ndarray]:
    """The expected-result arrays of an execution, from the integer reference."""
    return {"out_codes": result.out.codes, "out_scales": result.out.scales,
            "zero_counts": result.out.zero_counts.astype(np.int64),
            "next_map": result.next_map.astype(np.bool_)}


def recompute(ex: Execution) -> dict[str, np.ndarray]:
    return expected_arrays(ir.run_layer(**ex.inputs()))


# --------------------------------------------------------------------------- writing

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_npz(path: Path, arrays: dict) -> None:
    """Deterministic .npz: stored (no compression), sorted names, fixed zip timestamps."""
    import zipfile
    import io
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_trace(out_dir, executions: list[Execution], *, header: dict,
                extra_files=None) -> Path:
    """Write ``executions`` as the trace folder ``out_dir``, atomically: into a temporary
    sibling folder, then renamed into place. An existing trace folder (one with a manifest) is
    replaced whole, so no execution folder of an older trace survives beside the new manifest;
    an existing file, or a non-empty folder that holds no trace, is refused (TraceError) and
    left as it was.

    ``header`` goes into the manifest as is (model, plan and code hashes, seed, ...).
    ``extra_files(ex, index, folder) -> list[Path]`` may write more files per execution (the
    ``$readmemh`` files); they are hashed like the rest. Returns the manifest's path.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TraceError(out, None, "exists and is not a folder; a trace needs a folder")
    if out.is_dir() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise TraceError(out, None, "is a non-empty folder that holds no trace (no "
                         f"{MANIFEST}); refusing to write a trace into it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        _write_trace_files(tmp, executions, header, extra_files)
        if out.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / MANIFEST


def _write_trace_files(out, executions, header, extra_files):
    records, hashes = [], {}
    for index, ex in enumerate(executions):
        ex.descriptor.validate()
        folder = out / f"exec{index:04d}"
        folder.mkdir()
        check_arrays(ex.arrays, ex.descriptor, folder / "arrays.npz")
        _write_npz(folder / "arrays.npz", ex.arrays)
        files = [folder / "arrays.npz"]
        if extra_files is not None:
            files += list(extra_files(ex, index, folder))
        for f in files:
            hashes[f.relative_to(out).as_posix()] = sha256_file(f)
        records.append({"index": index, "name": ex.name, "folder": folder.name,
                        "descriptor": ex.descriptor.to_json(), "meta": ex.meta,
                        "files": sorted(f.relative_to(out).as_posix() for f in files)})
    manifest = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **header,
                "executions": records, "sha256": dict(sorted(hashes.items()))}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- loading

@dataclasses.dataclass
class Trace:
    root: Path
    manifest: dict
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Execution:
        """Load one execution, validating its .npz against its descriptor."""
        rec = self.records[index]
        path = self.root / rec["folder"] / "arrays.npz"
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise TraceError(path, None, "file is missing") from None
        except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
            raise TraceError(path, None, f"cannot be read as .npz ({e})") from None
        desc = Descriptor.from_json(rec["descriptor"])
        check_arrays(arrays, desc, path)
        return Execution(rec["name"], desc, arrays, rec.get("meta", {}))

    def __iter__(self):
        return (self.load(i) for i in range(len(self)))


def open_trace(root, *, verify_hashes: bool = True) -> Trace:
    """Open a trace folder: read and check the manifest and (by default) every file's hash."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise TraceError(root, None, "trace folder does not exist")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(path, None, "manifest is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TraceError(path, None, f"is not valid JSON ({e})") from None
    if manifest.get("schema") != SCHEMA:
        raise TraceError(path, "schema", f"is {manifest.get('schema')!r}, expected {SCHEMA!r}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise TraceError(path, "schema_version", f"is {manifest.get('schema_version')!r}, "
                         f"this loader reads version {SCHEMA_VERSION}")
    records = manifest.get("executions")
    if not isinstance(records, list):
        raise TraceError(path, "executions", "must be a list")
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict):
        raise TraceError(path, "sha256", "must be a mapping of file -> hash")
    for i, rec in enumerate(records):
        field = f"executions[{i}]"
        for key in ("name", "folder", "descriptor", "files"):
            if key not in rec:
                raise TraceError(path, f"{field}.{key}", "is missing")
        try:
            Descriptor.from_json(rec["descriptor"]).validate()
        except (TypeError, ValueError) as e:
            raise TraceError(path, f"{field}.descriptor", str(e)) from None
        for f in rec["files"]:
            if f not in hashes:
                raise TraceError(path, "sha256", f"has no hash for {f}")
    if verify_hashes:
        for rel, digest in hashes.items():
            f = root / rel
            if not f.is_file():
                raise TraceError(f, None, "file is missing")
            actual = sha256_file(f)
            if actual != digest:
                raise TraceError(f, None, f"SHA-256 is {actual[:16]}..., the manifest "
                                 f"records {digest[:16]}... (corrupt or modified)")
    return Trace(root, manifest, records)

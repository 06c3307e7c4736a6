"""Quantized execution of the U-Net: every conv runs as one accelerator layer execution.

Each ``PConv`` of ``golden.model`` becomes a layer of the accelerator (``golden.intref``):
quantized input (UINT4/INT4/MXINT8 codes and scales, channel-last), quantized weights
(INT4 with FP8 per-vector scales and a power-of-two second-level scale per output channel, or
MXINT8), the per-channel scale and bias of the time step folded into the PPU's fixed-point
``(K, shift, B)``, the residual on the PPU grid, and an output format chosen for the tensor's
next consumer. What runs on the host, and in which precision, is listed in ``docs/golden.md``.

Two executors compute a layer:
- ``"int"``: ``golden.intref.run_layer`` image by image: the integer specification of the
  hardware (and the reference the traces record);
- ``"fake"``: the convolution in float64 torch on the dequantized operands (batched), then the
  same integer PPU. For INT4 layers the float64 convolution is exact, so both executors agree
  bit for bit (tested); the activation may also be SiLU here, applied in float64.

A precision plan maps every layer name to ``"int4"`` or ``"mxint8"``; it is a JSON file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from golden import intref as ir
from golden import numerics as nx
from golden.model import CHECKPOINT_DIR, LayerInfo, PConv, UNet, load_checkpoint

PRECISIONS = ir.PRECISIONS  # the plan strings of golden.intref.Mode
#: How an INT4 layer's per-vector weight scales are chosen: "mse" (``nx.int4_quantize_mse``,
#: the least squared error among the no-clip FP8 scale and the codes below it; the default)
#: or "max" (``nx.int4_quantize``: the smallest scale that clips nothing).
WEIGHT_SCALE_RULES = ("mse", "max")
PLAN_SCHEMA = "sqdm-plan"
PLAN_VERSION = 1
VECTOR = 16
Fmt = ir.Format


# --------------------------------------------------------------------------- plans

def default_plan(model: UNet) -> dict[str, str]:
    """The paper's split: Conv+ReLU layers in INT4, sensitive layers in MXINT8."""
    return {li.name: ("int4" if li.role == "conv_relu" else "mxint8") for li in model.layers()}


def uniform_plan(model: UNet, precision: str) -> dict[str, str]:
    """Every layer that *can* run in ``precision``. INT4 needs a post-activation input or
    accepts signed INT4 activations, so every layer can; used for the all-INT4/all-MXINT8
    references."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {li.name: precision for li in model.layers()}


def save_plan(path, plan: dict[str, str], **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": PLAN_SCHEMA, "version": PLAN_VERSION, "layers": dict(plan), **meta}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def int4_mac_share(model: UNet, plan: dict) -> float:
    """The share of the model's conv MACs that ``plan`` runs in INT4."""
    macs = {li.name: li.macs() for li in model.layers()}
    return sum(m for n, m in macs.items() if plan[n] == "int4") / sum(macs.values())


def read_plan_file(path) -> dict:
    """The JSON object of a plan file (a missing file or bad JSON: one clear error)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: precision plan not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a plan file is a JSON object")
    return doc


def load_plan(path, model: UNet) -> dict[str, str]:
    """Read a plan file and check it covers exactly the model's layers with valid precisions."""
    doc = read_plan_file(path)
    if doc.get("schema") != PLAN_SCHEMA or doc.get("version") != PLAN_VERSION:
        raise ValueError(f"{path}: expected schema {PLAN_SCHEMA!r} version {PLAN_VERSION}, "
                         f"got {doc.get('schema')!r} version {doc.get('version')!r}")
    plan = doc.get("layers")
    if not isinstance(plan, dict):
        raise ValueError(f"{path}: 'layers' must map layer names to precisions")
    return check_plan(plan, model, where=str(path))


def plan_layers_sha256(plan: dict) -> str:
    """A digest of a plan's layer -> precision table (what a fine-tuned checkpoint is for)."""
    return hashlib.sha256(json.dumps(dict(plan), sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class PlanModel:
    """What a plan file runs: the model (its ``"checkpoint"``), the layer -> precision table, the
    checkpoint's file name and the INT4 weight-scale rule (``"weight_scales"``, default "mse")."""
    model: UNet
    plan: dict
    checkpoint: str
    weight_scales: str

    def quant_unet(self, **kwargs) -> "QuantUNet":
        return QuantUNet(self.model, self.plan, weight_scales=self.weight_scales, **kwargs)


def load_plan_model(path) -> PlanModel:
    """The model, plan and weight rule a plan file's quantized execution runs.

    The plan's ``"checkpoint"`` (default ``unet_relu.pt``) names a file of
    ``golden/checkpoints/``; a checkpoint fine-tuned for a plan (``make qat``) records that
    plan's digest and is refused for any other plan. The FP32 reference stays the ReLU model."""
    path = Path(path)
    doc = read_plan_file(path)
    name = doc.get("checkpoint", "unet_relu.pt")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".pt"):
        raise ValueError(f"{path}: 'checkpoint' must name a .pt file of golden/checkpoints/, "
                         f"got {name!r}")
    rule = doc.get("weight_scales", "mse")
    if rule not in WEIGHT_SCALE_RULES:
        raise ValueError(f"{path}: 'weight_scales' must be one of {WEIGHT_SCALE_RULES}, "
                         f"got {rule!r}")
    ckpt_path = CHECKPOINT_DIR / name
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"{path}: its checkpoint {ckpt_path} does not exist")
    model, ckpt = load_checkpoint(ckpt_path)
    plan = load_plan(path, model)
    made_for = (ckpt.get("meta") or {}).get("plan_layers_sha256")
    if made_for is not None and made_for != plan_layers_sha256(plan):
        raise ValueError(f"{path}: checkpoint {name} was fine-tuned for another plan "
                         f"(re-run make qat, or set 'checkpoint' to unet_relu.pt)")
    return PlanModel(model, plan, name, rule)


def check_plan(plan: dict, model: UNet, where: str = "plan") -> dict[str, str]:
    names = [li.name for li in model.layers()]
    missing = [n for n in names if n not in plan]
    unknown = sorted(set(plan) - set(names))
    if missing or unknown:
        raise ValueError(f"{where}: layers missing {missing[:5]}, unknown {unknown[:5]}")
    bad = {n: p for n, p in plan.items() if p not in PRECISIONS}
    if bad:
        raise ValueError(f"{where}: precisions must be one of {PRECISIONS}, got {bad}")
    return dict(plan)


# --------------------------------------------------------------------------- tensors

@dataclasses.dataclass(frozen=True)
class QTensor:
    """A quantized activation tensor, channel-last ``[batch, height, width, channels]``."""
    fmt: ir.Format
    codes: np.ndarray
    scales: np.ndarray

    @staticmethod
    def quantize(x: np.ndarray, fmt: ir.Format) -> "QTensor":
        """Host quantization of float64 values (the numerics library's rules)."""
        fmt = Fmt(fmt)
        if fmt == Fmt.MXINT8:
            return QTensor(fmt, *nx.mxint8_quantize(x, axis=-1))
        quant = nx.uint4_quantize if fmt == Fmt.UINT4 else nx.int4_quantize
        return QTensor(fmt, *quant(x, axis=-1, vector=VECTOR))

    def dequantize(self) -> np.ndarray:
        if self.fmt == Fmt.MXINT8:
            return nx.mxint8_dequantize(self.codes, self.scales, axis=-1)
        deq = nx.uint4_dequantize if self.fmt == Fmt.UINT4 else nx.int4_dequantize
        return deq(self.codes, self.scales, axis=-1, vector=VECTOR)

    def to(self, fmt: ir.Format) -> "QTensor":
        """The tensor in ``fmt``: itself if already so, else re-quantized on the host."""
        return self if self.fmt == fmt else QTensor.quantize(self.dequantize(), fmt)

    def upsample2(self) -> "QTensor":
        """Nearest-neighbour 2x: replicating pixels replicates codes and scales (exact)."""
        rep = lambda a: a.repeat(2, axis=1).repeat(2, axis=2)  # noqa: E731
        return QTensor(self.fmt, rep(self.codes), rep(self.scales))

    def image(self, b: int) -> "QTensor":
        return QTensor(self.fmt, self.codes[b], self.scales[b])

    @property
    def batch(self) -> int:
        return self.codes.shape[0]


def concat(parts: list[QTensor], fmt: ir.Format) -> QTensor:
    """Channel concatenation in ``fmt``: exact when every part is already in ``fmt`` and every
    split falls on a scale-block boundary, else re-quantized from the dequantized values."""
    block = ir.block_size(fmt, VECTOR)
    aligned = all(p.fmt == fmt for p in parts) and \
        all(p.codes.shape[-1] % block == 0 for p in parts[:-1])
    if aligned:
        return QTensor(fmt, np.concatenate([p.codes for p in parts], -1),
                       np.concatenate([p.scales for p in parts], -1))
    return QTensor.quantize(np.concatenate([p.dequantize() for p in parts], -1), fmt)


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).permute(0, 2, 3, 1).numpy()


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# --------------------------------------------------------------------------- layers

def input_format(info: LayerInfo, precision: str, act: str) -> ir.Format:
    return ir.Mode.from_plan(precision).input_format(info.input_post_act and act == "relu")


def fold_ppu(k: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Per-channel float multiplier ``k`` (of the accumulator's value) and bias -> the PPU's
    ``(K int32, shift, B int32)``: k ~= K * 2**(8 - shift) with max|K| in [2**14, 2**15),
    B = RNE(bias * 2**16) (saturated to 32 bits)."""
    kmax = float(np.abs(k).max())
    if kmax == 0:
        shift = ir.SCALE_SHIFT_MAX
    else:
        shift = 8 + (ir.SCALE_MANT_BITS - 2) - (np.frexp(kmax)[1] - 1)
        shift = int(np.clip(shift, 0, ir.SCALE_SHIFT_MAX))
    lim = 2 ** (ir.SCALE_MANT_BITS - 1) - 1
    K = np.clip(np.rint(np.ldexp(k, shift - 8)), -lim, lim).astype(np.int32)
    B = np.clip(np.rint(np.ldexp(bias, ir.PPU_FRAC_BITS)), -2 ** 31, 2 ** 31 - 1)
    return K, shift, B.astype(np.int32)


def residual_on_grid(r: np.ndarray) -> np.ndarray:
    """A residual's values on the PPU grid 2**-16 (RNE, saturated to 32 bits)."""
    return np.clip(np.rint(np.ldexp(r, ir.PPU_FRAC_BITS)), -2 ** 31, 2 ** 31 - 1).astype(np.int32)


def weight_scale2(w: np.ndarray) -> np.ndarray:
    """The power-of-two second-level scale per output channel of INT4 weights ``w`` [Cout, ...]:
    an exact division, and the largest vector scale of the channel lands in [128, 256] (well
    inside FP8)."""
    amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    exp = np.frexp(np.where(amax > 0, amax / nx.INT4_MAX, 1.0))[1] - 1
    return np.ldexp(1.0, exp - 7)


def int4_weights(w: np.ndarray, scale2: np.ndarray, rule: str = "mse"):
    """INT4 codes and FP8 scales of channel-last weights ``w`` [Cout, k, k, Cin] with
    second-level scale ``scale2`` [Cout], by :data:`WEIGHT_SCALE_RULES` ``rule``."""
    quantize = nx.int4_quantize_mse if rule == "mse" else nx.int4_quantize
    return quantize(w, axis=-1, vector=VECTOR, scale2=scale2[:, None, None, None])


class QuantLayer:
    """One PConv prepared for the accelerator: weights quantized once, in hardware layout."""

    def __init__(self, info: LayerInfo, conv: PConv, precision: str, act: str,
                 weight_scales: str = "mse"):
        if precision not in PRECISIONS:
            raise ValueError(f"{info.name}: precision must be one of {PRECISIONS}, "
                             f"got {precision!r}")
        if weight_scales not in WEIGHT_SCALE_RULES:
            raise ValueError(f"weight_scales must be one of {WEIGHT_SCALE_RULES}, "
                             f"got {weight_scales!r}")
        self.info, self.precision, self.act = info, precision, act
        self.x_format = input_format(info, precision, act)
        w = conv.effective_weight().detach().to(torch.float64).permute(0, 2, 3, 1).numpy()
        if precision == "int4":
            self.w_scale2 = weight_scale2(w)
            self.w_codes, self.w_scales = int4_weights(w, self.w_scale2, weight_scales)
        else:
            self.w_scale2 = np.ones(w.shape[0])
            self.w_codes, self.w_scales = nx.mxint8_quantize(w, axis=-1)

    def shape(self, height: int, width: int) -> ir.ConvShape:
        i = self.info
        return ir.ConvShape(height, width, i.in_ch, i.out_ch, i.kernel, i.stride, i.padding)

    def hardware_weight(self) -> torch.Tensor:
        """[Cout, Cin, k, k] float64 weights as the hardware multiplies them: codes times the
        per-vector scales, *without* the second-level scale (that one is folded into K)."""
        if self.precision == "int4":
            w = nx.int4_dequantize(self.w_codes, self.w_scales, axis=-1, vector=VECTOR)
        else:
            w = nx.mxint8_dequantize(self.w_codes, self.w_scales, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))

    def ppu_params(self, scale: np.ndarray, bias: np.ndarray):
        """(K, shift, B) for the time step's per-channel affine ``scale``, ``bias``."""
        return fold_ppu(np.asarray(scale, np.float64) * self.w_scale2,
                        np.asarray(bias, np.float64))


@dataclasses.dataclass(frozen=True)
class LayerSite:
    """Where a layer execution happens: layer ``name``, denoiser evaluation, image of the
    batch, and the input's channel map (bool per 16-channel group, True = sparse) that the
    hardware routes by (it does not change the result)."""
    name: str
    eval_index: int
    image: int
    in_map: np.ndarray


# A layer executor gets run_layer's keyword arguments for one image and its LayerSite and
# returns (out_codes, out_scales, zero_counts, next_map) -- the golden reference or a
# simulated RTL.
LayerBackend = Callable[[dict, LayerSite], tuple]


def golden_backend(kwargs: dict, site: LayerSite) -> tuple:
    r = ir.run_layer(**kwargs)
    return r.out.codes, r.out.scales, r.out.zero_counts, r.next_map


@dataclasses.dataclass(frozen=True)
class LayerCall(LayerSite):
    """What one layer execution of the quantized model was (for traces and statistics): its
    site, ``run_layer``'s keyword arguments and the backend's result."""
    kwargs: dict
    result: tuple


class QuantUNet:
    """The U-Net run layer by layer through the accelerator's arithmetic.

    ``executor``: "int" (integer reference per image, or ``backend``) or "fake" (float64 conv,
    batched; allows SiLU). ``weight_scales``: :data:`WEIGHT_SCALE_RULES`. ``recorder``: called with a ``LayerCall`` after every integer layer
    execution. The channel map of a layer's input at evaluation e is the sparsity detector's
    map of that input at evaluation e - 1 (all dense at e = 0), see ``docs/golden.md``.
    """

    def __init__(self, model: UNet, plan: dict[str, str], *, executor: str = "int",
                 backend: LayerBackend = golden_backend,
                 recorder: Optional[Callable[[LayerCall], None]] = None,
                 threshold_pct: int = ir.THRESHOLD_DEFAULT_PCT, weight_scales: str = "mse"):
        if executor not in ("int", "fake"):
            raise ValueError(f"executor must be 'int' or 'fake', got {executor!r}")
        if executor == "int" and model.act != "relu":
            raise ValueError("the integer executor runs ReLU models only (the PPU has no SiLU)")
        self.model, self.plan = model, check_plan(plan, model)
        self.executor, self.backend, self.recorder = executor, backend, recorder
        self.threshold_pct = threshold_pct
        self.infos = {li.name: li for li in model.layers()}
        self.convs = dict(model.named_pconvs())
        self.layers = {n: QuantLayer(li, self.convs[n], self.plan[n], model.act, weight_scales)
                       for n, li in self.infos.items()}
        self.eval_index = 0
        self.maps: dict[tuple[str, int], np.ndarray] = {}   # (layer, image) -> input map

    # ----------------------------------------------------------------- one layer
    def run(self, name: str, x: QTensor, *, scale=None, bias=None, residual: QTensor = None,
            out_format: ir.Format) -> QTensor:
        layer = self.layers[name]
        info = layer.info
        xin = x.to(layer.x_format)
        b = xin.batch
        scale = np.ones((b, info.out_ch)) if scale is None else np.broadcast_to(
            scale, (b, info.out_ch))
        bias_b = self.convs[name].bias.detach().to(torch.float64).numpy() if bias is None else bias
        bias_b = np.broadcast_to(bias_b, (b, info.out_ch))
        act = self.model.act if info.act_after else None
        if out_format == Fmt.UINT4 and act != "relu":
            raise ValueError(f"{name}: UINT4 output needs a ReLU layer")
        r_grid = None if residual is None else residual_on_grid(residual.dequantize())
        if self.executor == "fake":
            return self._run_fake(layer, xin, scale, bias_b, r_grid, act, out_format)
        outs = []
        for i in range(b):
            K, shift, B = layer.ppu_params(scale[i], bias_b[i])
            h, w = xin.codes.shape[1:3]
            xi = xin.image(i)
            kwargs = dict(shape=layer.shape(h, w), x_codes=xi.codes, x_scales=xi.scales,
                          w_codes=layer.w_codes, w_scales=layer.w_scales, scale_mant=K,
                          scale_shift=shift, bias=B,
                          residual=None if r_grid is None else r_grid[i],
                          x_format=layer.x_format, out_format=out_format,
                          relu=act == "relu", threshold_pct=self.threshold_pct, vector=VECTOR)
            in_map = self.maps.get((name, i))
            if in_map is None:
                in_map = np.zeros(-(-info.in_ch // VECTOR), dtype=bool)
            site = LayerSite(name, self.eval_index, i, in_map)
            result = self.backend(kwargs, site)
            zeros = (xi.codes == 0).reshape(-1, info.in_ch).sum(axis=0)
            self.maps[(name, i)] = ir.channel_map(zeros, h * w, vector=VECTOR,
                                                  threshold_pct=self.threshold_pct)
            if self.recorder is not None:
                self.recorder(LayerCall(**vars(site), kwargs=kwargs, result=result))
            outs.append(result)
        return QTensor(out_format, np.stack([o[0] for o in outs]),
                       np.stack([o[1] for o in outs]))

    def _run_fake(self, layer, xin, scale, bias, r_grid, act, out_format):
        info = layer.info
        x = to_nchw(xin.dequantize())
        y = F.conv2d(x, layer.hardware_weight(), None, info.stride, info.padding)
        acc_real = np.ldexp(to_nhwc(y), ir.ACC_FRAC_BITS)
        acc = np.rint(acc_real).astype(np.int64)
        outs = []
        for i in range(xin.batch):
            K, shift, B = layer.ppu_params(scale[i], bias[i])
            y_fix, _ = ir.ppu_fixed(acc[i], K, shift, B, None if r_grid is None else r_grid[i],
                                    relu=False)
            outs.append(np.ldexp(y_fix.astype(np.float64), -ir.PPU_FRAC_BITS))
        real = np.stack(outs)
        if act == "relu":
            real = np.maximum(real, 0.0)
        elif act == "silu":
            real = real / (1.0 + np.exp(-real))
        return QTensor.quantize(real, out_format)

    # ----------------------------------------------------------------- the network
    def fmt_in(self, name: str) -> ir.Format:
        """Input format of layer ``name``: what its producer's PPU should emit."""
        return self.layers[name].x_format

    def resblock(self, prefix: str, x: QTensor, emb_mod: QTensor, out_format) -> QTensor:
        ch = self.infos[prefix + ".conv_a"].out_ch
        st = emb_mod.dequantize().reshape(emb_mod.batch, -1)
        s, t = 1.0 + st[:, :ch], st[:, ch:]
        bias = self.convs[prefix + ".conv_a"].bias.detach().to(torch.float64).numpy()[None, :] + t
        a = self.run(prefix + ".conv_a", x, scale=s, bias=bias,
                     out_format=self.fmt_in(prefix + ".conv_b"))
        return self.run(prefix + ".conv_b", a, residual=x, out_format=out_format)

    def attention(self, prefix: str, x: QTensor, out_format) -> QTensor:
        qkv = self.run(prefix + ".qkv", x, out_format=Fmt.MXINT8).dequantize()  # [B, H, W, 3C]
        b, h, w, c3 = qkv.shape
        c = c3 // 3
        q, k, v = (torch.from_numpy(qkv[..., i * c:(i + 1) * c].reshape(b, h * w, c))
                   for i in range(3))
        att = torch.softmax(torch.einsum("bic,bjc->bij", q, k) / np.sqrt(c), dim=-1)
        o = torch.einsum("bij,bjc->bic", att, v).reshape(b, h, w, c).numpy()
        o_q = QTensor.quantize(o, self.fmt_in(prefix + ".proj"))
        return self.run(prefix + ".proj", o_q, residual=x, out_format=out_format)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """The raw network F(x, c_noise) (same contract as ``UNet.forward``), float32 out."""
        m = self.model
        c_noise = torch.as_tensor(c_noise, dtype=torch.float64)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        c = c_noise.reshape(-1, 1) * m.freqs.to(torch.float64).reshape(1, -1)
        fourier = torch.cat([torch.cos(c), torch.sin(c)], dim=1)[:, None, None, :].numpy()
        e = self.run("emb.fc0", QTensor.quantize(fourier, self.fmt_in("emb.fc0")),
                     out_format=self.fmt_in("emb.fc1"))
        mods = [n for n in self.layers if n.endswith(".mod")]
        emb = self.run("emb.fc1", e, out_format=self.fmt_in(mods[0]))
        mod = {n[:-4]: self.run(n, emb, out_format=Fmt.MXINT8) for n in mods}

        # the model's program (UNet.program); every step's output is in the input format of
        # the next layer that reads it (the network's output: MXINT8)
        h, skips = QTensor.quantize(to_nhwc(x), self.fmt_in("conv_in")), []
        for step, (kind, name) in enumerate(m.program):
            if kind == "push":
                skips.append(h)
                continue
            entry = m.entry_layer(step + 1)
            out_format = Fmt.MXINT8 if entry is None else self.fmt_in(entry)
            if kind == "res":
                h = self.resblock(name, h, mod[name], out_format)
            elif kind == "attn":
                h = self.attention(name, h, out_format)
            elif kind == "cat":
                h = self.run(name, concat([h, skips.pop()], self.fmt_in(name)),
                             out_format=out_format)
            elif kind == "up":
                h = self.run(name, h.upsample2(), out_format=out_format)
            else:  # "conv"
                h = self.run(name, h, out_format=out_format)
        out = h
        self.eval_index += 1
        return to_nchw(out.dequantize()).to(torch.float32)

    __call__ = forward

"""A small EDM U-Net for 16x16 grey images whose every layer is an accelerator-shaped conv.

Every layer (``PConv``) computes exactly the accelerator's datapath
    y = conv(x; W, stride, pad)  ->  y * scale[c] + bias[c]  ->  (+ residual)  ->  act  (optional)
with no normalisation anywhere.  ``scale`` is 1 except in the first conv of each residual block,
where the noise embedding modulates it EDM2-style: scale = 1 + emb_scale[c], bias = b[c] +
emb_shift[c].  Both depend only on sigma (not on the image), so at a given time step they fold
into the PPU's per-output-channel scale and bias (see ``UNet.layer_affine``).

Topology (C = channels per resolution, default (32, 64, 64)):
  embedding : fourier(c_noise) 32 -> emb.fc0 64 -> act -> emb.fc1 64 -> act   (1x1 "convs" on 1x1)
  16x16     : conv_in 1->32 (3x3, act) ; enc16 = ResBlock(32)
  8x8       : down16 32->64 (3x3 s2, act) ; enc8 = ResBlock(64)
  4x4       : down8 64->64 (3x3 s2, act) ; enc4 = ResBlock(64) ; attn4 (1 head, qkv/proj 1x1) ;
              mid4 = ResBlock(64) ; skip4 cat(128)->64 (1x1, act) ; dec4 = ResBlock(64)
  8x8       : nearest 2x ; up8 64->64 (3x3, act) ; skip8 cat(128)->64 (1x1, act) ; dec8 = ResBlock(64)
  16x16     : nearest 2x ; up16 64->32 (3x3, act) ; skip16 cat(64)->32 (1x1, act) ; dec16 = ResBlock(32)
              conv_out 32->1 (3x3, no act, signed output)
That is the default topology (the digits model). In general (``UNet(channels, blocks,
attn_res)``) level i runs at resolution / 2**i with ``blocks`` residual blocks in the encoder
(``enc{r}``, or ``enc{r}_{j}`` with more than one), keeps its skip, runs ``attn{r}`` if r is in
``attn_res``, then ``down{r}``; the lowest level adds ``mid{r}``; the decoder mirrors it with
``up{r}``, ``skip{r}`` and ``dec{r}`` blocks. ``UNet.program`` lists the steps; the float forward
here and the quantized one (``golden.quant.QuantUNet``) both execute it.
ResBlock (post-activation): a = act(conv_a(x) * (1 + s) + b_a + t) ; out = act(x + conv_b(a) + b_b)
with (s, t) = mod(emb) from a 1x1 layer ``<block>.mod`` (64 -> 2C).
Attention: qkv = attn4.qkv(x) (1x1, no act); o = softmax(q^T k / sqrt(C)) v on the host;
out = act(x + attn4.proj(o)) (1x1 with residual add).
So every conv input except conv_in (image), emb.fc0 (Fourier features) and attn4.proj (attention
output, a mix of the signed v) is post-activation (non-negative with ReLU), and the residual
streams are post-activation too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = ("silu", "relu")


def apply_act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    raise ValueError(f"unknown activation {name!r}")


@dataclass(frozen=True)
class LayerInfo:
    """One accelerator layer (every conv of the model, in execution order)."""
    name: str                 # module path, e.g. "enc8.conv_a"
    role: str                 # "conv_relu" (INT4 candidate) or "sensitive" (MXINT8)
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple              # input spatial size (after any upsampling) (H, W)
    out_hw: tuple
    input_post_act: bool      # input is the output of an activation (>= 0 with ReLU)
    act_after: bool           # activation applied to the output
    residual_add: bool        # a residual is added before the activation
    modulated: bool           # scale/shift depend on sigma (noise embedding)
    upsample_before: bool     # input is the nearest-2x upsampled previous output
    concat_input: bool        # input is a channel concat (skip connection)
    group: str                # "embedding", "conv", "attention"

    def macs(self) -> int:
        return self.out_hw[0] * self.out_hw[1] * self.out_ch * self.in_ch * self.kernel ** 2

    def as_dict(self) -> dict:
        return asdict(self)


class PConv(nn.Module):
    """conv (no bias) -> * scale -> + bias (+ shift) -> (+ residual) -> act (optional).

    Attributes used by quantizers/tracers: ``weight_override`` (a tensor used instead of
    ``weight`` when not None) and the standard torch forward(-pre) hooks; the forward input is
    ``x`` (after upsampling / concatenation) and the output is the post-activation tensor.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, *,
                 role: str, act_after: bool, residual_add: bool = False, modulated: bool = False,
                 input_post_act: bool = True, upsample_before: bool = False,
                 concat_input: bool = False, group: str = "conv", init: str = "kaiming",
                 init_gain: float = 1.0):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel, self.stride = in_ch, out_ch, kernel, stride
        self.padding = kernel // 2
        self.role, self.act_after, self.residual_add = role, act_after, residual_add
        self.modulated, self.input_post_act = modulated, input_post_act
        self.upsample_before, self.concat_input, self.group = upsample_before, concat_input, group
        self.act = "silu"
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.weight_override: Optional[torch.Tensor] = None
        with torch.no_grad():
            if init == "zero":
                self.weight.zero_()
            else:
                fan_in = in_ch * kernel * kernel
                gain = math.sqrt(2.0) if act_after else 1.0
                self.weight.normal_(0.0, init_gain * gain / math.sqrt(fan_in))

    def effective_weight(self) -> torch.Tensor:
        return self.weight if self.weight_override is None else self.weight_override

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None,
                shift: Optional[torch.Tensor] = None,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = F.conv2d(x, self.effective_weight(), None, self.stride, self.padding)
        if scale is not None:
            y = y * scale
        b = self.bias.reshape(1, -1, 1, 1)
        y = y + (b if shift is None else b + shift)
        if residual is not None:
            y = y + residual
        if self.act_after:
            y = apply_act(y, self.act)
        return y


class ResBlock(nn.Module):
    def __init__(self, ch: int, emb_ch: int):
        super().__init__()
        self.ch = ch
        self.mod = PConv(emb_ch, 2 * ch, 1, role="sensitive", act_after=False, group="embedding",
                         init="zero")
        self.conv_a = PConv(ch, ch, 3, role="conv_relu", act_after=True, modulated=True)
        self.conv_b = PConv(ch, ch, 3, role="conv_relu", act_after=True, residual_add=True,
                            init="zero")

    def modulation(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.mod(emb)                       # [B, 2C, 1, 1]
        s, t = st[:, :self.ch], st[:, self.ch:]
        return 1.0 + s, t

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(emb)
        a = self.conv_a(x, scale=scale, shift=shift)
        return self.conv_b(a, residual=x)


class Attention(nn.Module):
    """Single-head self-attention; qkv and proj are 1x1 PConvs, the rest runs on the host."""

    def __init__(self, ch: int):
        super().__init__()
        self.ch = ch
        self.qkv = PConv(ch, 3 * ch, 1, role="sensitive", act_after=False, group="attention")
        # proj's input is softmax(.) @ v with v straight out of qkv (no activation): signed
        self.proj = PConv(ch, ch, 1, role="sensitive", act_after=True, residual_add=True,
                          input_post_act=False, group="attention", init="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, c, h * w).unbind(1)       # [B, C, N]
        att = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        o = torch.einsum("bij,bcj->bci", att, v).reshape(b, c, h, w)
        return self.proj(o, residual=x)


#: Kinds of step of a U-Net's program (``UNet.program``): ``conv`` a PConv on h (conv_in on the
#: image), ``res`` a ResBlock, ``attn`` an Attention, ``push`` keeps h as the next skip,
#: ``cat`` a 1x1 PConv on cat(h, the last kept skip), ``up`` a PConv on h upsampled 2x (nearest).
STEP_KINDS = ("conv", "res", "attn", "push", "cat", "up")


def _block_name(prefix: str, res: int, j: int, blocks: int) -> str:
    return f"{prefix}{res}" if blocks == 1 else f"{prefix}{res}_{j}"


class UNet(nn.Module):
    """Raw network F(x_in, c_noise) of the EDM denoiser (wrap with ``edm.EDMDenoiser``).

    ``channels``: one width per level (resolution, resolution/2, ...); ``blocks``: residual
    blocks per level in the encoder and the decoder (named ``enc16``, or ``enc32_0``,
    ``enc32_1``, ... when more than one); ``attn_res``: resolutions with a self-attention
    block after the encoder's blocks (default: the lowest). The lowest level has one ``mid``
    block. The network is its :attr:`program`, which the float forward here and the quantized
    forward (``golden.quant.QuantUNet``) both execute.
    """

    def __init__(self, channels=(32, 64, 64), emb_ch: int = 64, n_freq: int = 16,
                 img_ch: int = 1, resolution: int = 16, act: str = "silu", blocks: int = 1,
                 attn_res=None):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        levels = len(channels)
        if levels < 2 or blocks < 1 or resolution % (1 << (levels - 1)):
            raise ValueError(f"a U-Net needs >= 2 levels and >= 1 block per level, and the "
                             f"resolution ({resolution}) divisible by 2**(levels-1); got "
                             f"channels {channels}, blocks {blocks}")
        res = [resolution >> i for i in range(levels)]
        attn_res = (res[-1],) if attn_res is None else tuple(int(r) for r in attn_res)
        if not set(attn_res) <= set(res):
            raise ValueError(f"attn_res {attn_res} must be among the resolutions {res}")
        self.config = dict(channels=list(channels), emb_ch=emb_ch, n_freq=n_freq, img_ch=img_ch,
                           resolution=resolution, act=act)
        if blocks != 1 or attn_res != (res[-1],):   # the digits model's config stays as it was
            self.config.update(blocks=blocks, attn_res=list(attn_res))
        # fixed Fourier features of c_noise: angular frequencies geometric from 1 to 32 rad/unit
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(32.0), n_freq)))
        self.emb = nn.Module()
        self.emb.fc0 = PConv(2 * n_freq, emb_ch, 1, role="sensitive", act_after=True,
                             input_post_act=False, group="embedding")
        self.emb.fc1 = PConv(emb_ch, emb_ch, 1, role="sensitive", act_after=True, group="embedding")
        program: list[tuple[str, Optional[str]]] = []

        def add(kind, name, module=None):
            if module is not None:
                self.add_module(name, module)
            program.append((kind, name))

        add("conv", "conv_in", PConv(img_ch, channels[0], 3, role="sensitive", act_after=True,
                                     input_post_act=False))
        for i, (r, c) in enumerate(zip(res, channels)):
            for j in range(blocks):
                add("res", _block_name("enc", r, j, blocks), ResBlock(c, emb_ch))
            add("push", None)
            if r in attn_res:
                add("attn", f"attn{r}", Attention(c))
            if i + 1 < levels:
                add("conv", f"down{r}", PConv(c, channels[i + 1], 3, 2, role="conv_relu",
                                              act_after=True))
        add("res", f"mid{res[-1]}", ResBlock(channels[-1], emb_ch))
        for i in reversed(range(levels)):
            r, c = res[i], channels[i]
            if i + 1 < levels:
                add("up", f"up{r}", PConv(channels[i + 1], c, 3, role="conv_relu",
                                          act_after=True, upsample_before=True))
            add("cat", f"skip{r}", PConv(2 * c, c, 1, role="sensitive", act_after=True,
                                         concat_input=True))
            for j in range(blocks):
                add("res", _block_name("dec", r, j, blocks), ResBlock(c, emb_ch))
        add("conv", "conv_out", PConv(channels[0], img_ch, 3, role="sensitive", act_after=False,
                                      init="zero"))
        #: The network as steps ``(kind, module name)`` (:data:`STEP_KINDS`), in order.
        self.program = tuple(program)
        self._registry: Optional[list[LayerInfo]] = None
        self.set_activation(act)

    # ----------------------------------------------------------------- activation swap
    def set_activation(self, act: str) -> "UNet":
        if act not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}")
        self.act = act
        self.config["act"] = act
        for m in self.modules():
            if isinstance(m, PConv):
                m.act = act
        return self

    # ----------------------------------------------------------------- forward
    def embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        c = c_noise.reshape(-1, 1).to(self.freqs.dtype) * self.freqs.reshape(1, -1)
        f = torch.cat([torch.cos(c), torch.sin(c)], dim=1)[:, :, None, None]   # [B, 2F, 1, 1]
        return self.emb.fc1(self.emb.fc0(f))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        c_noise = torch.as_tensor(c_noise, dtype=x.dtype)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x.shape[0])
        emb = self.embed(c_noise)
        h, skips = x, []
        for kind, name in self.program:
            if kind == "push":
                skips.append(h)
                continue
            m = getattr(self, name)
            if kind == "conv":
                h = m(h)
            elif kind == "res":
                h = m(h, emb)
            elif kind == "attn":
                h = m(h)
            elif kind == "cat":
                h = m(torch.cat([h, skips.pop()], 1))
            else:  # "up"
                h = m(F.interpolate(h, scale_factor=2, mode="nearest"))
        return h

    def entry_layer(self, step: int) -> Optional[str]:
        """The first PConv that step ``step`` of the program runs on its input (None past the
        end): whose input format the step before must produce."""
        for kind, name in self.program[step:]:
            if kind == "res":
                return name + ".conv_a"
            if kind == "attn":
                return name + ".qkv"
            if kind != "push":
                return name
        return None

    # ----------------------------------------------------------------- registry
    def named_pconvs(self) -> list[tuple[str, PConv]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, PConv)]

    def layers(self) -> list[LayerInfo]:
        """Every PConv once, in execution order, with its accelerator-relevant description."""
        if self._registry is None:
            order: list[tuple[str, tuple, tuple]] = []
            handles = []
            for name, m in self.named_pconvs():
                def hook(mod, inp, out, name=name):
                    order.append((name, tuple(inp[0].shape[-2:]), tuple(out.shape[-2:])))
                handles.append(m.register_forward_hook(hook))
            try:
                r = self.config["resolution"]
                with torch.no_grad():
                    self(torch.zeros(1, self.config["img_ch"], r, r), torch.zeros(1))
            finally:
                for h in handles:
                    h.remove()
            mods = dict(self.named_pconvs())
            reg = []
            for name, in_hw, out_hw in order:
                m = mods[name]
                reg.append(LayerInfo(name=name, role=m.role, in_ch=m.in_ch, out_ch=m.out_ch,
                                     kernel=m.kernel, stride=m.stride, padding=m.padding,
                                     in_hw=in_hw, out_hw=out_hw, input_post_act=m.input_post_act,
                                     act_after=m.act_after, residual_add=m.residual_add,
                                     modulated=m.modulated, upsample_before=m.upsample_before,
                                     concat_input=m.concat_input, group=m.group))
            self._registry = reg
        return list(self._registry)

    def macs_per_eval(self) -> dict:
        """Conv MACs of one denoiser evaluation (batch 1) by role, plus the host attention MACs."""
        out = {"conv_relu": 0, "sensitive": 0}
        for li in self.layers():
            out[li.role] += li.macs()
        out["attention_host"] = sum(2 * (li.in_hw[0] * li.in_hw[1]) ** 2 * li.in_ch
                                    for li in self.layers() if li.name.endswith(".proj"))
        out["total_conv"] = out["conv_relu"] + out["sensitive"]
        return out

    @torch.no_grad()
    def layer_affine(self, sigma: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Effective per-output-channel (scale, bias) of every PConv at noise level sigma.

        For every layer:  out = act( conv(x; W) * scale + bias (+ residual) ), with W the plain
        conv weight.  For embedding / unmodulated layers scale = 1 and bias = the layer's bias.
        (The preconditioning c_in is applied by the host to the image before conv_in.)
        """
        from .edm import c_noise as _c_noise
        emb = self.embed(torch.tensor([_c_noise(float(sigma))], dtype=self.freqs.dtype))
        res = {}
        for name, m in self.named_pconvs():
            res[name] = (torch.ones(m.out_ch), m.bias.detach().clone())
        for name, m in self.named_modules():
            if isinstance(m, ResBlock):
                scale, shift = m.modulation(emb)
                res[name + ".conv_a"] = (scale.reshape(-1).clone(),
                                         (m.conv_a.bias + shift.reshape(-1)).clone())
        return res


def build_model(config: Optional[dict] = None) -> UNet:
    cfg = dict(config or {})
    return UNet(channels=tuple(cfg.get("channels", (32, 64, 64))), emb_ch=cfg.get("emb_ch", 64),
                n_freq=cfg.get("n_freq", 16), img_ch=cfg.get("img_ch", 1),
                resolution=cfg.get("resolution", 16), act=cfg.get("act", "silu"),
                blocks=cfg.get("blocks", 1), attn_res=cfg.get("attn_res"))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_DIR = __import__("pathlib").Path(__file__).resolve().parent / "checkpoints"
CHECKPOINT_FORMAT = "sqdm-unet-v1"


def state_dict_for_save(model: UNet) -> dict:
    """Parameters stored as float16 (the golden weights ARE these fp16 values, used in fp32);
    buffers (the fixed Fourier frequencies) stay float32."""
    params = {n for n, _ in model.named_parameters()}
    return {k: (v.detach().to(torch.float16) if k in params else v.detach().clone())
            for k, v in model.state_dict().items()}


def load_checkpoint(which="relu") -> tuple[UNet, dict]:
    """Load ``"silu"``, ``"relu"`` or a path. Returns (model in eval mode, checkpoint dict)."""
    from pathlib import Path
    p = Path(which)
    if which in ("silu", "relu"):
        p = CHECKPOINT_DIR / f"unet_{which}.pt"
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{p}: unknown checkpoint format {ckpt.get('format')!r}")
    model = build_model(ckpt["config"])
    model.load_state_dict({k: v.to(torch.float32) for k, v in ckpt["state_dict"].items()})
    model.eval()
    return model, ckpt


class ZeroCounter:
    """Context manager counting exact zeros in the (post-activation) outputs of PConv layers.

    ``zeros[name]`` / ``total[name]`` accumulate over every forward call while active;
    ``per_eval`` keeps one {name: zero fraction} dict per model call if ``per_eval_of`` is given.
    """

    def __init__(self, model: UNet, roles=("conv_relu",)):
        self.model, self.roles = model, tuple(roles)
        self.zeros: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self._handles = []

    def __enter__(self) -> "ZeroCounter":
        for li in self.model.layers():
            if li.role in self.roles and li.act_after:
                mod = self.model.get_submodule(li.name)

                def hook(m, inp, out, name=li.name):
                    self.zeros[name] = self.zeros.get(name, 0) + int((out == 0).sum())
                    self.total[name] = self.total.get(name, 0) + out.numel()
                self._handles.append(mod.register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def fractions(self) -> dict[str, float]:
        return {k: self.zeros[k] / self.total[k] for k in self.zeros}

    def mean_fraction(self) -> float:
        """Unweighted mean over layers of each layer's zero fraction."""
        f = self.fractions()
        return sum(f.values()) / max(1, len(f))

    def overall_fraction(self) -> float:
        """All zeros / all elements (weighted by layer output size)."""
        return sum(self.zeros.values()) / max(1, sum(self.total.values()))

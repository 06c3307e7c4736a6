"""Memory word layouts of the accelerator and their ``$readmemh`` files (the one definition the
RTL, the testbenches and the trace exporter share; docs/hardware.md section "Memory layouts").

Every word is packed LSB first. Elements are 8-bit two's complement containers in every mode
(UINT4 and INT4 codes use the low 4 bits' value range of the container; MXINT8 uses all 8).

======== ========================================================================
memory   word
======== ========================================================================
act      one activation vector (INT4 modes: ``vector`` codes) or MXINT8 block (32 codes)
         of one pixel: element e at bits [8e, 8e+8), e < 32 (unused elements 0); scale
         code (FP8 E4M3 or E8M0) at bits [256, 264). 264 bits.
weight   one (output-channel tile, kernel tap, input vector): column c (output channel
         ``tile_index * tile + c``) at bits [264c, 264c+264) laid out like an act word.
         ``tile * 264`` bits.
param    one output channel: scale mantissa K (signed 16) at [0, 16), bias (signed 32)
         at [16, 48). 48 bits.
res      one residual value (signed 32, grid 2**-16) per (output pixel, channel).
out      one output block (``vector`` channels for UINT4/INT4, 32 for MXINT8) of one
         output pixel, laid out like an act word (so a layer's output feeds the next).
======== ========================================================================

Addresses (word units, each relative to the descriptor's base of that memory):
``act = (y * width + x) * nvec + v`` with ``nvec = ceil(cin / block)``;
``weight = (t * kernel**2 + ky * kernel + kx) * nvec + v``; ``param = c``;
``res = (oy * out_width + ox) * cout + c``; ``out = (oy * out_width + ox) * nblk + b``.
"""

import re
from pathlib import Path

import numpy as np

from golden import intref

from .common import MX_BLOCK

__all__ = [
    "ELEM_BITS", "SCALE_OFFSET", "ACT_WORD_BITS", "PARAM_WORD_BITS", "RES_WORD_BITS",
    "weight_word_bits", "pack_vector", "unpack_vector", "pack_param", "pack_residual",
    "act_words", "weight_words", "param_words", "residual_words", "unpack_outputs",
    "write_memh", "read_memh",
]

ELEM_BITS = 8
SCALE_OFFSET = MX_BLOCK * ELEM_BITS       # 256
ACT_WORD_BITS = SCALE_OFFSET + 8          # 264
PARAM_WORD_BITS = intref.SCALE_MANT_BITS + intref.PPU_WIDTH  # 48
RES_WORD_BITS = intref.PPU_WIDTH          # 32


def weight_word_bits(tile):
    """Bits of a weight word of ``tile`` output columns."""
    return tile * ACT_WORD_BITS


def pack_vector(codes, scale):
    """One act/out word from up to 32 integer codes and a scale code."""
    codes = [int(c) for c in codes]
    if len(codes) > MX_BLOCK:
        raise ValueError(f"a word holds at most {MX_BLOCK} codes, got {len(codes)}")
    word = 0
    for e, c in enumerate(codes):
        if not -128 <= c <= 127:
            raise ValueError(f"code {c} at element {e} does not fit 8 bits")
        word |= (c & 0xFF) << (ELEM_BITS * e)
    if not 0 <= int(scale) <= 0xFF:
        raise ValueError(f"scale code must be in [0, 255], got {scale}")
    return word | (int(scale) << SCALE_OFFSET)


def unpack_vector(word, count=MX_BLOCK):
    """Inverse of :func:`pack_vector`: ``(codes[:count], scale)``."""
    codes = []
    for e in range(count):
        c = (word >> (ELEM_BITS * e)) & 0xFF
        codes.append(c - 256 if c & 0x80 else c)
    return codes, (word >> SCALE_OFFSET) & 0xFF


def pack_param(k, bias):
    """One param word: scale mantissa ``k`` and ``bias``."""
    return (int(k) & 0xFFFF) | ((int(bias) & 0xFFFFFFFF) << intref.SCALE_MANT_BITS)


def pack_residual(r):
    """One residual word."""
    return int(r) & 0xFFFFFFFF


def _block(x_format, vector):
    return intref.block_size(intref.Format(x_format), vector)


def act_words(codes, scales, *, x_format, vector=16):
    """Act memory image of a ``[h, w, c]`` tensor (codes) with ``[h, w, nvec]`` scales."""
    blk = _block(x_format, vector)
    h, w, c = codes.shape
    nvec = scales.shape[-1]
    padded = np.zeros((h, w, nvec * blk), dtype=np.int64)
    padded[..., :c] = codes
    out = []
    for y in range(h):
        for x in range(w):
            for v in range(nvec):
                out.append(pack_vector(padded[y, x, v * blk:(v + 1) * blk], scales[y, x, v]))
    return out


def weight_words(codes, scales, *, x_format, tile, vector=16):
    """Weight memory image of ``[cout, k, k, cin]`` codes with ``[cout, k, k, nvec]`` scales."""
    blk = _block(x_format, vector)
    cout, k, _, cin = codes.shape
    nvec = scales.shape[-1]
    ntile = -(-cout // tile)
    out = []
    for t in range(ntile):
        for ky in range(k):
            for kx in range(k):
                for v in range(nvec):
                    word = 0
                    for col in range(tile):
                        co = t * tile + col
                        if co >= cout:
                            continue
                        seg = np.zeros(blk, dtype=np.int64)
                        part = codes[co, ky, kx, v * blk:(v + 1) * blk]
                        seg[:len(part)] = part
                        word |= pack_vector(seg, scales[co, ky, kx, v]) << (ACT_WORD_BITS * col)
                    out.append(word)
    return out


def param_words(scale_mant, bias):
    """Param memory image: one word per output channel."""
    return [pack_param(k, b) for k, b in zip(scale_mant, bias)]


def residual_words(residual):
    """Residual memory image of a ``[oh, ow, cout]`` int32 tensor."""
    return [pack_residual(r) for r in np.asarray(residual).reshape(-1)]


def unpack_outputs(words, *, out_height, out_width, cout, out_format, vector=16):
    """Codes ``[oh, ow, cout]`` and scales ``[oh, ow, nblk]`` from the out memory words."""
    blk = _block(out_format, vector)
    nblk = -(-cout // blk)
    codes = np.zeros((out_height, out_width, cout), dtype=np.int64)
    scales = np.zeros((out_height, out_width, nblk), dtype=np.int64)
    n = 0
    for y in range(out_height):
        for x in range(out_width):
            for b in range(nblk):
                cnt = min(blk, cout - b * blk)
                cs, s = unpack_vector(words[n], cnt)
                codes[y, x, b * blk:b * blk + cnt] = cs
                scales[y, x, b] = s
                n += 1
    return codes, scales


def write_memh(path, words, width):
    """Write ``words`` as a ``$readmemh`` file: one word per line, ``ceil(width / 4)`` hex
    digits, no address markers (word i is on line i + 1)."""
    digits = -(-width // 4)
    text = "".join(f"{int(w):0{digits}x}\n" for w in words)
    Path(path).write_text(text)


def read_memh(path, width, depth):
    """Parse a ``$readmemh`` file (hex words separated by white space, ``//`` comments and
    ``@addr`` markers allowed) into a list of ``depth`` words (missing words are 0)."""
    text = Path(path).read_text()
    text = re.sub(r"//[^\n]*", "", text)
    words = [0] * depth
    addr = 0
    for tok in text.split():
        if tok.startswith("@"):
            addr = int(tok[1:], 16)
            continue
        value = int(tok.replace("_", ""), 16)
        if value >> width:
            raise ValueError(f"{path}: word {tok} at address {addr} exceeds {width} bits")
        if addr >= depth:
            raise ValueError(f"{path}: address {addr} is beyond the depth {depth}")
        words[addr] = value
        addr += 1
    return words

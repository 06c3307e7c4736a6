# amaranth: UnusedElaboratable=no
"""hw.dsp's registered product as ECP5 multiplier blocks (fpga/models/MULT18X18D.v) against its
generic form and a Python reference, on Icarus Verilog: equal values in equal cycles. (The
first line silences Amaranth's UnusedElaboratable for the modules the error test leaves.)"""

import random
import shutil
import subprocess

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import PRESETS
from hw.dsp import ECP5, PRODUCT_REGS, registered_product
from hw.rtlcache import rtl_key, top_verilog
from hw.verilog import emit_verilog

from .boardsim import PRIMITIVE_MODELS

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog not installed")


class Product(wiring.Component):
    def __init__(self, a_shape, b_bits, width):
        self.width = width
        super().__init__({"a": In(a_shape), "b": In(b_bits), "en": In(1),
                          "p": Out(signed(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(registered_product(m, self.a, self.b, en=self.en,
                                                 width=self.width, name="mp",
                                                 platform=platform))
        return m


def _signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# (a's shape, b's bits, product width): the engines' P x M (two blocks), a three-block
# operand, one unsigned block
SHAPES = [(signed(22), 11, 23), (signed(40), 17, 48), (unsigned(10), 5, 15)]


@pytest.mark.parametrize("a_shape,b_bits,width", SHAPES)
def test_ecp5_blocks_equal_the_generic_product(a_shape, b_bits, width, tmp_path):
    texts = {t: emit_verilog(Product(a_shape, b_bits, width), f"prod_{t}",
                             platform=ECP5 if t == "ecp5" else None)
             for t in ("generic", "ecp5")}
    blocks = -(-(a_shape.width - 1) // 17) if a_shape.width > 18 else 1
    assert texts["ecp5"].count("MULT18X18D #(") == blocks
    assert "MULT18X18D" not in texts["generic"]
    for t, text in texts.items():
        (tmp_path / f"prod_{t}.v").write_text(text)
    rng = random.Random(width)
    stimuli = []
    for _ in range(300):
        a = rng.choice([rng.getrandbits(a_shape.width), 0, (1 << a_shape.width) - 1,
                        1 << (a_shape.width - 1)])
        b = rng.choice([rng.getrandbits(b_bits), (1 << b_bits) - 1])
        stimuli.append((a, b, int(rng.random() < 0.7)))
    (tmp_path / "stim.hex").write_text("".join(
        f"{a:x} {b:x} {en:x}\n" for a, b, en in stimuli).replace(" ", "\n"))
    n = len(stimuli)
    (tmp_path / "tb.v").write_text(f"""
module tb;
  reg clk = 0, rst = 1;
  reg [{a_shape.width - 1}:0] a = 0; reg [{b_bits - 1}:0] b = 0; reg en = 0;
  wire [{width - 1}:0] pg, pe;
  reg [63:0] stim [0:{3 * n - 1}];
  integer i;
  prod_generic g(.clk(clk), .rst(rst), .a(a), .b(b), .en(en), .p(pg));
  prod_ecp5 e(.clk(clk), .rst(rst), .a(a), .b(b), .en(en), .p(pe));
  initial begin
    $readmemh("stim.hex", stim);
    #1 clk = 1; #1 clk = 0; rst = 0;
    for (i = 0; i < {n}; i = i + 1) begin
      a = stim[3 * i]; b = stim[3 * i + 1]; en = stim[3 * i + 2];
      #1 clk = 1; #1 clk = 0;
      $display("%0d %0d", pg, pe);
    end
    $finish;
  end
endmodule
""")
    subprocess.run(["iverilog", "-g2005", "-o", "sim", "tb.v", "prod_generic.v", "prod_ecp5.v",
                    *map(str, PRIMITIVE_MODELS)], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.split("\n")
    rows = [tuple(int(v) for v in line.split()) for line in out if line.strip()[:1].isdigit()]
    assert len(rows) == n
    # the reference: the product of the operands of PRODUCT_REGS enabled cycles before
    a_val = (lambda a: _signed(a, a_shape.width)) if a_shape.signed else (lambda a: a)
    regs = [0] * PRODUCT_REGS  # operand product in the operand register, then the product
    for k, ((a, b, en), (pg, pe)) in enumerate(zip(stimuli, rows)):
        if en:
            regs = [a_val(a) * b] + regs[:-1]
        want = regs[-1] & ((1 << width) - 1)  # %0d prints the width's bits unsigned
        assert (pg, pe) == (want, want), f"cycle {k}: generic {pg}, ECP5 {pe}, want {want}"


def test_registered_product_rejects_a_signed_or_wide_multiplier():
    for b_shape in (signed(8), unsigned(18)):
        with pytest.raises(ValueError, match="b must be unsigned and at most 17 bits"):
            registered_product(Module(), Signal(signed(8)), Signal(b_shape), en=1, width=8,
                               name="x")


def test_generation_targets():
    """The ECP5 target has a cache key of its own; an unknown target is refused before
    anything is emitted."""
    micro = PRESETS["micro"]
    assert rtl_key(micro) != rtl_key(micro, "top", ECP5)
    with pytest.raises(ValueError, match="unknown generation target 'ecp5'"):
        top_verilog(micro, target="ecp5")

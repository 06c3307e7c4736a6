// A simulation model of the Lattice ECP5 MULT18X18D multiplier block: the subset that
// hw/dsp.py instantiates (18 x 18 bits, each input signed or unsigned; input registers A and
// B and the output register clocked by CLK0 with clock enable CE0 and synchronous reset RST0,
// each one present or bypassed by its REG_*_CLK parameter, "CLK0" or "NONE"; no pipeline
// register, no C input, no shift chains). Yosys ships this primitive as a black box only, so
// the board simulation (fpga/boardsim.py) compiles this file with the accelerator's ECP5
// Verilog. Written from Lattice's DSP user guide (TN1267); parameters outside the subset are
// accepted and ignored.
`default_nettype none
module MULT18X18D (
    A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11,
    A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5,
    B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11,
    C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0,
    RST0, P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10,
    P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22,
    P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34,
    P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    input wire A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
    output wire P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35;

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2,
                        A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2,
                        B1, B0};
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg sa_reg = 1'b0, sb_reg = 1'b0;
    always @(posedge CLK0)
        if (RST0) begin
            a_reg <= 18'd0; b_reg <= 18'd0; sa_reg <= 1'b0; sb_reg <= 1'b0;
        end else if (CE0) begin
            a_reg <= a_in; b_reg <= b_in; sa_reg <= SIGNEDA; sb_reg <= SIGNEDB;
        end
    wire a_on = REG_INPUTA_CLK == "CLK0", b_on = REG_INPUTB_CLK == "CLK0";
    wire [17:0] a = a_on ? a_reg : a_in;
    wire [17:0] b = b_on ? b_reg : b_in;
    wire sa = a_on ? sa_reg : SIGNEDA;
    wire sb = b_on ? sb_reg : SIGNEDB;
    // each operand extended to 36 bits by its own signedness; the low 36 bits of the product
    wire [35:0] a_ext = {{18{sa & a[17]}}, a};
    wire [35:0] b_ext = {{18{sb & b[17]}}, b};
    wire [35:0] product = a_ext * b_ext;
    reg [35:0] p_reg = 36'd0;
    always @(posedge CLK0)
        if (RST0) p_reg <= 36'd0;
        else if (CE0) p_reg <= product;
    wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? p_reg : product;

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule
`default_nettype wire

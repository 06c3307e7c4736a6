"""SQ-DM gateware: one Amaranth 0.5 ``wiring.Component`` per block, plus the Verilog emitter."""

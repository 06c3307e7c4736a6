"""FPGA bring-up kit (plain Verilog self-checking testbenches) and synthesis figures.

``python -m hw.fpga.bringup`` and ``python -m hw.fpga.synth``; see docs/fpga.md.
"""

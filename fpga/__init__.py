"""FPGA bring-up kit (plain Verilog self-checking testbenches) and synthesis figures.

``python -m fpga.bringup`` and ``python -m fpga.synth``; see docs/fpga.md.
"""

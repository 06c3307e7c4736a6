"""Trace export and loading: one layer execution of the golden model, in the layouts of the
accelerator's memories (numpy for Python, ``$readmemh`` hex for Verilog and FPGA bring-up)."""

"""SQ-DM testbenches: cocotb test modules (``cocotb_*.py``), their pytest drivers (``test_*.py``)
and the one simulation entry point, :func:`tb.simulator.run_cocotb`."""

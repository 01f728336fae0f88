"""Running generated RTL under cocotb (Icarus or Verilator).

:mod:`.harness` (needs Amaranth) generates Verilog and runs a cocotb module in a
subprocess under the right cocotb; :mod:`.drivers` and :mod:`.payload` are used
*inside* the simulation and import neither Amaranth nor the hardware package,
so they run under cocotb 1.9 and 2.x alike. The testbenches in ``tb/`` and the
``intformer bench`` commands both use them.
"""

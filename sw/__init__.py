"""The software half of intformer: the bit-exact integer reference, quantization,
the integer transformer model, the compiler and the host drivers.

Nothing here imports :mod:`intformer.hw` or :mod:`intformer.gen`; hardware facts
reach this package only through the manifest.
"""

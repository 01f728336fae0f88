"""Float and integer-only transformer models.

:mod:`.graph` holds a float model as named nodes and runs it in float64;
:mod:`.encoder` builds encoder layers (pre- or post-norm); :mod:`.vit` the
digits Vision Transformer, its fixed data split and its weights file;
:mod:`.integer` the integer-only twin built by :func:`intformer.sw.quant.quantize`,
a list of ops that each call one :mod:`intformer.sw.golden` kernel.
"""

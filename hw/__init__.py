"""Amaranth components of the intformer accelerator."""

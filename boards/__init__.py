"""Board support: one module per supported board."""

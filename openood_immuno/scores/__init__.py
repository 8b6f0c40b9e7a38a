"""Pure tensor functions of the OOD scores (one module per method family)."""

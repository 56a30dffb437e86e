"""ligbind: ligand binding and surface-defect energies on lead-halide perovskite surfaces."""

from __future__ import annotations

__version__ = "0.1.0"

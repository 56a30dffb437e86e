"""Shared fixtures: the standard small slab and a scratch working directory."""

from __future__ import annotations

import pytest
from ase import Atoms

from ligbind.builders.slab import build_slab


@pytest.fixture(scope="session")
def _slab_2x2_session() -> Atoms:
    return build_slab("CsPbI3", "tetragonal", "2x2", layers=3, vacuum=12.0, fix_layers=1)


@pytest.fixture
def slab_2x2(_slab_2x2_session: Atoms) -> Atoms:
    """2×2, 3-layer PbI2-terminated CsPbI3 tetragonal slab, 12 Å vacuum, bottom layer fixed (a fresh copy)."""
    return _slab_2x2_session.copy()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside an empty temporary directory (returned as a Path)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path

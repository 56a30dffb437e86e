"""Shared fixtures: the standard small slab, a scratch working directory, and the ``ligbind`` command run
from this checkout (``run_cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# ------------------------------------------------------------------------------------- the ligbind command
REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ligbind"]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a ``ligbind`` subprocess: this checkout first on PYTHONPATH, so the command runs the
    tree under test and not whichever ``ligbind`` is installed; one BLAS/OpenMP thread; ``extra`` on top."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def run_ligbind(
    *args: str, cwd: str | Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m ligbind ARGS`` in ``cwd`` from this checkout (see :func:`cli_env`); output captured as text,
    the exit code not checked."""
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**(env or {})),
        check=False,
    )


@pytest.fixture
def run_cli():
    """:func:`run_ligbind`: ``run_cli("build", "slab", "-o", "s.extxyz", cwd=tmp_path)``."""
    return run_ligbind

"""One calculator factory per backend, each reading a resolved protocol.

``make_calculator(protocol, ...)`` returns an ASE Calculator for the ``ml`` and ``gpaw`` backends (D3 added
through the dftd3 package where the protocol asks). VASP runs its own relaxation through custodian
(:mod:`ligbind.calculators.vasp`), so it has no Calculator here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from ligbind.errors import LigbindError

BACKENDS = ("ml", "gpaw", "vasp")


def with_dispersion(calc: Calculator, protocol: dict[str, Any]) -> Calculator:
    """Add DFT-D3 (dftd3 package) to ``calc`` when ``protocol['dispersion']['method']`` is not 'none'."""
    disp = protocol.get("dispersion") or {}
    method = disp.get("method", "none")
    if method in (None, "none"):
        return calc
    from dftd3.ase import DFTD3

    return SumCalculator([calc, DFTD3(method=disp.get("xc", "pbe"), damping=method)])


def make_calculator(
    protocol: dict[str, Any],
    *,
    atoms: Atoms | None = None,
    directory: str | Path = ".",
    label: str = "calc",
    attempt: int = 0,
) -> Calculator:
    """ASE calculator for ``protocol`` (``attempt`` > 0 selects softer SCF settings where the backend has them)."""
    backend = protocol.get("backend")
    if backend == "ml":
        from ligbind.calculators.ml import ml_calculator

        return with_dispersion(ml_calculator(protocol), protocol)
    if backend == "gpaw":
        from ligbind.calculators.gpaw import gpaw_calculator

        return with_dispersion(gpaw_calculator(protocol, atoms, Path(directory), label, attempt), protocol)
    if backend == "vasp":
        raise LigbindError("the vasp backend runs through custodian, not as an ASE calculator")
    raise LigbindError(
        f"unknown backend '{backend}' in protocol '{protocol.get('name')}' (known: {BACKENDS})"
    )


def check_input(protocol: dict[str, Any], atoms: Atoms) -> None:
    """Refuse input the backend cannot compute, before any work (pre-relaxation included) is done."""
    if protocol.get("backend") == "gpaw":
        from ligbind.calculators.gpaw import check_spin

        check_spin(atoms, int(atoms.info.get("charge", 0) or 0), bool(protocol["gpaw"].get("spinpol")))


def scf_failures(protocol: dict[str, Any]) -> tuple[type[Exception], ...]:
    """Exceptions meaning 'the SCF did not converge; retry with softer settings'."""
    if protocol.get("backend") == "gpaw":
        from gpaw import KohnShamConvergenceError

        return (KohnShamConvergenceError,)
    return ()


def scf_attempts(protocol: dict[str, Any]) -> int:
    """How many SCF settings the backend tries before giving up (1 = no retry)."""
    if protocol.get("backend") == "gpaw":
        return 1 + len(protocol["gpaw"].get("scf_retries") or [])
    return 1

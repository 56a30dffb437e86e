"""Backend registry: one module per calculation backend, each exposing one :class:`Backend` object.

A backend says what it can do (DFT or not, charged systems, spin, its own optimizer, dry runs) and makes the
ASE calculator for a protocol. Adding a backend (Quantum ESPRESSO, another ML potential) is one module with a
``BACKEND`` object, one protocol YAML in ``ligbind/protocols/`` and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator
from pydantic import BaseModel

from ligbind.errors import LigbindError

# name -> module holding its BACKEND object (imported only when used)
BACKENDS: dict[str, str] = {
    "chgnet": "ligbind.calculators.chgnet",
    "sevennet": "ligbind.calculators.sevennet",
    "gpaw": "ligbind.calculators.gpaw",
    "vasp": "ligbind.calculators.vasp",
}


ORIGIN_SHIFT = "_origin_shift"  # info key: translation a backend's prepare() applied (undone for the caller)
ML_LABEL = "ML potential (not DFT)"  # every table and CLI line that shows a non-DFT number says so


VACUUM_THRESHOLD = 5.0
"""Minimum empty gap (Å) between atomic planes along a cell vector for it to count as vacuum."""


def vacuum_axes(atoms: Atoms) -> list[bool]:
    """For each cell vector: is there a gap > :data:`VACUUM_THRESHOLD` (or no periodicity) along it."""
    cell = np.asarray(atoms.cell)
    volume = abs(np.linalg.det(cell))
    frac = atoms.cell.scaled_positions(atoms.positions) % 1.0
    vacuum = []
    for axis in range(3):
        if not atoms.pbc[axis]:
            vacuum.append(True)
            continue
        other = [cell[i] for i in range(3) if i != axis]
        spacing = volume / np.linalg.norm(np.cross(*other))  # distance between lattice planes along axis
        coords = np.sort(frac[:, axis])
        gaps = np.append(np.diff(coords), coords[0] + 1.0 - coords[-1])
        vacuum.append(bool(gaps.max() * spacing > VACUUM_THRESHOLD))
    return vacuum


def is_bulk(atoms: Atoms) -> bool:
    """A crystal: periodic along all three cell vectors with no vacuum along any (a bulk reference salt).

    Its energy needs a k-point mesh, which slab and molecule protocols do not have (``bulk_kpt_density``,
    ``bulk_kpoints``: see :data:`ligbind.protocols.BULK_ONLY`).
    """
    return (
        len(atoms) > 0
        and bool(atoms.pbc.all())
        and abs(atoms.cell.volume) > 1e-6
        and not any(vacuum_axes(atoms))
    )


def method_label(is_dft: bool) -> str:
    """How tables name where a number comes from: "DFT" or :data:`ML_LABEL`."""
    return "DFT" if is_dft else ML_LABEL


class Backend:
    """What a backend can do, and how to compute with it. Subclasses override what differs.

    Attributes
    ----------
    name : registry name, the protocol's ``backend:`` value.
    section : protocol key holding the backend's own settings (None: it has none).
    settings_model : pydantic model of that section (unknown keys refused).
    is_dft : results are DFT (tables label everything else :data:`ML_LABEL`).
    supports_charge : can compute a charged system (``atoms.info['charge']`` != 0).
    runs_own_optimizer : relaxes through its own program (VASP) instead of an ASE optimizer.
    parallel_runs : calculations may run in several worker processes side by side.
    """

    name: ClassVar[str]
    section: ClassVar[str | None] = None
    settings_model: ClassVar[type[BaseModel] | None] = None
    is_dft: ClassVar[bool] = False
    supports_charge: ClassVar[bool] = False
    runs_own_optimizer: ClassVar[bool] = False
    parallel_runs: ClassVar[bool] = True

    def calculator(
        self, protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str, attempt: int = 0
    ) -> Calculator:
        """The ASE calculator (without dispersion) for ``attempt`` (> 0: softer SCF settings)."""
        raise LigbindError(f"the {self.name} backend has no ASE calculator")

    def prepare(self, atoms: Atoms, protocol: dict[str, Any]) -> Atoms:
        """A copy of ``atoms`` set up the way the backend wants it (pbc, initial moments, ...)."""
        return atoms.copy()

    def check_input(self, atoms: Atoms, protocol: dict[str, Any]) -> None:
        """Refuse input the backend cannot compute, before any work is done."""
        charge = int(atoms.info.get("charge", 0) or 0)
        if charge and not self.supports_charge:
            raise LigbindError(
                f"the {self.name} backend cannot treat a charged system (charge {charge:+d} on "
                f"{atoms.get_chemical_formula()}): use a DFT protocol or a neutral unit"
            )

    def treats_spin(self, protocol: dict[str, Any]) -> bool:
        """Whether this protocol computes open-shell (odd-electron, radical) systems spin-polarised."""
        return False

    def scf_failures(self, protocol: dict[str, Any]) -> tuple[type[Exception], ...]:
        """Exceptions meaning 'the SCF did not converge; retry with softer settings'."""
        return ()

    def scf_attempts(self, protocol: dict[str, Any]) -> int:
        """How many SCF settings are tried before giving up (1 = no retry)."""
        return 1

    def default_workers(self, protocol: dict[str, Any]) -> int:
        """Worker processes a campaign runs side by side: one per core unless the backend parallelises itself."""
        return max(1, len(os.sched_getaffinity(0))) if self.parallel_runs else 1

    def relaxes_externally(self, protocol: dict[str, Any]) -> bool:
        """Whether :meth:`relax` runs the relaxation (its own optimizer, or another process) for this protocol."""
        return self.runs_own_optimizer

    def relax(self, atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path):
        """Relax outside ligbind's ASE loop; returns (atoms, energy, fmax, converged, n_steps, force_calls)."""
        raise NotImplementedError

    def lasting_calculator(
        self, protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str
    ) -> AbstractContextManager[Calculator]:
        """A calculator for many calls in ligbind's own loop (NEB images), alive while the ``with`` lasts.

        Default: :func:`make_calculator` in this process. GPAW with ``run.cores`` > 1 runs it in an MPI job.
        """
        return nullcontext(make_calculator(protocol, atoms=atoms, directory=directory, label=label))

    def forget_lasting(self, directory: Path, labels: list[str]) -> None:
        """Drop what lasting calculators kept on disk to resume from (a finished band needs none)."""

    def superposes_basis_sets(self, protocol: dict[str, Any]) -> bool:
        """Whether this protocol's basis moves with the atoms (LCAO), so that a complex borrows its partner's
        basis functions (basis-set superposition error; plane waves and ML potentials have none)."""
        return False

    def wants_counterpoise(self, protocol: dict[str, Any]) -> bool:
        """Whether Eb with this protocol gets the counterpoise correction: its section asks for it
        (``counterpoise: true``) and its basis superposes."""
        section = protocol.get(self.section) if self.section else None
        return bool((section or {}).get("counterpoise")) and self.superposes_basis_sets(protocol)

    def counterpoise_energies(
        self, atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path
    ) -> dict[str, float]:
        """Energies of the counterpoise terms of a complex (see :func:`ligbind.jobs.counterpoise`), for a backend
        whose basis superposes (:meth:`superposes_basis_sets`)."""
        raise NotImplementedError

    writes_inputs: ClassVar[bool] = False  # supports --dry-run (input files written, nothing run)

    def write_inputs(self, atoms: Atoms, protocol: dict[str, Any], directory: Path) -> Path:
        """Write the input files of one calculation without running it (``--dry-run``)."""
        raise LigbindError(f"--dry-run writes input files; the {self.name} backend has none")


def get_backend(name: str) -> Backend:
    """The registered backend ``name``."""
    if name not in BACKENDS:
        raise LigbindError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return importlib.import_module(BACKENDS[name]).BACKEND


def backend_of(protocol: dict[str, Any]) -> Backend:
    """The backend a resolved protocol names."""
    return get_backend(protocol["backend"])


def check_dispersion_installed(protocol: dict[str, Any]) -> None:
    """Refuse a protocol that asks for DFT-D3 when the dftd3 package cannot be imported (before any work,
    rather than an ImportError at its first force call)."""
    disp = protocol.get("dispersion") or {}
    if disp.get("method", "none") == "none":
        return
    try:
        import dftd3.ase  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: the package without its shared library
        raise LigbindError(
            f"protocol '{protocol.get('name', '?')}' asks for D3 dispersion (dispersion.method "
            f"{disp['method']}), but the dftd3 package cannot be imported ({exc}): install it (bash "
            "scripts/setup.sh does), or set dispersion.method none for a run without dispersion"
        ) from None


def with_dispersion(calc: Calculator, protocol: dict[str, Any]) -> Calculator:
    """Add DFT-D3 (dftd3 package) to ``calc`` unless ``protocol['dispersion']['method']`` is 'none'."""
    disp = protocol["dispersion"]
    if disp["method"] == "none":
        return calc
    from dftd3.ase import DFTD3

    return SumCalculator([calc, DFTD3(method=disp["xc"], damping=disp["method"])])


def make_calculator(
    protocol: dict[str, Any],
    *,
    atoms: Atoms,
    directory: str | Path = ".",
    label: str = "calc",
    attempt: int = 0,
) -> Calculator:
    """ASE calculator for ``protocol`` with its dispersion correction."""
    calc = backend_of(protocol).calculator(protocol, atoms, Path(directory), label, attempt)
    return with_dispersion(calc, protocol)


def counted(calc: Calculator, counts: dict[str, int], key: str = "calls") -> Calculator:
    """``calc`` with every calculation it performs (not the results it returns from its cache) counted in
    ``counts[key]``: the force calls a caller that skips work (a dynamic NEB, a reused result) really made."""
    counts.setdefault(key, 0)
    calculate = calc.calculate

    def counting(*args, **kwargs):
        counts[key] += 1
        return calculate(*args, **kwargs)

    calc.calculate = counting
    return calc

"""VASP backend: input sets from a protocol, custodian-run jobs, and parsing of real VASP outputs.

Tests never run VASP: they check the generated inputs and parse real VASP outputs (tests/vasp_fake.py).

Inputs
    ``vasp_input_set`` builds a small :class:`pymatgen.io.vasp.sets.VaspInputSet` whose INCAR is exactly the
    protocol's ``vasp.incar`` (plus ``vasp.slab_incar`` for slabs). Nothing comes from Materials Project
    defaults: no ISPIN/MAGMOM/LORBIT/LASPH/LMAXMIX unless the protocol asks (pymatgen's base class adds LMAXMIX
    for d/f elements; it is dropped). A key set to ``null`` in the overrides removes it. pymatgen itself only
    removes keys VASP ignores (EDIFFG/IBRION/ISIF/POTIM when NSW = 0, MAGMOM when ISPIN = 1).
    MAGMOM, if wanted, is a per-element mapping (pymatgen convention, 0.6 for unlisted elements).
    ``DIPOL: auto`` in ``slab_incar`` becomes the slab's centre of mass along c (VASP wiki advice).
    Atoms are grouped by species (stable, in order of first appearance) for the POSCAR; the permutation is
    recorded in ``ligbind_protocol.json`` and undone when outputs are read, so indices match the input atoms.

Geometry (``classify_structure``)
    An axis has vacuum when the largest empty gap between atomic planes along it exceeds 5 Å (or the axis is
    not periodic). Vacuum along c only: slab (dipole keys, the protocol's Gamma-centred ``kpoints``).
    Vacuum along all three: molecule in a box (Gamma only, no dipole keys; a charged molecule gets the monopole
    and dipole corrections IDIPOL = 4, LDIPOL, LMONO about its centre, and NELECT = Σ ZVAL − charge). No vacuum: bulk (needs
    ``vasp.bulk_kpoints`` in the protocol). Anything else is refused.

Running
    ``run_vasp`` checks POTCARs and the executable before writing anything, then runs custodian with
    :func:`default_handlers` (numerical fixes only). A directory holding a complete vasprun.xml for the same
    inputs (fingerprint in ``ligbind_protocol.json``) is read, not rerun; outputs for other inputs are refused.
    A killed run (incomplete vasprun.xml) is restarted from the original POSCAR, not from CONTCAR.

Energies
    ``energy`` is pymatgen's ``Vasprun.final_energy``: the energy extrapolated to sigma -> 0 (``e_0_energy``) of
    the last ionic step, with pymatgen's fix for the VASP 5.4 vasprun bug that stores the wrong e_0 in the
    ionic-step block. It is what VASP users and ASE (``get_potential_energy()``) compare, and what the
    published binding energies use. The free energy (TOTEN, consistent with the forces) is kept as
    ``free_energy``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms, FixCartesian
from pydantic import Field
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp.inputs import Incar, Kpoints
from pymatgen.io.vasp.sets import VaspInputSet

from ligbind import __version__
from ligbind.calculators import Backend, is_bulk, vacuum_axes
from ligbind.errors import LigbindError, NonFiniteEnergyError
from ligbind.protocols import StrictModel

RECORD_FILE = "ligbind_protocol.json"
VASPRUN_NAMES = ("vasprun.xml", "vasprun.xml.gz", "vasprun.xml.bz2", "vasprun.xml.xz")

StructureKind = Literal["slab", "molecule", "bulk"]


@dataclass
class VaspOutcome:
    """Result of a VASP calculation (or of a dry run).

    ``converged`` is pymatgen's ``Vasprun.converged``: the SCF of the final ionic step converged and the
    relaxation stopped before NSW. ``unconverged_scf_steps`` lists (0-based) ionic steps whose SCF hit NELM.
    ``incar`` is the INCAR VASP actually ran with (after custodian corrections); for a dry run, the generated
    one. ``custodian_error`` holds custodian's message when it gave up but a vasprun.xml could still be read.
    """

    atoms: Atoms | None
    energy: float | None
    fmax: float | None
    converged: bool
    n_steps: int
    status: Literal["converged", "unconverged", "dry-run"]
    directory: Path
    potcar_spec: list[str]
    incar: dict[str, Any]
    free_energy: float | None = None
    converged_electronic: bool = False
    converged_ionic: bool = False
    unconverged_scf_steps: list[int] = field(default_factory=list)
    custodian_error: str | None = None


@dataclass
class LigbindVaspSet(VaspInputSet):
    """VaspInputSet whose INCAR holds only ``incar_keys`` (the protocol's keys), nothing from pymatgen defaults."""

    incar_keys: tuple[str, ...] = ()

    @property
    def incar(self) -> Incar:
        """The INCAR of the base class, restricted to ``incar_keys``."""
        incar = super().incar
        for key in [k for k in incar if k not in self.incar_keys]:
            del incar[key]
        return incar


@dataclass
class _Prepared:
    input_set: LigbindVaspSet
    kind: StructureKind
    order: list[int]
    potcar_symbols: list[str]
    functional: str
    fingerprint: str


# ---------------------------------------------------------------------------------------------------------
# geometry


def classify_structure(atoms: Atoms) -> StructureKind:
    """Say whether ``atoms`` is a slab (vacuum along c only), a molecule in a box, or bulk.

    Raises
    ------
    LigbindError
        Without a 3D cell, or with vacuum along a or b but not all three vectors.
    """
    if len(atoms) == 0:
        raise LigbindError("cannot set up VASP for an empty structure")
    if abs(atoms.cell.volume) < 1e-6:
        raise LigbindError("VASP needs a 3D cell: put the molecule in a box (atoms.center(vacuum=...))")
    vacuum = vacuum_axes(atoms)
    if all(vacuum):
        return "molecule"
    if vacuum == [False, False, True]:
        return "slab"
    if not any(vacuum):
        return "bulk"
    axes = ",".join("abc"[i] for i in range(3) if vacuum[i])
    raise LigbindError(
        f"cannot set up VASP for a cell with vacuum along {axes}: slabs need vacuum along the third cell vector"
    )


def _slab_centre_c(atoms: Atoms) -> float:
    """Mass-weighted centre of the slab along c (fractional), unwrapped across the periodic boundary."""
    frac_c = atoms.cell.scaled_positions(atoms.positions)[:, 2] % 1.0
    order = np.argsort(frac_c)
    coords = frac_c[order]
    gaps = np.append(np.diff(coords), coords[0] + 1.0 - coords[-1])
    start = coords[(int(np.argmax(gaps)) + 1) % len(coords)]  # first atom above the vacuum gap
    unwrapped = (frac_c - start) % 1.0 + start
    return float(np.average(unwrapped, weights=atoms.get_masses()) % 1.0)


# ---------------------------------------------------------------------------------------------------------
# protocol


def _vasp_section(protocol: dict[str, Any]) -> dict[str, Any]:
    if protocol.get("backend") != "vasp" or not isinstance(protocol.get("vasp"), dict):
        raise LigbindError(
            f"protocol '{protocol.get('name')}' is not a VASP protocol (backend: {protocol.get('backend')})"
        )
    vasp = protocol["vasp"]
    for key in ("incar", "potcars", "potcar_functional"):
        if not vasp.get(key):
            raise LigbindError(f"protocol '{protocol.get('name')}' has no vasp.{key}")
    return vasp


def _mesh(value: Any, what: str) -> tuple[int, int, int]:
    try:
        mesh = tuple(int(k) for k in value)
    except (TypeError, ValueError):
        mesh = ()
    if len(mesh) != 3 or min(mesh) < 1:
        raise LigbindError(f"vasp.{what} must be three positive integers, got {value!r}")
    return mesh  # type: ignore[return-value]


def _potcar_symbols(vasp: dict[str, Any], elements: Sequence[str]) -> list[str]:
    missing = sorted({el for el in elements if el not in vasp["potcars"]})
    if missing:
        raise LigbindError(
            f"no POTCAR chosen for {', '.join(missing)}: add them to vasp.potcars in the protocol"
        )
    return [str(vasp["potcars"][el]) for el in elements]


def _species_order(symbols: Sequence[str]) -> list[int]:
    """Permutation grouping atoms by species (stable, species in order of first appearance)."""
    first: dict[str, int] = {}
    for sym in symbols:
        first.setdefault(sym, len(first))
    return [int(i) for i in np.argsort([first[s] for s in symbols], kind="stable")]


def _clean_atoms(atoms: Atoms) -> Atoms:
    """Copy with only numbers, positions, cell, pbc=True and FixAtoms/FixCartesian constraints."""
    for constraint in atoms.constraints:
        if not isinstance(constraint, FixAtoms | FixCartesian):
            raise LigbindError(
                f"VASP selective dynamics supports FixAtoms and FixCartesian only, not {type(constraint).__name__}"
            )
    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
    clean.set_constraint([copy.deepcopy(c) for c in atoms.constraints])
    return clean


def _prepare(atoms: Atoms, protocol: dict[str, Any], is_slab: bool | None) -> _Prepared:
    vasp = _vasp_section(protocol)
    kind = classify_structure(atoms)
    if is_slab is True:
        kind = "slab"
    elif is_slab is False and kind == "slab":
        kind = "bulk"

    incar = {str(k).upper(): v for k, v in vasp["incar"].items()}
    if kind == "slab":
        incar.update({str(k).upper(): v for k, v in (vasp.get("slab_incar") or {}).items()})
    incar = {k: v for k, v in incar.items() if v is not None}
    if "MAGMOM" in incar and not isinstance(incar["MAGMOM"], dict):
        raise LigbindError("vasp.incar.MAGMOM must map elements to moments, e.g. {Ir: 0.6} (others get 0.6)")
    if str(incar.get("DIPOL", "")).lower() == "auto":
        incar["DIPOL"] = [0.5, 0.5, round(_slab_centre_c(atoms), 6)]
    if kind == "molecule" and int(atoms.info.get("charge", 0) or 0):
        # a charged molecule in a periodic box: monopole/dipole corrections in all three directions (VASP
        # wiki, LMONO), about the molecule's centre; without them a 2+ ion in a 15 Å box is off by eV
        centre = atoms.cell.scaled_positions(atoms.positions).mean(axis=0)
        incar.update(IDIPOL=4, LDIPOL=True, LMONO=True, DIPOL=[round(float(x), 6) for x in centre])

    if kind == "slab":
        mesh = _mesh(vasp.get("kpoints"), "kpoints")
    elif kind == "molecule":
        mesh = (1, 1, 1)
    else:
        if vasp.get("bulk_kpoints") is None:
            raise LigbindError(
                "bulk cell (no vacuum found): set vasp.bulk_kpoints in the protocol, or pass is_slab"
            )
        mesh = _mesh(vasp["bulk_kpoints"], "bulk_kpoints")
    kpoints = Kpoints.gamma_automatic(mesh, comment=f"Gamma-centred {kind} mesh (ligbind)")

    order = _species_order(atoms.get_chemical_symbols())
    ordered = _clean_atoms(atoms)[order]
    structure = AseAtomsAdaptor.get_structure(ordered)
    elements = list(dict.fromkeys(ordered.get_chemical_symbols()))
    symbols = _potcar_symbols(vasp, elements)
    functional = str(vasp["potcar_functional"])
    charge = int(atoms.info.get("charge", 0) or 0)
    if charge:  # NELECT = Σ ZVAL − charge, from the POTCARs (pymatgen's use_structure_charge)
        check_potcars(protocol, atoms.get_chemical_symbols())
        structure.set_charge(charge)
        incar["NELECT"] = None  # placeholder: keeps NELECT among the INCAR keys; pymatgen fills it in

    config = {
        "INCAR": {k: v for k, v in incar.items() if v is not None},
        "POTCAR": {el: sym for el, sym in zip(elements, symbols, strict=True)},
        "POTCAR_FUNCTIONAL": functional,
    }
    input_set = LigbindVaspSet(
        structure=structure,
        config_dict=config,
        user_kpoints_settings=kpoints,
        sort_structure=False,
        validate_magmom=False,
        use_structure_charge=bool(charge),
        incar_keys=tuple(incar),
    )
    with warnings.catch_warnings():  # NELECT from a charged structure: pymatgen's notes on POTCARs and charge
        warnings.filterwarnings("ignore", message="POTCAR data with symbol")
        warnings.filterwarnings("ignore", message="Structure charge")
        text = "\n".join(
            [str(input_set.incar), str(input_set.kpoints), input_set.poscar.get_str(), functional, *symbols]
        )
    fingerprint = hashlib.sha256(text.encode()).hexdigest()
    return _Prepared(input_set, kind, order, symbols, functional, fingerprint)


# ---------------------------------------------------------------------------------------------------------
# public API: inputs


def vasp_input_set(atoms: Atoms, protocol: dict[str, Any], *, is_slab: bool | None = None) -> VaspInputSet:
    """pymatgen input set for ``atoms`` with the protocol's INCAR, KPOINTS and POTCAR choice.

    Parameters
    ----------
    atoms
        Structure; FixAtoms/FixCartesian become selective dynamics.
    protocol
        Resolved VASP protocol (``load_protocol('vasp-pbe-d3', overrides)``).
    is_slab
        Force slab (True) or non-slab (False) settings; None detects with :func:`classify_structure`.
    """
    return _prepare(atoms, protocol, is_slab).input_set


def _find_vasprun(directory: Path) -> Path | None:
    for name in VASPRUN_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def _read_record(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write(prepared: _Prepared, protocol: dict[str, Any], directory: Path, potcar_spec: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # pymatgen warns about POTCAR hashes it does not know; the POTCAR choice is recorded below
        warnings.filterwarnings("ignore", message="POTCAR data with symbol")
        warnings.filterwarnings("ignore", message="Structure charge")
        prepared.input_set.write_input(str(directory), potcar_spec=potcar_spec)
    record = {
        "ligbind_version": __version__,
        "protocol": protocol,
        "potcar": {"symbols": prepared.potcar_symbols, "functional": prepared.functional},
        "structure_kind": prepared.kind,
        "sort_order": prepared.order,
        "fingerprint": prepared.fingerprint,
    }
    (directory / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str))
    return directory


def write_vasp_inputs(
    atoms: Atoms,
    protocol: dict[str, Any],
    directory: str | Path,
    *,
    potcar_spec: bool = True,
    is_slab: bool | None = None,
) -> Path:
    """Write INCAR, KPOINTS, POSCAR, POTCAR.spec (or POTCAR) and ``ligbind_protocol.json`` into ``directory``.

    ``ligbind_protocol.json`` records the resolved protocol, the POTCAR spec (symbols, functional), the
    structure kind, the species-grouping permutation (``sort_order``: POSCAR atom k is input atom
    ``sort_order[k]``) and a fingerprint of the inputs used to recognise a finished run.
    With ``potcar_spec=False`` the real POTCAR is written, which needs PMG_VASP_PSP_DIR (checked first).
    ``is_slab`` as in :func:`vasp_input_set`.
    """
    prepared = _prepare(atoms, protocol, is_slab)
    if not potcar_spec:
        check_potcars(protocol, atoms.get_chemical_symbols())
    return _write(prepared, protocol, Path(directory), potcar_spec)


def check_potcars(protocol: dict[str, Any], symbols: Sequence[str]) -> None:
    """Check that pymatgen finds the POTCARs the protocol chooses for the elements ``symbols``.

    Raises
    ------
    LigbindError
        One line naming what is missing: PMG_VASP_PSP_DIR unset or absent, or the POTCAR files.
    """
    from pymatgen.io.vasp import inputs as pmg_inputs
    from pymatgen.io.vasp.inputs import PmgVaspPspDirError, PotcarSingle

    vasp = _vasp_section(protocol)
    potcars = list(dict.fromkeys(_potcar_symbols(vasp, list(dict.fromkeys(symbols)))))
    functional = str(vasp["potcar_functional"])
    needed = ", ".join(potcars)
    psp_dir = pmg_inputs.SETTINGS.get("PMG_VASP_PSP_DIR")
    if not psp_dir:
        raise LigbindError(
            "missing POTCAR directory: set PMG_VASP_PSP_DIR (environment or ~/.config/.pmgrc.yaml) to the folder "
            f"holding {PotcarSingle.functional_dir.get(functional, functional)}/ (needed: {needed})"
        )
    if not Path(psp_dir).is_dir():
        raise LigbindError(
            f"missing POTCAR directory: PMG_VASP_PSP_DIR={psp_dir} does not exist (needed: {needed})"
        )
    if functional not in PotcarSingle.functional_dir:
        raise LigbindError(
            f"unknown vasp.potcar_functional '{functional}' (known: {', '.join(PotcarSingle.functional_dir)})"
        )
    absent = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for symbol in potcars:
            try:
                PotcarSingle.from_symbol_and_functional(symbol, functional)
            except (PmgVaspPspDirError, OSError, ValueError):
                absent.append(symbol)
    if absent:
        raise LigbindError(
            f"missing POTCAR files for {functional} in PMG_VASP_PSP_DIR={psp_dir}: {', '.join(absent)} "
            f"(looked for {PotcarSingle.functional_dir[functional]}/POTCAR.<symbol> and <symbol>/POTCAR)"
        )


# ---------------------------------------------------------------------------------------------------------
# public API: running


def default_handlers() -> list[Any]:
    """Custodian handlers that fix numerics only (ALGO, mixing, POTIM, IBRION, restarts from CONTCAR).

    Handlers that change physics (smearing, k-points: LargeSigmaHandler, IncorrectSmearingHandler,
    KspacingMetalHandler) are left out so that slab, ligand and complex keep identical settings.
    """
    from custodian.vasp.handlers import (
        FrozenJobErrorHandler,
        MeshSymmetryErrorHandler,
        NonConvergingErrorHandler,
        PositiveEnergyErrorHandler,
        PotimErrorHandler,
        StdErrHandler,
        UnconvergedErrorHandler,
        VaspErrorHandler,
    )

    return [
        VaspErrorHandler(),
        MeshSymmetryErrorHandler(),
        UnconvergedErrorHandler(),
        NonConvergingErrorHandler(),
        PotimErrorHandler(),
        PositiveEnergyErrorHandler(),
        FrozenJobErrorHandler(),
        StdErrHandler(),
    ]


def _finished_run(directory: Path, fingerprint: str) -> bool:
    """True if ``directory`` holds a complete vasprun.xml for these inputs; refuse foreign outputs."""
    path = _find_vasprun(directory)
    if path is None:
        return False
    if _read_record(directory).get("fingerprint") != fingerprint:
        raise LigbindError(
            f"{directory} already holds VASP outputs for other inputs (structure or protocol differ): "
            "use a new directory"
        )
    try:
        _parse_vasprun(path)
    except LigbindError:
        return False  # killed or still-being-written run: start again from the inputs
    return True


def _carry_metadata(source: Atoms, outcome: VaspOutcome) -> None:
    if outcome.atoms is None or len(outcome.atoms) != len(source):
        return
    outcome.atoms.info.update(copy.deepcopy(source.info))
    if source.has("tags"):
        outcome.atoms.set_tags(source.get_tags())


def run_vasp(
    atoms: Atoms,
    protocol: dict[str, Any],
    directory: str | Path,
    *,
    dry_run: bool = False,
    vasp_job_factory: Callable[[list[str]], Any] | None = None,
    is_slab: bool | None = None,
) -> VaspOutcome:
    """Run (or prepare) a VASP calculation of ``atoms`` in ``directory`` through custodian.

    Parameters
    ----------
    atoms, protocol
        Structure and resolved VASP protocol.
    directory
        Calculation folder. A finished run there for the same inputs is read, never rerun; outputs for
        other inputs are refused; an unfinished run (no complete vasprun.xml) is started again.
    dry_run
        Only write the inputs with POTCAR.spec (no POTCARs needed) and return status "dry-run".
    vasp_job_factory
        Called with the split ``run.command``; returns the custodian Job (default ``VaspJob``).
    is_slab
        As in :func:`vasp_input_set` (None: detect).

    Raises
    ------
    LigbindError
        Missing POTCARs or VASP executable (checked before anything is written), foreign outputs in the
        directory, or a run that left no readable vasprun.xml.
    NonFiniteEnergyError
        VASP returned NaN/inf.
    """
    from custodian import Custodian
    from custodian.custodian import CustodianError

    directory = Path(directory)
    prepared = _prepare(atoms, protocol, is_slab)
    if _finished_run(directory, prepared.fingerprint):
        outcome = read_vasp_outputs(directory)
        _carry_metadata(atoms, outcome)
        return outcome

    if dry_run:
        _write(prepared, protocol, directory, potcar_spec=True)
        return VaspOutcome(
            atoms=atoms.copy(),
            energy=None,
            fmax=None,
            converged=False,
            n_steps=0,
            status="dry-run",
            directory=directory,
            potcar_spec=prepared.potcar_symbols,
            incar=dict(prepared.input_set.incar),
        )

    _vasp_section(protocol)
    # $VASP_CMD (set by the SLURM job, e.g. "srun vasp_std") wins over the protocol's command
    command = shlex.split(os.environ.get("VASP_CMD") or str(protocol["run"]["command"] or ""))
    if not command:
        raise LigbindError("no VASP command: set run.command in the protocol (e.g. 'mpirun -n 32 vasp_std')")
    check_potcars(protocol, atoms.get_chemical_symbols())
    if vasp_job_factory is None:
        if shutil.which(command[0]) is None:
            raise LigbindError(
                f"VASP command not found: '{command[0]}' (set $VASP_CMD or run.command in the protocol)"
            )
        from custodian.vasp.jobs import VaspJob

        job = VaspJob(vasp_cmd=command, auto_npar=False)
    else:
        job = vasp_job_factory(command)

    _write(prepared, protocol, directory, potcar_spec=False)
    custodian = Custodian(
        handlers=default_handlers(),
        jobs=[job],
        max_errors=int(protocol["run"]["max_errors"]),
        directory=str(directory),
    )
    error = None
    try:
        custodian.run()
    except CustodianError as exc:
        error = " ".join(str(exc.message).split())
    try:
        outcome = read_vasp_outputs(directory)
    except NonFiniteEnergyError:
        raise
    except LigbindError as exc:
        if error:
            raise LigbindError(f"VASP run in {directory} failed: {error}") from exc
        raise
    outcome.custodian_error = error
    _carry_metadata(atoms, outcome)
    return outcome


# ---------------------------------------------------------------------------------------------------------
# public API: outputs


def _parse_vasprun(path: Path) -> Any:
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Vasprun(
                str(path),
                parse_dos=False,
                parse_eigen=False,
                parse_potcar_file=False,
                exception_on_bad_xml=True,
            )
    except Exception as exc:  # pymatgen raises ParseError, ValueError, KeyError... on broken files
        raise LigbindError(
            f"cannot read {path}: incomplete or corrupt vasprun.xml ({type(exc).__name__})"
        ) from exc


def _potcar_symbols_from_vasprun(vasprun: Any) -> list[str]:
    symbols = []
    for title in vasprun.potcar_symbols:
        parts = str(title).split()
        symbols.append(parts[1] if len(parts) > 1 else str(title))
    return symbols


def read_vasp_outputs(directory: str | Path) -> VaspOutcome:
    """Parse ``vasprun.xml`` (or ``vasprun.xml.gz``) in ``directory``.

    The final structure is returned as ase.Atoms in the order of the atoms given to :func:`run_vasp` when
    ``ligbind_protocol.json`` is present (VASP's order otherwise), with FixAtoms/FixCartesian from
    selective dynamics and a SinglePointCalculator holding energy (sigma -> 0), free_energy and forces.
    ``fmax`` is the largest force on unconstrained atoms (fixed components removed).

    Raises
    ------
    LigbindError
        No vasprun.xml, or an incomplete/corrupt one.
    NonFiniteEnergyError
        Energy or forces are NaN/inf.
    """
    directory = Path(directory)
    path = _find_vasprun(directory)
    if path is None:
        raise LigbindError(f"no vasprun.xml or vasprun.xml.gz in {directory}")
    vasprun = _parse_vasprun(path)
    if not vasprun.ionic_steps:
        raise LigbindError(f"{path} holds no ionic step")
    final = vasprun.ionic_steps[-1]
    energy = float(vasprun.final_energy)
    free_energy = float(final.get("e_fr_energy", np.nan))
    if not np.isfinite(energy):
        raise NonFiniteEnergyError(f"VASP returned a non-finite energy ({energy}) in {path}")
    forces = np.asarray(final["forces"], dtype=float)
    if not np.all(np.isfinite(forces)):
        raise NonFiniteEnergyError(f"VASP returned non-finite forces in {path}")

    atoms = AseAtomsAdaptor.get_atoms(vasprun.final_structure, msonable=False)
    record = _read_record(directory)
    order = record.get("sort_order")
    if order is not None:
        if sorted(order) != list(range(len(atoms))):
            raise LigbindError(f"{directory / RECORD_FILE} does not match the {len(atoms)} atoms in {path}")
        inverse = np.argsort(order)
        atoms = atoms[inverse]
        forces = forces[inverse]
    atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=free_energy, forces=forces)
    constrained = atoms.get_forces(apply_constraint=True)
    fmax = float(np.linalg.norm(constrained, axis=1).max())

    nelm = int(vasprun.parameters.get("NELM", 60))
    unconverged_scf = [
        i for i, step in enumerate(vasprun.ionic_steps) if len(step["electronic_steps"]) >= nelm
    ]
    converged_electronic = bool(vasprun.converged_electronic)
    converged_ionic = bool(vasprun.converged_ionic)
    converged = converged_electronic and converged_ionic
    potcar = record.get("potcar", {}).get("symbols") or _potcar_symbols_from_vasprun(vasprun)
    return VaspOutcome(
        atoms=atoms,
        energy=energy,
        fmax=fmax,
        converged=converged,
        n_steps=len(vasprun.ionic_steps),
        status="converged" if converged else "unconverged",
        directory=directory,
        potcar_spec=list(potcar),
        incar=dict(vasprun.incar),
        free_energy=free_energy,
        converged_electronic=converged_electronic,
        converged_ionic=converged_ionic,
        unconverged_scf_steps=unconverged_scf,
    )


class VaspSettings(StrictModel):
    """The ``vasp:`` section of a protocol. INCAR tags and POTCAR choices are free-form (VASP's own names)."""

    incar: dict[str, Any] = Field(min_length=1)
    slab_incar: dict[str, Any] = {}
    kpoints: tuple[int, int, int]
    bulk_kpoints: tuple[int, int, int] | None = None
    potcar_functional: str = Field(min_length=1)
    potcars: dict[str, str] = Field(min_length=1)


class VaspBackend(Backend):
    """VASP through custodian: DFT with its own optimizer (IBRION), run as one MPI job at a time."""

    name = "vasp"
    section = "vasp"
    settings_model = VaspSettings
    is_dft = True
    supports_charge = True
    runs_own_optimizer = True
    parallel_runs = False  # VASP parallelises itself (mpirun in its command)

    writes_inputs = True

    def treats_spin(self, protocol: dict[str, Any]) -> bool:
        return int(protocol["vasp"]["incar"].get("ISPIN", 1)) == 2

    def check_input(self, atoms: Atoms, protocol: dict[str, Any]) -> None:
        # NELECT follows the charge (from the POTCARs' ZVAL, checked when the inputs are made)
        if is_bulk(atoms) and _vasp_section(protocol).get("bulk_kpoints") is None:
            raise LigbindError(
                f"{atoms.info.get('label', atoms.get_chemical_formula())} is a bulk crystal and protocol "
                f"'{protocol['name']}' has no k-points for one: set vasp.bulk_kpoints"
            )

    def relax(self, atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path):
        out = run_vasp(atoms, protocol, workdir / key)
        return (
            out.atoms,
            float(out.energy),
            float(out.fmax),
            bool(out.converged),
            int(out.n_steps),
            int(out.n_steps),
        )

    def write_inputs(self, atoms: Atoms, protocol: dict[str, Any], directory: Path) -> Path:
        return write_vasp_inputs(atoms, protocol, directory)


BACKEND = VaspBackend()

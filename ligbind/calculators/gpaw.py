"""GPAW backend: PBE (LCAO or plane waves), Fermi–Dirac smearing, dipole layer for asymmetric slabs."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from pydantic import Field, model_serializer

from ligbind.calculators import ORIGIN_SHIFT, Backend, is_bulk
from ligbind.errors import LigbindError
from ligbind.protocols import StrictModel


class MixerSettings(StrictModel):
    beta: float = Field(gt=0, le=1)
    nmaxold: int = Field(ge=1, le=100)
    weight: float = Field(gt=0)


class OccupationSettings(StrictModel):
    name: Literal["fermi-dirac"]
    width: float = Field(ge=0, le=1, description="eV")


class ConvergenceSettings(StrictModel):
    energy: float = Field(gt=0)
    density: float = Field(gt=0)
    forces: float | None = Field(None, gt=0, description="eV/Å change of the forces between SCF iterations")

    @model_serializer(mode="wrap")
    def _without_unset_forces(self, handler):
        """Leave ``forces`` out unless set, so that presets without it keep their protocol hash."""
        out = handler(self)
        if out.get("forces") is None:
            out.pop("forces", None)
        return out


class GpawSettings(StrictModel):
    """The ``gpaw:`` section of a protocol (every value comes from the preset YAML)."""

    mode: Literal["lcao", "pw"]
    basis: str = Field(min_length=1)
    ecut: float = Field(gt=0, description="eV, pw mode only")
    h: float = Field(gt=0.05, le=0.5, description="grid spacing, Å")
    xc: str = Field(min_length=1)
    kpts: tuple[int, int, int]
    bulk_kpt_density: float | None = Field(
        None, gt=0, description="k-points per Å⁻¹ (Γ-centred) for bulk crystals; None: bulk cells refused"
    )
    occupations: OccupationSettings
    convergence: ConvergenceSettings
    mixer: MixerSettings
    maxiter: int = Field(ge=1, le=10000)
    spinpol: bool
    symmetry: Literal["off"]
    dipole_correction: Literal["auto"] | bool
    scf_retries: list[MixerSettings]
    counterpoise: bool = Field(
        False,
        description="binding energies get the Boys-Bernardi counterpoise correction of their basis-set "
        "superposition error (LCAO; plane waves have none, so pw mode ignores it)",
    )


def is_slab(atoms: Atoms) -> bool:
    """A slab: periodic in-plane structure with framework atoms (tags 0) and a vacuum gap along z."""
    return bool(atoms.info.get("kind") in ("slab", "complex", "defect")) or (
        bool(atoms.pbc[0] and atoms.pbc[1]) and any(s == "Pb" for s in atoms.get_chemical_symbols())
    )


MIN_DOMAIN_WIDTH = 8  # grid points per rank along a split in-plane axis; narrower: GPAW's own choice
DOMAIN_SPLITS: list[tuple[int, int, int]] = []  # what split_slab_grids_in_plane chose in this process


def split_slab_grids_in_plane(atoms: Atoms) -> None:
    """When ``atoms`` is a slab, make GPAW decompose this process's grids across the surface (x, y) instead of
    along z.

    GPAW (``gpaw.old.domain.decompose_domain``, which its new code uses too, taking only the number of domains
    from ``parallel``) makes subdomains as cube-like as it can, so it cuts a slab's tall cell along z: one rank
    gets the slab's lower half, the other its upper half, the adsorbate and most of the vacuum. The LCAO work
    (basis functions on the grid: potential matrix, density, forces) lies where the atoms are. Cut across the
    surface, every rank holds the same slab. Measured (benchmarks/gpaw_parallel.py, 2x2 CsPbI3 + methylamine,
    gpaw-laptop's dzp, 2 ranks): single point 1.54x and relaxation step 1.53x faster than serial cut along z,
    1.83x and 1.84x cut along y, the same energy; sz(dzp) along x: 1.92x and 1.81x. Called by the MPI jobs
    (:mod:`gpaw_mpi`), which compute one structure each; grids too narrow in-plane for the ranks keep GPAW's
    choice, and so do molecules and crystals.
    """
    import gpaw.old.domain as domain

    if not is_slab(atoms) or is_bulk(atoms) or getattr(domain.decompose_domain, "in_plane", False):
        return
    gpaw_choice = domain.decompose_domain

    def decompose_domain(ngpts_c, ncores):
        n1, n2, n3 = (int(n) for n in ngpts_c)
        if ncores == 1 or n3 == 1:  # serial, or a grid GPAW flattened along z for its Poisson solver
            return gpaw_choice(ngpts_c, ncores)
        p1, p2, p3 = gpaw_choice((n1, n2, 1), ncores)
        if p2 > p1 and n1 >= n2:  # more cuts along x: each rank's block is contiguous in memory (C order)
            p1, p2 = p2, p1
        if p3 == 1 and min(n1 / p1, n2 / p2) >= MIN_DOMAIN_WIDTH:
            DOMAIN_SPLITS.append((p1, p2, 1))
            return p1, p2, 1
        chosen = gpaw_choice(ngpts_c, ncores)
        DOMAIN_SPLITS.append(tuple(int(p) for p in chosen))
        return chosen

    decompose_domain.in_plane = True
    domain.decompose_domain = decompose_domain


def needs_dipole_correction(atoms: Atoms, setting: Any = "auto") -> bool:
    """Dipole layer for slabs whose two faces differ (asymmetric termination or any adsorbate)."""
    if setting is True or setting is False:
        return bool(setting) and is_slab(atoms)
    if not is_slab(atoms):
        return False
    from ligbind.builders.slab import termination

    top, bottom = termination(atoms)
    return top != bottom or bool(np.any(atoms.get_tags() > 0))


def electron_count(atoms: Atoms, charge: int = 0) -> int:
    """Total electron count (PAW cores are closed shells, so its parity is that of the valence count)."""
    return int(atoms.get_atomic_numbers().sum()) - int(charge)


def check_spin(atoms: Atoms, charge: int, spinpol: bool) -> None:
    """Refuse an odd electron count in a spin-paired calculation."""
    n = electron_count(atoms, charge)
    if n % 2 and not spinpol:
        raise LigbindError(
            f"odd number of electrons ({n}, charge {charge:+d}) in a spin-paired calculation: "
            "set gpaw.spinpol: true or check the ligand's charge"
        )


def check_box(atoms: Atoms) -> None:
    """Refuse a slab whose atoms leave less than ``MIN_VACUUM`` along z: GPAW's box is not periodic along z, and
    an adsorbate reaching the slab's periodic image has its basis functions cut by the box (GridBoundsError)."""
    from ligbind.validation import MIN_VACUUM, slab_vacuum

    if is_slab(atoms) and (vacuum := slab_vacuum(atoms)) < MIN_VACUUM:
        raise LigbindError(
            f"{atoms.info.get('label', atoms.get_chemical_formula())}: only {vacuum:.1f} Å of vacuum along z "
            f"between the atoms and the slab's periodic image (need ≥ {MIN_VACUUM:.0f} Å): raise slab.vacuum"
        )


def check_bulk(atoms: Atoms, protocol: dict[str, Any]) -> None:
    """Refuse a crystal (periodic, no vacuum) when the protocol has no k-points for one: the slab setting's Γ
    point alone is far off for a small cell (KBr's 2-atom cell: > 0.1 eV in tests/test_gpaw.py)."""
    if is_bulk(atoms) and protocol["gpaw"].get("bulk_kpt_density") is None:
        raise LigbindError(
            f"{atoms.info.get('label', atoms.get_chemical_formula())} is a bulk crystal and protocol "
            f"'{protocol['name']}' has no k-points for one: set gpaw.bulk_kpt_density (k-points per Å⁻¹)"
        )


def text_log(path: Path) -> str | IO[str]:
    """GPAW's ``txt``: a resumed calculation appends to the log of its earlier runs (GPAW would overwrite it).

    The appended log is line-buffered (a killed run leaves it whole); only rank 0 writes to it (GPAW's Logger).
    """
    if path.exists() and path.stat().st_size:
        return open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  (GPAW's Logger holds it)
    return str(path)


def dipole_layer() -> Any:
    """GPAW's dipole layer along z (``poissonsolver={'dipolelayer': 'xy'}``) for real-space grids, faster.

    GPAW's real-space dipole correction builds the grid coordinates and evaluates an exponential and an error
    function over the whole fine grid at every Poisson solve: 8-16 % of an SCF iteration of a slab + ligand here.
    Its charge and potential corrections are that fixed profile times the density's dipole moment, so this
    subclass keeps GPAW's own result for the first density and rescales it by the moment afterwards (same
    energies; a new grid starts a new profile). Plane-wave mode keeps GPAW's solver, which is already cheap.
    """
    from gpaw.dipole_correction import DipoleCorrection, dipole_correction
    from gpaw.poisson import FastPoissonSolver, _PoissonSolver

    class ScaledDipoleCorrection(DipoleCorrection, _PoissonSolver):
        # _PoissonSolver: GPAW takes an instance of it as the solver itself (gpaw.poisson.create_poisson_solver)
        profile: tuple[float, np.ndarray, np.ndarray, float] | None = None

        def set_grid_descriptor(self, gd):
            super().set_grid_descriptor(gd)
            self.profile = None

        def fdsolve(self, vHt_g, rhot_g, **kwargs):
            gd = self.poissonsolver.gd
            moment = gd.calculate_dipole_moment(rhot_g)[self.c]
            if self.profile is None or abs(moment) < 1e-12:  # GPAW's own (zeros for no moment)
                drhot_g, dvHt_g, self.correction = dipole_correction(self.c, gd, rhot_g)
                if abs(moment) >= 1e-12:
                    self.profile = (moment, drhot_g.copy(), dvHt_g.copy(), self.correction)
            else:
                moment0, drho0_g, dphi0_g, correction0 = self.profile
                scale = moment / moment0
                drhot_g, dvHt_g, self.correction = drho0_g * scale, dphi0_g * scale, correction0 * scale
            if self.zero_vacuum:
                dvHt_g += self.correction
            vHt_g -= dvHt_g
            iters = self.poissonsolver.solve(vHt_g, rhot_g + drhot_g, **kwargs)
            vHt_g += dvHt_g
            return iters

    return ScaledDipoleCorrection(FastPoissonSolver(), "xy")


def gpaw_parameters(
    protocol: dict[str, Any], atoms: Atoms | None, directory: Path, label: str, attempt: int = 0
) -> dict[str, Any]:
    """Keyword arguments of GPAW from ``protocol['gpaw']``; ``attempt`` ≥ 1 uses the n-th softer mixer."""
    from gpaw import PW, FermiDirac, Mixer

    p = protocol["gpaw"]
    charge = int(atoms.info.get("charge", 0)) if atoms is not None else 0
    if atoms is not None:
        check_spin(atoms, charge, bool(p["spinpol"]))
    mixer = p["mixer"] if attempt == 0 else p["scf_retries"][attempt - 1]
    kpts: Any = tuple(p["kpts"])
    symmetry: Any = p["symmetry"]
    convergence = {k: v for k, v in p["convergence"].items() if v is not None}
    # a crystal (a reference salt at its fixed, symmetric cell): k-points, and the point group to reduce them;
    # its atoms sit on symmetry-fixed sites, so the SCF's force criterion (there to give BFGS converged forces)
    # would only add a force evaluation (KBr, gpaw-quick: 2 of its 8 SCF iterations' time for forces of 0)
    if atoms is not None and is_bulk(atoms):
        check_bulk(atoms, protocol)
        kpts = {"density": float(p["bulk_kpt_density"]), "gamma": True}
        symmetry = {"point_group": True, "time_reversal": True}
        convergence.pop("forces", None)
    kwargs: dict[str, Any] = dict(
        xc=p["xc"],
        kpts=kpts,
        occupations=FermiDirac(p["occupations"]["width"]),
        convergence=convergence,
        mixer=Mixer(**mixer),
        maxiter=int(p["maxiter"]),
        symmetry=symmetry,
        spinpol=bool(p["spinpol"]),
        charge=charge,
        txt=text_log(directory / (f"{label}.txt" if attempt == 0 else f"{label}.retry{attempt}.txt")),
    )
    if p["mode"] == "lcao":
        kwargs.update(mode="lcao", basis=p["basis"], h=float(p["h"]))
    else:
        kwargs.update(mode=PW(float(p["ecut"])), h=float(p["h"]))
    if atoms is not None and needs_dipole_correction(atoms, p["dipole_correction"]):
        kwargs["poissonsolver"] = dipole_layer() if p["mode"] == "lcao" else {"dipolelayer": "xy"}
    directory.mkdir(parents=True, exist_ok=True)
    return kwargs


def gpaw_calculator(
    protocol: dict[str, Any], atoms: Atoms | None, directory: Path, label: str, attempt: int = 0
) -> Calculator:
    """GPAW calculator from ``protocol['gpaw']``; ``attempt`` ≥ 1 uses the n-th softer mixer."""
    from gpaw import GPAW

    return GPAW(**gpaw_parameters(protocol, atoms, directory, label, attempt))


def state_path(directory: Path, label: str) -> Path:
    """Where a lasting GPAW calculator keeps its last converged state (:func:`lasting_gpaw_calculator`)."""
    return Path(directory) / f"{label}.gpw"


def _partial(path: Path) -> Path:
    """The file a state is written to before it is renamed to ``path`` (ligbind.io's naming)."""
    return path.with_name(f".{path.name}.partial")


def lasting_gpaw_calculator(
    protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str
) -> Calculator:
    """GPAW for the many calls of one NEB image, which saves its state after every force call
    (``<label>.gpw``, wave functions included) and, when that file exists, starts from it.

    A killed band then resumes without SCFs from scratch: the saved band's images come back with their saved
    results (no SCF), a moved image starts from its last wave functions (the K–Br DFT band of the
    mixed-halide campaign: 20-73 SCF iterations per image from scratch, 6-9 from the previous step; its
    resume took 3.1 min instead of 18). The state file is GPAW's own (``calc.write``, read with
    ``GPAW(path)``); ligbind's faster dipole layer, which GPAW cannot store, is put back by its
    ``object_hooks``. One that cannot be read starts afresh.
    """
    from gpaw import GPAW

    kwargs = gpaw_parameters(protocol, atoms, directory, label)
    path = state_path(directory, label)
    calc = None
    if path.exists():
        hooks = {"poissonsolver": lambda _: kwargs["poissonsolver"]} if "poissonsolver" in kwargs else None
        try:
            calc = GPAW(path, txt=kwargs["txt"], object_hooks=hooks)
        except Exception:  # noqa: BLE001  (a file cut short or of another GPAW: only a head start lost)
            calc = None
    if calc is None:
        calc = GPAW(**kwargs)
    return _saving_state(calc, path)


def image_calculator(protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str) -> Calculator:
    """:func:`lasting_gpaw_calculator` with the protocol's dispersion correction (in the process that runs it)."""
    from ligbind.calculators import with_dispersion

    return with_dispersion(lasting_gpaw_calculator(protocol, atoms, directory, label), protocol)


def _saving_state(calc: Calculator, path: Path) -> Calculator:
    """``calc`` (GPAW) writing its state to ``path`` after every force calculation (whole file or none).

    Only forces it computed count (the write is collective; writing on every forces request, cached ones
    included, hung at its second write over 2 ranks)."""
    calculate_property = calc.calculate_property

    def calculating(atoms, prop):
        fresh = prop == "forces" and not _has_forces(calc, atoms)
        value = calculate_property(atoms, prop)
        if fresh:
            part = _partial(path)
            calc.write(part, mode="all")
            if calc.comm.rank == 0:
                os.replace(part, path)
            calc.comm.barrier()
        return value

    calc.calculate_property = calculating
    return calc


def _has_forces(calc: Calculator, atoms: Atoms | None) -> bool:
    """Whether GPAW holds forces for ``atoms`` (None: its own) without computing anything."""
    try:
        return calc.get_property("forces", atoms, allow_calculation=False) is not None
    except AttributeError:  # GPAW before its first calculation has no state to ask
        return False


def forget_states(directory: Path, labels: list[str]) -> None:
    """Remove the saved states of lasting calculators (a finished band needs no head start)."""
    for label in labels:
        path = state_path(directory, label)
        path.unlink(missing_ok=True)
        _partial(path).unlink(missing_ok=True)


def prepare_atoms(atoms: Atoms, protocol: dict[str, Any]) -> Atoms:
    """GPAW wants a non-periodic z for the dipole layer and pbc=False for molecules in a box (crystals stay
    periodic).

    With ``spinpol`` and an odd electron count, atoms without initial magnetic moments get 1 μB in total.
    """
    atoms = atoms.copy()
    _start_moments(atoms, protocol)
    if is_bulk(atoms):
        return atoms  # a crystal: periodic in all three directions, k-points from gpaw.bulk_kpt_density
    if is_slab(atoms):
        atoms.pbc = (
            True,
            True,
            not needs_dipole_correction(atoms, protocol["gpaw"]["dipole_correction"]),
        )
    else:
        atoms.pbc = False
    if not atoms.pbc[2]:
        # A non-periodic axis needs the atoms' basis functions inside the box: centre the atoms along z (an
        # adsorbate on a slab built with its vacuum on top would otherwise reach the cell face). The shift
        # is recorded so that jobs hands positions back in the caller's frame.
        before = atoms.positions.copy()
        atoms.center(axis=2)
        atoms.info[ORIGIN_SHIFT] = (atoms.positions[0] - before[0]).tolist()
    return atoms


def _start_moments(atoms: Atoms, protocol: dict[str, Any]) -> None:
    """With ``spinpol`` and an odd electron count, 1 μB in total on atoms that start without moments (from zero
    moments the SCF stays spin-paired)."""
    if protocol["gpaw"]["spinpol"] and not np.any(atoms.get_initial_magnetic_moments()):
        if electron_count(atoms, int(atoms.info.get("charge", 0) or 0)) % 2:
            atoms.set_initial_magnetic_moments(np.full(len(atoms), 1.0 / len(atoms)))


def counterpoise_label(key: str, term: str) -> str:
    """The label (text log ``<label>.txt``) of counterpoise term ``term`` of calculation ``key``."""
    return f"{key}.{term.replace(' ', '-').replace('+', '-with-')}"


def counterpoise_energies(
    atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path
) -> dict[str, float]:
    """GPAW energies (no dispersion) of the four counterpoise terms of a complex, at the complex's geometry.

    The adsorbate (tags > 0) and the slab (tags 0) each alone, and each with the other's atoms as ghosts (GPAW's
    ``ghost`` setups: their basis functions, no nuclei, no electrons), all in the complex's cell, boundary
    conditions, grid and Poisson solver, so that only the basis differs within a pair. A charged complex
    carries its fragments' charges (adsorbate, rest) in ``info['fragment_charges']``. Term names:
    :data:`ligbind.analysis.energies.COUNTERPOISE_TERMS`. Each finished energy is saved to ``<key>.json`` at
    once: a killed run computes only the terms it had not finished.
    """
    import json

    from gpaw import GPAW, KohnShamConvergenceError

    from ligbind.errors import NonFiniteEnergyError, UnconvergedError
    from ligbind.io import write_text_atomic

    complex_ = prepare_atoms(atoms, protocol)
    complex_.set_constraint()
    complex_.set_initial_magnetic_moments(None)
    adsorbate = np.flatnonzero(complex_.get_tags() > 0)
    slab = np.flatnonzero(complex_.get_tags() == 0)
    q_adsorbate, q_slab = atoms.info.get("fragment_charges") or (0, 0)
    record = workdir / f"{key}.json"
    try:
        energies = json.loads(record.read_text())
    except (OSError, ValueError):
        energies = {}
    terms = {
        "adsorbate": (adsorbate, [], q_adsorbate),
        "adsorbate+slab ghosts": (np.arange(len(complex_)), slab, q_adsorbate),
        "slab": (slab, [], q_slab),
        "slab+adsorbate ghosts": (np.arange(len(complex_)), adsorbate, q_slab),
    }
    for name, (indices, ghosts, charge) in terms.items():
        if name in energies:
            continue
        real = ~np.isin(indices, ghosts)
        check_spin(complex_[indices[real]], charge, bool(protocol["gpaw"]["spinpol"]))
        work = complex_[indices]
        if protocol["gpaw"]["spinpol"] and electron_count(complex_[indices[real]], charge) % 2:
            work.set_initial_magnetic_moments(np.where(real, 1.0 / real.sum(), 0.0))
        label = counterpoise_label(key, name)
        for attempt in range(1 + len(protocol["gpaw"]["scf_retries"])):
            kwargs = gpaw_parameters(protocol, complex_, workdir, label, attempt)
            # energies only: the SCF's force criterion (there for BFGS) would add a force evaluation per check
            kwargs["convergence"] = {k: v for k, v in kwargs["convergence"].items() if k != "forces"}
            kwargs["charge"] = charge
            if len(ghosts):
                kwargs["setups"] = {int(i): "ghost" for i in ghosts}
            work.calc = GPAW(**kwargs)
            try:
                energy = float(work.get_potential_energy())
                break
            except KohnShamConvergenceError as exc:
                error = exc
        else:
            raise UnconvergedError(f"counterpoise term '{name}' of {key}: SCF did not converge ({error})")
        if not np.isfinite(energy):
            raise NonFiniteEnergyError(f"counterpoise term '{name}' of {key}: non-finite energy {energy}")
        energies[name] = energy
        write_text_atomic(record, json.dumps(energies))
    return energies


class GpawBackend(Backend):
    """GPAW (PAW, LCAO or plane waves): DFT, charged systems, spin; softer mixers on SCF failure."""

    name = "gpaw"
    section = "gpaw"
    settings_model = GpawSettings
    is_dft = True
    supports_charge = True

    def calculator(self, protocol, atoms, directory, label, attempt=0) -> Calculator:
        return gpaw_calculator(protocol, atoms, directory, label, attempt)

    def prepare(self, atoms: Atoms, protocol: dict[str, Any]) -> Atoms:
        return prepare_atoms(atoms, protocol)

    def check_input(self, atoms: Atoms, protocol: dict[str, Any]) -> None:
        check_spin(atoms, int(atoms.info.get("charge", 0) or 0), bool(protocol["gpaw"]["spinpol"]))
        check_box(atoms)
        check_bulk(atoms, protocol)

    def treats_spin(self, protocol: dict[str, Any]) -> bool:
        return bool(protocol["gpaw"]["spinpol"])

    @staticmethod
    def cores(protocol: dict[str, Any]) -> int:
        """MPI ranks per GPAW relaxation: ``run.cores``, or every core of the machine when it is null.

        Measured on 2 cores (benchmarks/gpaw_parallel.py, 2x2 slab + methylamine, dzp): one 2-rank job gives
        1.84x the relaxation steps per hour of one serial job (with the grid cut across the surface,
        :func:`split_slab_grids_in_plane`), and two serial jobs side by side give no more than one (they compete
        for memory bandwidth), so a laptop runs one MPI job over all its cores.
        """
        return int(protocol["run"]["cores"] or max(1, len(os.sched_getaffinity(0))))

    def relaxes_externally(self, protocol: dict[str, Any]) -> bool:
        return self.cores(protocol) > 1  # an MPI job over that many ranks

    def relax(self, atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path):
        from ligbind.calculators.gpaw_mpi import relax_under_mpi

        return relax_under_mpi(atoms, protocol, key, workdir, self.cores(protocol))

    def lasting_calculator(self, protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str):
        """:func:`image_calculator`: in this process, or over ``run.cores`` MPI ranks in a persistent job
        (ASE's subprocess calculator) when > 1."""
        if self.cores(protocol) == 1:
            return nullcontext(image_calculator(protocol, atoms, directory, label))
        from ligbind.calculators.gpaw_mpi import calculator_under_mpi

        directory.mkdir(parents=True, exist_ok=True)
        return calculator_under_mpi(protocol, atoms, directory, label, self.cores(protocol))

    def forget_lasting(self, directory: Path, labels: list[str]) -> None:
        forget_states(directory, labels)

    def default_workers(self, protocol: dict[str, Any]) -> int:
        """As many campaign workers as MPI jobs fit the cores (one on a laptop; one per core when serial)."""
        return max(1, len(os.sched_getaffinity(0)) // self.cores(protocol))

    def superposes_basis_sets(self, protocol: dict[str, Any]) -> bool:
        return protocol["gpaw"]["mode"] == "lcao"

    def counterpoise_energies(self, atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path):
        if self.cores(protocol) > 1:  # an MPI job over that many ranks, like a relaxation
            from ligbind.calculators.gpaw_mpi import counterpoise_under_mpi

            return counterpoise_under_mpi(atoms, protocol, key, workdir, self.cores(protocol))
        return counterpoise_energies(atoms, protocol, key, workdir)

    def scf_failures(self, protocol: dict[str, Any]) -> tuple[type[Exception], ...]:
        from gpaw import KohnShamConvergenceError

        return (KohnShamConvergenceError,)

    def scf_attempts(self, protocol: dict[str, Any]) -> int:
        return 1 + len(protocol["gpaw"]["scf_retries"])


BACKEND = GpawBackend()

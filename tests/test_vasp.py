"""VASP backend: generated inputs, a fake VASP run through the real custodian loop, and real VASP outputs.

VASP is never run. Reference outputs are the atomate Ir/H adsorption calculations kept in the repository in
``tests/data/vasp/ir_h_adsorption`` (see tests/data/vasp/README.md); every number compared is read from them. A
missing reference file fails the test that needs it (:func:`reference`); nothing here is skipped.

POTCARs: the fake runs go through the real ``check_potcars`` and the real POTCAR writer. They use a temporary
PMG_VASP_PSP_DIR holding placeholder POTCAR files (a parsable header and no pseudopotential data, marked as
such), set in pymatgen's own SETTINGS. Only the FakeVaspJob consumes the inputs and it never reads POTCAR,
so nothing physical depends on them; licensed POTCARs are not needed.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.constraints import FixAtoms
from ase.io import read
from pymatgen.io.vasp import inputs as pmg_inputs
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar
from pymatgen.io.vasp.outputs import Vasprun
from vasp_fake import FakeVaspJob, reference_incar_overrides

from ligbind.calculators.vasp import (
    RECORD_FILE,
    VaspOutcome,
    check_potcars,
    classify_structure,
    read_vasp_outputs,
    run_vasp,
    vasp_input_set,
    write_vasp_inputs,
)
from ligbind.errors import LigbindError, NonFiniteEnergyError
from ligbind.protocols import load_protocol

IR_H = Path(__file__).resolve().parent / "data" / "vasp" / "ir_h_adsorption"
# what the tests below read of each reference calculation
REFERENCE_FILES = {
    "2": ("inputs/INCAR", "inputs/KPOINTS", "inputs/POSCAR", "outputs/CONTCAR", "outputs/OUTCAR.gz",
          "outputs/vasprun.xml.gz"),
    "3": ("inputs/INCAR", "inputs/KPOINTS", "inputs/POSCAR", "outputs/CONTCAR", "outputs/vasprun.xml.gz"),
}  # fmt: skip


def reference(name: str) -> Path:
    """``tests/data/vasp/ir_h_adsorption/<name>``; the test fails (it does not skip) if a file it reads is missing."""
    ref = IR_H / name
    missing = [str(ref / f) for f in REFERENCE_FILES[name] if not (ref / f).is_file()]
    if missing:
        pytest.fail(f"reference VASP data missing from the repository: {', '.join(missing)}", pytrace=False)
    return ref


# placeholder POTCARs are unknown to pymatgen (and to the Vasprun that custodian's handlers parse): expected
pytestmark = [
    pytest.mark.filterwarnings("ignore:POTCAR data with symbol"),
    pytest.mark.filterwarnings("ignore:No POTCAR file with matching TITEL"),
]

PEROVSKITE_A = 6.29  # Å, pseudo-cubic CsPbI3; only the geometry of the test slab depends on it


def perovskite_slab(layers: int = 3, vacuum: float = 20.0) -> Atoms:
    """2x2 CsPbI3-like (001) slab, PbI2-terminated, bottom layer fixed (atoms interleaved by species)."""
    a = PEROVSKITE_A
    unit = Atoms(
        "PbI3Cs",
        scaled_positions=[(0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5)],
        cell=[a, a, a],
        pbc=True,
    )
    big = unit.repeat((2, 2, (layers + 1) // 2 + 1))
    slab = big[[atom.index for atom in big if atom.position[2] < (layers - 1) * a / 2 + 0.1]]
    slab.cell[2] = [0.0, 0.0, (layers - 1) * a / 2 + vacuum]
    slab.center(axis=2)
    z = slab.positions[:, 2]
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(z < z.min() + 0.1)))
    return slab


@pytest.fixture
def protocol() -> dict[str, Any]:
    return load_protocol("vasp-pbe-d3")


@pytest.fixture
def no_potcar_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pymatgen see no PMG_VASP_PSP_DIR, whatever the machine's configuration."""
    monkeypatch.delitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", raising=False)


def make_dummy_potcars(root: Path, functional_dir: str, symbols: list[str]) -> Path:
    folder = root / functional_dir
    folder.mkdir(parents=True, exist_ok=True)
    for sym in symbols:
        (folder / f"POTCAR.{sym}").write_text(
            f"  PAW_PBE {sym} 01Jan2000\n 1.0\n parameters from PSCTR are:\n   VRHFIN ={sym}: placeholder\n"
            f"   LEXCH  = PE\n   TITEL  = PAW_PBE {sym} 01Jan2000\n"
            "   POMASS =    1.000; ZVAL   =    1.000    mass and valenz\n"
            " END of PSCTR-controll parameters\n PLACEHOLDER for ligbind tests, not a pseudopotential\n"
            " 0.0 0.0 0.0 0.0\nEnd of Dataset\n"
        )
    return root


@pytest.fixture
def dummy_psp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_dummy_potcars(tmp_path / "psp", "POT_GGA_PAW_PBE", ["Ir", "H"])
    monkeypatch.setitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", str(root))
    return root


def ir_protocol(ref: Path, **incar: Any) -> dict[str, Any]:
    """vasp-pbe-d3 overridden to the reference setup (RPBE, its INCAR, mesh and PBE POTCARs)."""
    base = load_protocol("vasp-pbe-d3")
    vasp = reference_incar_overrides(ref, base["vasp"]["incar"])
    vasp["incar"].update(incar)
    vasp.update(potcars={"Ir": "Ir", "H": "H"}, potcar_functional="PBE")
    return load_protocol(base, {"vasp": vasp})


def reference_vasprun(ref: Path) -> Vasprun:
    return Vasprun(
        str(ref / "outputs" / "vasprun.xml.gz"), parse_dos=False, parse_eigen=False, parse_potcar_file=False
    )


# ------------------------------------------------------------------------------------------ test data


def test_reference_data_are_in_the_repository(tmp_path: Path) -> None:
    """Every file the tests read is in tests/data (a missing one fails), and the data stay small."""
    files = [reference(name) / f for name, names in REFERENCE_FILES.items() for f in names]
    assert sum(f.stat().st_size for f in files) < 2_000_000
    # the fake runner refuses a reference without its outputs instead of faking an empty run
    shutil.copytree(reference("3") / "inputs", tmp_path / "inputs")
    with pytest.raises(FileNotFoundError, match=r"outputs/vasprun\.xml"):
        FakeVaspJob(tmp_path)


# ------------------------------------------------------------------------------------------ inputs


def test_slab_inputs(tmp_path: Path, protocol: dict[str, Any]) -> None:
    slab = perovskite_slab()
    assert classify_structure(slab) == "slab"
    directory = write_vasp_inputs(slab, protocol, tmp_path / "slab")

    incar = Incar.from_file(directory / "INCAR")
    assert incar["ENCUT"] == 400
    assert incar["EDIFF"] == pytest.approx(1e-5)
    assert incar["EDIFFG"] == pytest.approx(-0.01)
    assert incar["IVDW"] == 11
    assert incar["ISIF"] == 2
    assert incar["LDIPOL"] is True
    assert incar["IDIPOL"] == 3
    # slab centred in the cell -> dipole centre at c = 0.5
    assert incar["DIPOL"] == pytest.approx([0.5, 0.5, 0.5], abs=1e-6)
    # exactly the protocol's keys: no MP defaults
    expected = {k.upper() for k in protocol["vasp"]["incar"]} | {"LDIPOL", "IDIPOL", "DIPOL"}
    assert set(incar) == expected
    assert incar["ISPIN"] == 1
    for key in ("MAGMOM", "LASPH", "LMAXMIX", "LORBIT", "NELM"):
        assert key not in incar

    kpoints = Kpoints.from_file(directory / "KPOINTS")
    assert kpoints.style == Kpoints.supported_modes.Gamma
    assert list(kpoints.kpts[0]) == [2, 2, 1]

    assert (directory / "POTCAR.spec").read_text().split() == ["Pb_d", "I", "Cs_sv"]
    assert not (directory / "POTCAR").exists()

    poscar = Poscar.from_file(directory / "POSCAR")
    assert poscar.site_symbols == ["Pb", "I", "Cs"]
    z = poscar.structure.cart_coords[:, 2]
    bottom = z < z.min() + 0.1
    flags = np.asarray(poscar.selective_dynamics)
    assert bottom.sum() == 12  # 2x2 PbI2 layer: 4 Pb + 8 I
    assert np.all(flags[bottom] == [False, False, False])
    assert np.all(flags[~bottom] == [True, True, True])
    assert "Selective dynamics" in (directory / "POSCAR").read_text()

    record = json.loads((directory / RECORD_FILE).read_text())
    assert record["potcar"] == {"symbols": ["Pb_d", "I", "Cs_sv"], "functional": "PBE_54"}
    assert record["protocol"]["vasp"]["incar"]["ENCUT"] == 400
    assert record["structure_kind"] == "slab"
    # POSCAR atom k is input atom sort_order[k]
    order = record["sort_order"]
    assert [slab[i].symbol for i in order] == [str(s.specie) for s in poscar.structure]
    assert np.allclose(slab.positions[order], poscar.structure.cart_coords)


def test_input_set_is_a_pymatgen_set(protocol: dict[str, Any]) -> None:
    from pymatgen.io.vasp.sets import VaspInputSet

    vis = vasp_input_set(perovskite_slab(), protocol)
    assert isinstance(vis, VaspInputSet)
    assert vis.potcar_symbols == ["Pb_d", "I", "Cs_sv"]
    assert vis.potcar_functional == "PBE_54"
    # is_slab=False on a slab geometry means periodic bulk settings, which need bulk_kpoints
    with pytest.raises(LigbindError, match="bulk_kpoints"):
        vasp_input_set(perovskite_slab(), protocol, is_slab=False)
    # a crystal (a passivation reference) is refused before any work by the check every calculation passes
    from ligbind.analysis.passivation import reference_structure
    from ligbind.calculators.vasp import BACKEND

    with pytest.raises(
        LigbindError, match=r"reference:KBr\(rocksalt\) is a bulk crystal.*vasp\.bulk_kpoints"
    ):
        BACKEND.check_input(reference_structure("KBr"), protocol)
    BACKEND.check_input(perovskite_slab(), protocol)  # a slab passes


def test_molecule_in_a_box(tmp_path: Path, protocol: dict[str, Any]) -> None:
    mol = molecule("CH3CONH2")
    mol.center(vacuum=7.0)
    assert classify_structure(mol) == "molecule"
    directory = write_vasp_inputs(mol, protocol, tmp_path / "mol")
    incar = Incar.from_file(directory / "INCAR")
    assert not {"LDIPOL", "IDIPOL", "DIPOL"} & set(incar)
    assert set(incar) == {k.upper() for k in protocol["vasp"]["incar"]}
    kpoints = Kpoints.from_file(directory / "KPOINTS")
    assert kpoints.style == Kpoints.supported_modes.Gamma
    assert list(kpoints.kpts[0]) == [1, 1, 1]
    assert sorted((directory / "POTCAR.spec").read_text().split()) == ["C", "H", "N", "O"]
    assert "Selective dynamics" not in (directory / "POSCAR").read_text()


def test_geometry_errors(protocol: dict[str, Any]) -> None:
    with pytest.raises(LigbindError, match="box"):
        classify_structure(molecule("H2O"))  # no cell
    slab = perovskite_slab()
    slab.cell[2] = [0, 0, PEROVSKITE_A]  # no vacuum any more
    assert classify_structure(slab) == "bulk"
    wire = perovskite_slab()
    wire.cell[0] = [30.0, 0, 0]
    with pytest.raises(LigbindError, match="vacuum along a,c"):
        classify_structure(wire)
    gold = Atoms("Au", cell=[20, 20, 20], pbc=True)
    with pytest.raises(LigbindError, match="no POTCAR chosen for Au"):
        vasp_input_set(gold, protocol)


def test_dry_run_needs_no_potcars(tmp_path: Path, protocol: dict[str, Any], no_potcar_dir: None) -> None:
    outcome = run_vasp(perovskite_slab(), protocol, tmp_path / "dry", dry_run=True)
    assert isinstance(outcome, VaspOutcome)
    assert outcome.status == "dry-run"
    assert outcome.energy is None and not outcome.converged
    assert outcome.potcar_spec == ["Pb_d", "I", "Cs_sv"]
    assert outcome.incar["ENCUT"] == 400
    names = {p.name for p in (tmp_path / "dry").iterdir()}
    assert names == {"INCAR", "KPOINTS", "POSCAR", "POTCAR.spec", RECORD_FILE}


# ------------------------------------------------------------------------------------------ POTCAR check


def test_missing_potcar_directory(tmp_path: Path, protocol: dict[str, Any], no_potcar_dir: None) -> None:
    target = tmp_path / "calc"
    with pytest.raises(LigbindError, match="missing POTCAR directory: set PMG_VASP_PSP_DIR") as err:
        run_vasp(
            perovskite_slab(), protocol, target, vasp_job_factory=lambda cmd: pytest.fail("must not run")
        )
    assert "\n" not in str(err.value)
    assert not target.exists()  # checked before anything is written
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(LigbindError, match="POTCAR"):
        run_vasp(perovskite_slab(), protocol, existing)
    assert list(existing.iterdir()) == []
    with pytest.raises(LigbindError, match="POTCAR"):
        write_vasp_inputs(perovskite_slab(), protocol, tmp_path / "w", potcar_spec=False)
    assert not (tmp_path / "w").exists()


def test_missing_potcar_files(
    tmp_path: Path, protocol: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_dummy_potcars(tmp_path / "psp", "POT_GGA_PAW_PBE_54", ["I"])
    monkeypatch.setitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", str(root))
    with pytest.raises(LigbindError, match=r"missing POTCAR files for PBE_54 .*: Cs_sv, Pb_d") as err:
        check_potcars(protocol, ["Cs", "Pb", "I", "I"])
    assert "\n" not in str(err.value)
    monkeypatch.setitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(LigbindError, match="missing POTCAR directory: PMG_VASP_PSP_DIR=.*does not exist"):
        check_potcars(protocol, ["I"])


# ------------------------------------------------------------------------------------------ fake runs


@pytest.mark.parametrize(("name", "n_atoms"), [("2", 4), ("3", 17)])
def test_fake_run_through_custodian(tmp_path: Path, dummy_psp_dir: Path, name: str, n_atoms: int) -> None:
    ref = reference(name)
    atoms = read(ref / "inputs" / "POSCAR", format="vasp")
    protocol = ir_protocol(ref)
    jobs: list[FakeVaspJob] = []

    def factory(cmd: list[str]) -> FakeVaspJob:
        assert cmd == ["vasp_std"]
        jobs.append(FakeVaspJob(ref))  # checks every reference INCAR key, and no extra ones
        return jobs[-1]

    outcome = run_vasp(atoms, protocol, tmp_path / "run", vasp_job_factory=factory)

    expected = reference_vasprun(ref)
    assert jobs[0].n_runs == 1
    assert (tmp_path / "run" / "POTCAR").is_file()
    log = json.loads((tmp_path / "run" / "custodian.json").read_text())
    assert log[0]["corrections"] == []  # custodian's handlers read the copied outputs and found them fine
    assert outcome.energy == pytest.approx(float(expected.final_energy), abs=1e-8)
    assert outcome.free_energy == pytest.approx(expected.ionic_steps[-1]["e_fr_energy"], abs=1e-8)
    assert outcome.converged is True and outcome.status == "converged"
    assert outcome.converged_electronic == expected.converged_electronic
    assert outcome.converged_ionic == expected.converged_ionic
    assert outcome.n_steps == len(expected.ionic_steps)
    assert outcome.custodian_error is None
    assert len(outcome.atoms) == n_atoms
    assert outcome.atoms.get_potential_energy() == pytest.approx(outcome.energy)
    assert outcome.potcar_spec == (["H", "Ir"] if n_atoms == 17 else ["Ir"])
    assert outcome.incar["ENCUT"] == 400

    # restart-safe: the finished run is read back, not rerun
    again = run_vasp(
        atoms, protocol, tmp_path / "run", vasp_job_factory=lambda cmd: pytest.fail("reran VASP")
    )
    assert again.energy == outcome.energy
    # outputs for other inputs are refused instead of being overwritten
    with pytest.raises(LigbindError, match="other inputs"):
        run_vasp(atoms, ir_protocol(ref, ENCUT=450), tmp_path / "run", vasp_job_factory=factory)


def test_fake_runner_rejects_wrong_incar(tmp_path: Path, dummy_psp_dir: Path) -> None:
    ref = reference("3")
    atoms = read(ref / "inputs" / "POSCAR", format="vasp")
    with pytest.raises(AssertionError, match=r"INCAR ENCUT: generated 520\.0 != reference 400"):
        run_vasp(
            atoms,
            ir_protocol(ref, ENCUT=520),
            tmp_path / "bad",
            vasp_job_factory=lambda cmd: FakeVaspJob(ref),
        )
    # the production protocol (PBE, IVDW, dipole, 2x2x1) is not the reference setup either
    with pytest.raises(AssertionError, match="IVDW") as err:
        run_vasp(
            atoms,
            load_protocol("vasp-pbe-d3", {"vasp": {"potcars": {"Ir": "Ir"}, "potcar_functional": "PBE"}}),
            tmp_path / "bad2",
            vasp_job_factory=lambda cmd: FakeVaspJob(ref),
        )
    assert "KPOINTS" in str(err.value) and "GGA" in str(err.value)
    # fixed atoms differ from the reference's selective dynamics
    atoms.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(AssertionError, match="selective dynamics"):
        run_vasp(atoms, ir_protocol(ref), tmp_path / "bad3", vasp_job_factory=lambda cmd: FakeVaspJob(ref))


@pytest.mark.filterwarnings("ignore:.*is an unconverged VASP run")
def test_unconverged_run_goes_through_custodian_corrections(tmp_path: Path, dummy_psp_dir: Path) -> None:
    """A relaxation that stopped at NSW: custodian's UnconvergedErrorHandler corrects and reruns, then gives up."""
    source = reference("2")
    ref = tmp_path / "ref"
    shutil.copytree(source, ref, copy_function=shutil.copyfile)
    for folder in (ref, ref / "inputs", ref / "outputs"):
        folder.chmod(0o755)  # writable even when the checkout is read-only
    with gzip.open(ref / "outputs" / "vasprun.xml.gz", "rt") as handle:
        text = handle.read()
    n_steps = len(reference_vasprun(source).ionic_steps)
    text, n = re.subn(r'(<i type="int" name="NSW">)\s*\d+', rf"\g<1> {n_steps}", text)
    assert n >= 1
    with gzip.open(ref / "outputs" / "vasprun.xml.gz", "wt") as handle:
        handle.write(text)

    keys = [k for k in Incar.from_file(ref / "inputs" / "INCAR") if k != "IBRION"]  # custodian sets IBRION 1
    jobs: list[FakeVaspJob] = []

    def factory(cmd: list[str]) -> FakeVaspJob:
        jobs.append(FakeVaspJob(ref, check_incar_keys=keys))
        return jobs[-1]

    protocol = load_protocol(ir_protocol(source), {"run": {"max_errors": 2}})
    atoms = read(ref / "inputs" / "POSCAR", format="vasp")
    outcome = run_vasp(atoms, protocol, tmp_path / "run", vasp_job_factory=factory)
    assert jobs[0].n_runs == 2
    assert Incar.from_file(tmp_path / "run" / "INCAR")["IBRION"] == 1
    assert outcome.status == "unconverged" and outcome.converged is False
    assert outcome.converged_electronic is True and outcome.converged_ionic is False
    assert outcome.n_steps == n_steps
    assert "Max errors" in outcome.custodian_error
    assert outcome.energy == pytest.approx(float(reference_vasprun(source).final_energy), abs=1e-8)


# ------------------------------------------------------------------------------------------ real outputs


def test_read_reference_slabs() -> None:
    small = read_vasp_outputs(reference("2") / "outputs")
    large = read_vasp_outputs(reference("3") / "outputs")
    for name, outcome in (("2", small), ("3", large)):
        expected = reference_vasprun(reference(name))
        assert outcome.energy == pytest.approx(float(expected.final_energy), abs=1e-8)
        assert outcome.n_steps == len(expected.ionic_steps)
        assert outcome.converged == expected.converged
        forces = np.asarray(expected.ionic_steps[-1]["forces"])
        assert np.allclose(outcome.atoms.calc.results["forces"], forces)
    assert len(small.atoms) == 4 and len(large.atoms) == 17
    assert small.atoms.constraints == []
    assert large.potcar_spec == ["H", "Ir"]

    # selective dynamics from the vasprun become FixAtoms; fmax only counts free atoms
    poscar = Poscar.from_file(reference("3") / "inputs" / "POSCAR")
    fixed = [i for i, flags in enumerate(poscar.selective_dynamics) if not any(flags)]
    (constraint,) = large.atoms.constraints
    assert isinstance(constraint, FixAtoms)
    assert sorted(constraint.get_indices()) == fixed
    forces = large.atoms.calc.results["forces"]
    free = np.setdiff1d(np.arange(17), fixed)
    assert large.fmax == pytest.approx(np.linalg.norm(forces[free], axis=1).max())
    assert large.fmax < np.linalg.norm(forces, axis=1).max()  # fixed atoms carry larger forces here

    # the adsorbate slab's in-plane cell is 2x2 of the reference slab's
    def area(atoms: Atoms) -> float:
        return float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))

    assert area(large.atoms) / area(small.atoms) == pytest.approx(4.0, abs=1e-3)
    assert classify_structure(small.atoms) == classify_structure(large.atoms) == "slab"


def test_sort_order_is_undone(tmp_path: Path) -> None:
    shutil.copy(reference("3") / "outputs" / "vasprun.xml.gz", tmp_path)
    plain = read_vasp_outputs(tmp_path)
    order = list(range(17))[::-1]  # POSCAR atom k was input atom order[k]
    (tmp_path / RECORD_FILE).write_text(json.dumps({"sort_order": order}))
    restored = read_vasp_outputs(tmp_path)
    for k, i in enumerate(order):
        assert restored.atoms[i].symbol == plain.atoms[k].symbol
        assert np.allclose(restored.atoms[i].position, plain.atoms[k].position)
        assert np.allclose(restored.atoms.calc.results["forces"][i], plain.atoms.calc.results["forces"][k])
    fixed_plain = set(plain.atoms.constraints[0].get_indices())
    assert set(restored.atoms.constraints[0].get_indices()) == {order[k] for k in fixed_plain}
    assert restored.fmax == pytest.approx(plain.fmax)


def test_non_finite_energy(tmp_path: Path) -> None:
    with gzip.open(reference("2") / "outputs" / "vasprun.xml.gz", "rt") as handle:
        text = handle.read()
    last = text.rindex("<calculation>")
    energy = re.compile(r'(<i name="e_(?:fr_energy|wo_entrp|0_energy)">)\s*[-+0-9.Ee]+')
    broken, n = energy.subn(r"\1 NaN", text[last:])
    assert n >= 3
    (tmp_path / "vasprun.xml").write_text(text[:last] + broken)
    with pytest.raises(NonFiniteEnergyError, match="non-finite energy"):
        read_vasp_outputs(tmp_path)


def test_unreadable_outputs(tmp_path: Path) -> None:
    with pytest.raises(LigbindError, match="no vasprun.xml"):
        read_vasp_outputs(tmp_path)
    (tmp_path / "vasprun.xml").write_text('<?xml version="1.0"?>\n<modeling>\n <generator>\n')
    with pytest.raises(LigbindError, match="incomplete or corrupt"):
        read_vasp_outputs(tmp_path)

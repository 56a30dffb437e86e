"""Pb2+–ligand complexes in vacuum: builder, real GPAW (tiny), charge handling, VASP NELECT, CLI, campaign."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from pymatgen.io.vasp import inputs as pmg_inputs
from pymatgen.io.vasp.inputs import Incar

from ligbind.analysis.complexes import complex_flags
from ligbind.builders.complexes import (
    CLASH_H,
    CLASH_HEAVY,
    build_complexes,
    ion_index,
    ion_structure,
    parse_ion,
)
from ligbind.builders.library import resolve_ligand
from ligbind.builders.placement import BOND_LENGTH
from ligbind.calculators import make_calculator
from ligbind.calculators.vasp import write_vasp_inputs
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

# One SCF per structure: loose enough that every relaxation stops at its first step (fmax < 10 eV/Å), so the
# test checks the chain of terms, charges and keys with real GPAW in seconds; serial (no MPI job). The coarse
# grid (h 0.3) is for speed, not accuracy (the preset has h 0.2).
TINY = {"relax": {"fmax": 10.0, "steps": 2}, "run": {"cores": 1}, "gpaw": {"basis": "sz(dzp)", "h": 0.3}}
# GPAW PAW setups' valence electrons (gpaw-setups 24.x, PBE): Pb 5d10 6s2 6p2, C, O, H
GPAW_VALENCE = {"Pb": 14, "C": 4, "O": 6, "H": 1}
# VASP POTCAR ZVALs of the vasp-pbe-d3 choices (PBE.54): Pb_d, C, O, H
ZVAL = {"Pb_d": 14.0, "C": 4.0, "O": 6.0, "H": 1.0}


def test_parse_ion():
    assert parse_ion("Pb2+").charge == 2 and parse_ion("Pb2+").symbol == "Pb"
    assert parse_ion("Br-").charge == -1
    for bad in ("Pb", "Xx2+", "2+", "Pb9+"):
        with pytest.raises(LigbindError):
            parse_ion(bad)


@pytest.mark.parametrize("name", ["acetate", "EDTA"])
def test_chelate_geometry(name):
    """Every anchor said to coordinate sits at its Pb–donor bond length; nothing else is near the ion."""
    entry = resolve_ligand(name)
    built = build_complexes("Pb2+", entry, vacuum=5.0, n_configs=2)
    for atoms in built:
        ion = ion_index(atoms)
        assert atoms[ion].symbol == "Pb" and atoms.info["charge"] == 2 + entry.charge
        sites = json.loads(atoms.info["ion_sites"])
        assert len(sites) == atoms.info["denticity"] >= 1
        coordinated = {s["anchor"] for s in sites}
        d = np.linalg.norm(atoms.positions - atoms.positions[ion], axis=1)
        for a in coordinated:
            assert abs(d[a] - BOND_LENGTH[atoms[a].symbol]) <= 0.35
        for i, atom in enumerate(atoms):
            if i != ion and i not in coordinated:
                assert d[i] >= (CLASH_H if atom.symbol == "H" else CLASH_HEAVY)
        # a box with 5 Å of vacuum on every side
        span = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
        assert np.allclose(atoms.cell.lengths(), span + 10.0, atol=1e-6)
    if name == "acetate":  # the carboxylate chelates with both O
        assert built[0].info["denticity"] == 2
    else:  # EDTA (neutral acid in the library): several of its N/O donors around the ion
        assert built[0].info["denticity"] >= 3


def test_ion_released_flag():
    """A ligand that has moved away from the ion is flagged (built geometry vs one with the ion 6 Å out)."""
    built = build_complexes("Pb2+", resolve_ligand("acetate"), vacuum=5.0, n_configs=1)[0]
    away = built.copy()
    ion = ion_index(away)
    away.positions[ion] += (
        6.0
        * (away.positions[ion] - away.positions[:ion].mean(axis=0))
        / np.linalg.norm(away.positions[ion] - away.positions[:ion].mean(axis=0))
    )
    result = Result("k", "relax", away, 0.0, 0.0, True, 1, 1, {})
    assert "ion-released" in complex_flags(built, result)
    same = Result("k", "relax", built.copy(), 0.0, 0.0, True, 1, 1, {})
    assert complex_flags(built, same) == []


@pytest.mark.slow
def test_pb_acetate_gpaw(tmp_path):
    """Real GPAW: ΔE equals the reaction of the stored terms, and the charges reach GPAW."""
    from ligbind.recipes.complexes import complex_ion

    store = ResultStore(tmp_path / "c.db")
    out = complex_ion("Pb2+", "acetate", "gpaw-complex", n_configs=1, store=store, workdir=tmp_path / "runs",
                      overrides=TINY)  # fmt: skip
    assert out.charge == 1 and out.ion_charge == 2 and out.ligand_charge == -1
    ion, lig = store.get(out.ion_key), store.get(out.ligand_key)
    cx = store.get(out.configs[0]["key"])
    assert (ion.natoms, lig.natoms, cx.natoms) == (1, 7, 8)
    assert (
        cx.data["info"]["charge"] == 1
        and ion.data["info"]["charge"] == 2
        and lig.data["info"]["charge"] == -1
    )
    # hand-assembled reaction of the stored terms: Pb2+ + CH3COO- -> [Pb(CH3COO)]+
    assert out.delta_e == pytest.approx(cx.energy - ion.energy - lig.energy, abs=1e-9)
    # a dication and an anion at ~2.5 Å: Coulomb alone is −2·14.4/2.5 ≈ −11.5 eV; bound by many eV
    assert -20.0 < out.delta_e < -5.0
    # GPAW ran with the charge: its log says so, and the electron count is Σ valence − charge
    text = (tmp_path / "runs" / f"{out.configs[0]['key']}.txt").read_text()
    assert re.search(r"^\s*Charge: 1\.0", text, re.M)
    valence = sum(GPAW_VALENCE[s] for s in cx.toatoms().get_chemical_symbols())
    assert re.search(rf"Valence electrons: {valence}\.0", text)
    # the stored ion energy is that of Pb2+: a fresh calculator recomputes it with charge +2, while neutral Pb
    # lies lower by the first two ionisation energies of Pb (7.4 + 15.0 eV in experiment)
    protocol = load_protocol("gpaw-complex", TINY)
    atoms = ion.toatoms()
    atoms.info["charge"] = 2
    from ligbind.calculators import backend_of

    work = backend_of(protocol).prepare(atoms, protocol)
    work.calc = make_calculator(protocol, atoms=work, directory=tmp_path / "sp", label="pb2")
    assert work.get_potential_energy() == pytest.approx(ion.energy, abs=1e-4)
    neutral = work.copy()
    neutral.info["charge"] = 0
    neutral.calc = make_calculator(protocol, atoms=neutral, directory=tmp_path / "sp", label="pb0")
    assert 15.0 < ion.energy - neutral.get_potential_energy() < 30.0
    # counterpoise (gpaw-complex is LCAO): ligand −1 and ion +2 as the fragments, each with the other's ghosts
    assert out.bsse < 0 and out.cp_config == out.best_config
    assert out.delta_e_cp == pytest.approx(out.delta_e - out.bsse)
    (cp,) = store.select(kind="counterpoise")
    assert cp.complex_key == out.configs[0]["key"] and cp.bsse == pytest.approx(out.bsse)
    runs = tmp_path / "runs"
    for term, charge in (("adsorbate-with-slab-ghosts", -1), ("slab-with-adsorbate-ghosts", 2)):
        assert re.search(rf"^\s*Charge: {charge}\.0", (runs / f"{cp.key}.{term}.txt").read_text(), re.M), term


def test_ml_refuses_charged_complex(tmp_path, run_cli):
    proc = run_cli(
        "complex-ion", "--ion", "Pb2+", "--ligand", "acetate", "--protocol", "ml-screen", cwd=tmp_path
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot treat charged systems" in lines[0] and "chgnet" in lines[0]
    assert list(tmp_path.iterdir()) == []


def _potcars(root: Path) -> Path:
    """Placeholder POTCARs (a parsable header, no pseudopotential) with the ZVALs of the real ones."""
    from pymatgen.io.vasp.inputs import PotcarSingle

    functional = load_protocol("vasp-pbe-d3")["vasp"]["potcar_functional"]
    folder = root / PotcarSingle.functional_dir[functional]
    folder.mkdir(parents=True)
    for sym, zval in ZVAL.items():
        (folder / f"POTCAR.{sym}").write_text(
            f"  PAW_PBE {sym} 01Jan2000\n {zval}\n parameters from PSCTR are:\n   VRHFIN ={sym}: placeholder\n"
            f"   LEXCH  = PE\n   TITEL  = PAW_PBE {sym} 01Jan2000\n"
            f"   POMASS =    1.000; ZVAL   =    {zval:.3f}    mass and valenz\n"
            " END of PSCTR-controll parameters\n PLACEHOLDER for ligbind tests, not a pseudopotential\n"
            " 0.0 0.0 0.0 0.0\nEnd of Dataset\n"
        )
    return root


def test_vasp_nelect(tmp_path, monkeypatch):
    """NELECT = Σ ZVAL − charge for the charged ion and complex; no NELECT for the neutral-count default."""
    protocol = load_protocol("vasp-pbe-d3")
    monkeypatch.delitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", raising=False)
    cx = build_complexes("Pb2+", resolve_ligand("acetate"), vacuum=5.0, n_configs=1)[0]
    with pytest.raises(
        LigbindError, match="PMG_VASP_PSP_DIR"
    ):  # NELECT needs the ZVALs: refused, not guessed
        write_vasp_inputs(cx, protocol, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    monkeypatch.setitem(pmg_inputs.SETTINGS, "PMG_VASP_PSP_DIR", str(_potcars(tmp_path / "psp")))
    potcar = {"Pb": "Pb_d", "C": "C", "O": "O", "H": "H"}
    for atoms, charge in ((cx, 1), (ion_structure(parse_ion("Pb2+"), 5.0), 2)):
        zval = sum(ZVAL[potcar[s]] for s in atoms.get_chemical_symbols())
        incar = Incar.from_file(write_vasp_inputs(atoms, protocol, tmp_path / f"q{charge}") / "INCAR")
        assert incar["NELECT"] == pytest.approx(zval - charge)
        # a charged molecule in a periodic box: monopole and dipole corrections about its centre
        assert incar["IDIPOL"] == 4 and incar["LMONO"] is True and incar["LDIPOL"] is True
        assert incar["DIPOL"] == pytest.approx(
            atoms.cell.scaled_positions(atoms.positions).mean(axis=0), abs=1e-5
        )
    neutral = cx.copy()
    neutral.info["charge"] = 0
    incar = Incar.from_file(write_vasp_inputs(neutral, protocol, tmp_path / "q0") / "INCAR")
    assert "NELECT" not in incar and "LMONO" not in incar


def test_complex_ion_vasp_dry_run(tmp_path, run_cli):
    root = _potcars(tmp_path / "psp")
    proc = run_cli("complex-ion", "--ligand", "acetate", "--protocol", "vasp-pbe-d3", "--dry-run", "--configs",
                   "1", "--json", cwd=tmp_path, env={"PMG_VASP_PSP_DIR": str(root)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = [Path(tmp_path / d) for d in json.loads(proc.stdout)["written"]]
    assert len(written) == 3  # ion, ligand, one complex
    nelect = [Incar.from_file(d / "INCAR").get("NELECT") for d in written]
    assert nelect == [pytest.approx(12.0), pytest.approx(24.0), pytest.approx(36.0)]
    assert not (tmp_path / "ligbind.db").exists()


CAMPAIGN = """
name: cx-mini
protocol: ml-screen
overrides: {relax: {fmax: 10.0, steps: 2}}
ligands: [methylamine]
configs: 1
compute:
  complexes:
    ion: Pb2+
    protocol: gpaw-complex
    overrides: {relax: {fmax: 10.0, steps: 2}, run: {cores: 1}, gpaw: {basis: sz(dzp), h: 0.3}}
    ligands: [acetate]
    configs: 1
"""


@pytest.mark.slow
def test_campaign_fireworks_complexes(tmp_path, monkeypatch):
    """The FireWorks path on the embedded store: ion, ligand, complex, analysis, then complexes.csv|md."""
    import pandas as pd

    from ligbind.engine.campaign import campaign_results
    from ligbind.engine.fireworks import run, screen

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cx.yaml").write_text(CAMPAIGN)
    added = screen("cx.yaml")
    assert added["added"] > 0
    out = run("cx.yaml", progress=False, workers=1)
    assert out["failed"] == 0, out
    paths = campaign_results("cx.yaml")
    df = pd.read_csv(paths["complexes_csv"])
    assert list(df["ligand"]) == ["acetate"] and list(df["charge"]) == [1]
    store = ResultStore(tmp_path / "runs" / "cx-mini" / "ligbind.db")
    row = next(store.select(kind="complexation"))
    outcome = row.data["outcome"]
    terms = [store.get(outcome[k]).energy for k in ("ion_key", "ligand_key")]
    e_cx = store.get(outcome["configs"][0]["key"]).energy
    assert df["delta_e"][0] == pytest.approx(e_cx - sum(terms), abs=1e-3)
    assert "charge" in paths["complexes_md"].read_text()
    # each complex's counterpoise ran as its own step and corrects ΔE in the table
    (cp,) = store.select(kind="counterpoise")
    assert cp.bsse < 0 and df["bsse"][0] == pytest.approx(cp.bsse, abs=1e-4)
    assert df["delta_e_cp"][0] == pytest.approx(df["delta_e"][0] - cp.bsse, abs=1e-3)


def test_campaign_refuses_ml_complexes(tmp_path):
    from ligbind.engine.campaign import load_campaign

    bad = re.sub(r"protocol: gpaw-complex\n\s*overrides: .*\n", "protocol: ml-screen\n", CAMPAIGN)
    assert "protocol: ml-screen\n    ligands: [acetate]" in bad
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(LigbindError, match="compute.complexes.protocol: 'ml-screen'.*cannot treat"):
        load_campaign(tmp_path / "bad.yaml")


def test_complexation_energy_balances_charge_and_atoms():
    """ΔE = E(complex) − E(ion) − E(ligand) only when charges and atoms balance."""
    from collections import Counter

    from ligbind.analysis.complexes import complexation_energy
    from ligbind.analysis.energies import EnergyMismatchError, Term

    ion = Term("ion", 20.9, Counter({"Pb": 1}), "p")
    lig = Term("ligand", -30.3, Counter({"C": 2, "H": 3, "O": 2}), "p")
    cx = Term("complex", -25.3, Counter({"Pb": 1, "C": 2, "H": 3, "O": 2}), "p")
    assert complexation_energy(cx, ion, lig, (1, 2, -1)) == pytest.approx(-25.3 - 20.9 + 30.3)
    with pytest.raises(EnergyMismatchError, match="charges do not balance"):
        complexation_energy(cx, ion, lig, (2, 2, -1))
    with pytest.raises(EnergyMismatchError, match="not balanced"):
        complexation_energy(Term("complex", -1.0, Counter({"Pb": 1}), "p"), ion, lig, (1, 2, -1))
    with pytest.raises(EnergyMismatchError, match="different protocols"):
        complexation_energy(cx, Term("ion", 20.9, Counter({"Pb": 1}), "q"), lig, (1, 2, -1))

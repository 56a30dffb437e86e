"""SevenNet backend (ml-screen-7net, ml-screen-7net-l3i5): presets, validation, real single points and a relaxation.

Expected values come from outside the code under test:
- the slab's energy per atom from PBE elemental energies and experimental formation enthalpies (below);
- CHGNet on the same slab, once the MP2020 iodine correction that CHGNet learnt is taken out;
- the D3 term from the dftd3 package called directly;
- methylamine's C-N bond from its experimental (microwave) structure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from dftd3.ase import DFTD3

from ligbind.builders.conformers import ligand_conformers
from ligbind.builders.ligands import resolve_ligand
from ligbind.builders.slab import build_slab
from ligbind.calculators import get_backend, make_calculator
from ligbind.errors import LigbindError
from ligbind.jobs import relax, single_point
from ligbind.protocols import available_protocols, load_protocol, protocol_hash, with_run_settings

PRESETS = {"ml-screen-7net": "7net-0", "ml-screen-7net-l3i5": "7net-l3i5"}
MODELS = ("7net-0", "7net-l3i5", "7net-mf-0")


# ------------------------------------------------------------------------------------------ protocols
@pytest.mark.parametrize("name, model", PRESETS.items())
def test_preset_inherits_ml_screen_and_names_its_model(name, model):
    assert name in available_protocols()
    p = load_protocol(name)
    parent = load_protocol("ml-screen")
    assert p["name"] == name and p["parent"] == "ml-screen"
    assert p["backend"] == "sevennet" and p["is_dft"] is False
    assert p["sevennet"] == {"model": model, "modal": None}
    assert "NOT DFT" in p["description"]
    for key in ("dispersion", "relax", "ligand_cell", "prerelax", "slab", "run"):
        assert p[key] == parent[key], key  # everything else comes from ml-screen
    assert protocol_hash(p) != protocol_hash(parent)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "7net-omat"}, "sevennet.model: Input should be '7net-0', '7net-l3i5' or '7net-mf-0'"),
        ({"model": "chgnet"}, "sevennet.model"),
        ({"model": 0}, "sevennet.model"),
        ({"model": "7net-mf-0"}, "sevennet.modal: .*multi-fidelity model: set modal to PBE or R2SCAN"),
        ({"model": "7net-mf-0", "modal": "mpa"}, "sevennet.modal: Input should be 'PBE' or 'R2SCAN'"),
        ({"modal": "PBE"}, "sevennet.modal: .*7net-0 has a single fidelity"),
        ({"modle": "7net-0"}, "unknown protocol setting 'sevennet.modle'"),
    ],
)
def test_bad_sevennet_settings_are_refused_with_one_line(settings, message):
    with pytest.raises(LigbindError, match=message) as info:
        load_protocol("ml-screen-7net", {"sevennet": settings})
    text = str(info.value)
    assert text.startswith("protocol 'ml-screen-7net': ") and "\n" not in text


def test_multi_fidelity_model_with_its_modal_is_accepted():
    p = load_protocol("ml-screen-7net", {"sevennet": {"model": "7net-mf-0", "modal": "PBE"}})
    assert p["sevennet"] == {"model": "7net-mf-0", "modal": "PBE"}


def test_backend_is_registered_not_dft_and_neutral_only():
    backend = get_backend("sevennet")
    assert type(backend).__name__ == "SevenNetBackend"
    assert backend.name == "sevennet" and backend.section == "sevennet"
    assert backend.is_dft is False and backend.supports_charge is False and not backend.runs_own_optimizer
    assert backend.parallel_runs


def test_every_allowed_model_ships_in_the_wheel():
    """Nothing may download at run time: each model the schema accepts is a file inside the sevenn package."""
    import sevenn

    from ligbind.calculators.sevennet import SevenNetSettings, weights_path

    allowed = SevenNetSettings.model_fields["model"].annotation.__args__
    assert set(allowed) == set(MODELS)
    package = Path(sevenn.__file__).parent
    for model in allowed:
        path = weights_path(model)
        assert path.is_file() and package in path.parents and path.stat().st_size > 1e6, model


# ------------------------------------------------------------------------------------------ single points
@pytest.fixture(scope="module")
def slab() -> Atoms:
    return build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)


@pytest.fixture(scope="module")
def points(slab, tmp_path_factory):
    """The slab with ml-screen-7net, with and without D3 (one model load, two force calls)."""
    work = tmp_path_factory.mktemp("sp")
    with_d3 = single_point(slab, "ml-screen-7net", workdir=work)
    no_d3 = single_point(
        slab, load_protocol("ml-screen-7net", {"dispersion": {"method": "none"}}), workdir=work
    )
    return with_d3, no_d3


@pytest.mark.slow
def test_single_point_is_finite_with_forces_per_atom(points, slab):
    for r in points:
        assert r.kind == "single_point" and r.force_calls == 1 and r.converged
        assert math.isfinite(r.energy)
        forces = r.atoms.get_forces()
        assert forces.shape == (len(slab), 3) == (32, 3)
        assert np.all(np.isfinite(forces))
        assert np.abs(forces).max() < 5.0  # a built slab at bulk positions: no atom is squeezed
        fixed = slab.constraints[0].index
        assert len(fixed) and not forces[fixed].any()  # the bottom layer is held (FixAtoms)


@pytest.mark.slow
def test_slab_energy_per_atom_from_elements_and_formation_enthalpies(points, slab):
    """PBE (VASP, MP) elemental energies: Cs -0.86, Pb -3.70, I -1.52 eV/atom (bcc Cs, fcc Pb, solid I2);
    experimental formation enthalpies: CsI -3.59 eV, PbI2 -1.81 eV per formula unit. The slab Cs4Pb8I20 is
    4 CsI + 8 PbI2: (4(-0.86) + 8(-3.70) + 20(-1.52) + 4(-3.59) + 8(-1.81)) / 32 = -2.88 eV/atom, less the
    surface cost and PBE's underbinding (a few 0.1 eV per formula unit): about -2.8 eV/atom."""
    no_d3 = points[1]
    assert slab.get_chemical_formula() == "Cs4I20Pb8"
    assert -3.1 < no_d3.energy / len(slab) < -2.5


@pytest.mark.slow
def test_slab_energy_matches_chgnet_once_its_iodine_correction_is_removed(points, slab, tmp_path):
    """Both potentials are fitted to the same PBE data (MPtrj), but CHGNet learnt the MP2020-corrected energies,
    -0.379 eV per I atom (pymatgen's MP2020Compatibility anion correction), and SevenNet the raw ones."""
    chgnet = single_point(
        slab, load_protocol("ml-screen", {"dispersion": {"method": "none"}}), workdir=tmp_path
    )
    n_iodine = slab.get_chemical_symbols().count("I")
    chgnet_raw = chgnet.energy + 0.379 * n_iodine
    assert abs(points[1].energy - chgnet_raw) / len(slab) < 0.15


@pytest.mark.slow
def test_d3_term_is_the_dftd3_value(points, slab):
    with_d3, no_d3 = points
    d3 = slab.copy()
    d3.calc = DFTD3(method="pbe", damping="d3bj")
    expected = d3.get_potential_energy()
    assert expected < -1.0  # heavy atoms: D3 binds the slab by eV, so the test can tell it is there
    assert with_d3.energy - no_d3.energy == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(
        with_d3.atoms.get_forces() - no_d3.atoms.get_forces(), d3.get_forces(), atol=1e-5
    )


@pytest.mark.slow
def test_model_is_loaded_once_and_threads_come_from_the_run_settings(slab):
    protocol = load_protocol("ml-screen-7net")
    a = make_calculator(protocol, atoms=slab)
    b = make_calculator(with_run_settings(protocol, threads=2), atoms=slab)
    try:
        assert torch.get_num_threads() == 2
        seven_a, seven_b = a.mixer.calcs[0], b.mixer.calcs[0]  # SumCalculator([SevenNet, D3])
        assert seven_a.model is seven_b.model
        assert str(seven_a.device) == "cpu"
    finally:
        make_calculator(protocol, atoms=slab)
    assert torch.get_num_threads() == 1
    # periodic system, no external field: the unconstrained forces (model + D3) sum to zero (float32 model)
    atoms = slab.copy()
    atoms.calc = a
    assert np.abs(atoms.get_forces(apply_constraint=False).sum(axis=0)).max() < 1e-3


def test_charged_system_and_unknown_element_are_refused(slab, tmp_path):
    charged = slab.copy()
    charged.info["charge"] = 1
    with pytest.raises(LigbindError, match="cannot treat a charged system"):
        single_point(charged, "ml-screen-7net", workdir=tmp_path)
    polonium = Atoms("Po", cell=[8, 8, 8], pbc=True)  # not in SevenNet-0's 89 elements
    with pytest.raises(LigbindError, match="SevenNet 7net-0 knows no Po"):
        single_point(polonium, "ml-screen-7net", workdir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_r2scan_fidelity_needs_r2scan_dispersion(slab, tmp_path):
    protocol = load_protocol("ml-screen-7net", {"sevennet": {"model": "7net-mf-0", "modal": "R2SCAN"}})
    with pytest.raises(LigbindError, match="set dispersion.xc to r2scan"):
        single_point(slab, protocol, workdir=tmp_path)


# ------------------------------------------------------------------------------------------ relaxation
@pytest.mark.slow
def test_methylamine_relaxes_in_a_box(tmp_path):
    mol = ligand_conformers(resolve_ligand("methylamine"), n_conformers=1)[0]
    mol.center(vacuum=6.0)
    mol.pbc = True
    result = relax(mol, "ml-screen-7net", workdir=tmp_path)
    assert result.converged and result.status == "converged"
    assert result.fmax <= 0.05 and 0 < result.n_steps < 100
    assert math.isfinite(result.energy)
    atoms = result.atoms
    c = atoms.get_chemical_symbols().index("C")
    n = atoms.get_chemical_symbols().index("N")
    assert 1.43 < atoms.get_distance(c, n, mic=True) < 1.51  # experiment: 1.471 Å
    assert os.path.exists(tmp_path / f"{result.key}.traj")

"""BFGS seeded with a cheap protocol's Hessian (``run.hessian``): fewer steps to the same minimum, recorded with
the result, refused where it cannot apply (real CHGNet + D3 on the 2x2 CsPbI3 slab)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ligbind.builders.slab import build_slab
from ligbind.errors import LigbindError
from ligbind.jobs import relax, seed_hessian
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore

SEEDED = {"run": {"hessian": "ml-screen"}}


@pytest.fixture(scope="module")
def rattled_slab():
    slab = build_slab()
    slab.rattle(0.1, seed=1)
    slab.info["label"] = "slab"
    return slab


def test_seeded_relaxation_takes_fewer_steps_to_the_same_minimum(rattled_slab, tmp_path):
    plain = relax(rattled_slab, "ml-screen", store=ResultStore(tmp_path / "a.db"), workdir=tmp_path / "a")
    store = ResultStore(tmp_path / "b.db")
    seeded = relax(rattled_slab, load_protocol("ml-screen", SEEDED), store=store, workdir=tmp_path / "b")
    assert plain.converged and seeded.converged
    assert seeded.key == plain.key  # a run-time setting: same calculation, same key
    print(plain.n_steps, seeded.n_steps, plain.energy, seeded.energy)
    assert seeded.n_steps * 2 <= plain.n_steps
    assert abs(seeded.energy - plain.energy) < 0.01
    info = store.get(seeded.key).data["hessian"]
    assert (
        info["protocol"] == "ml-screen" and info["force_calls"] == 1 + 6 * 20
    )  # start, and 20 free atoms ± x, y, z
    assert info["max_eigenvalue"] > info["floor"]
    assert not list((tmp_path / "b").glob("*.hessian.*")) and not list((tmp_path / "b").glob("*.vib"))


def test_resumed_relaxation_keeps_the_optimizer_state(rattled_slab, tmp_path):
    """Once BFGS has written its own restart file, no Hessian is computed again; the record is kept."""
    protocol = load_protocol("ml-screen", SEEDED)
    key = "relax-test"
    first = seed_hessian(rattled_slab, protocol, key, tmp_path)
    assert first["force_calls"] > 0 and (tmp_path / f"{key}.hessian.npy").exists()
    (tmp_path / f"{key}.opt.json").write_text(json.dumps([]))
    assert seed_hessian(rattled_slab, protocol, key, tmp_path) == first


def test_molecules_keep_the_default_hessian(slab_2x2, tmp_path):
    """A ligand in its box has no periodic framework: nothing computed, BFGS starts from alpha·I; on a complex
    only the slab's free atoms get the seeded block."""
    from ligbind.builders.ligands import resolve_ligand
    from ligbind.recipes import ligand_structure

    protocol = load_protocol("ml-screen", SEEDED)
    ligand = ligand_structure(resolve_ligand("methylamine"), slab_2x2, protocol)
    assert seed_hessian(ligand, protocol, "relax-ligand", tmp_path) is None
    assert not list(tmp_path.iterdir())
    complex_ = slab_2x2.copy()
    molecule = ligand.copy()
    molecule.set_tags(1)
    molecule.cell = complex_.cell
    molecule.positions += [0, 0, complex_.positions[:, 2].max() + 2.5 - molecule.positions[:, 2].min()]
    complex_ += molecule
    info = seed_hessian(complex_, protocol, "relax-complex", tmp_path)
    assert info["force_calls"] == 1 + 6 * 20  # the 20 free slab atoms only
    hessian = np.load(tmp_path / "relax-complex.hessian.npy")
    alpha = hessian[-1, -1]
    assert alpha == 70.0 and np.count_nonzero(hessian[-3 * len(molecule) :]) == 3 * len(molecule)
    # run.hessian_molecules (the verification path): the molecule's atoms join the seeded block
    both = load_protocol("ml-screen", {"run": {"hessian": "ml-screen", "hessian_molecules": True}})
    info = seed_hessian(complex_, both, "relax-both", tmp_path)
    assert info["force_calls"] == 1 + 6 * (20 + len(molecule)) and info["atoms"] == 20 + len(molecule)
    block = np.load(tmp_path / "relax-both.hessian.npy")[-3 * len(molecule) :, -3 * len(molecule) :]
    assert np.count_nonzero(block - np.diag(np.diag(block))) > 0  # couplings, not alpha·I
    # ... and only on a slab: a ligand in its box still has nothing to seed
    assert seed_hessian(ligand, both, "relax-ligand-both", tmp_path) is None


def test_adsorbed_ions_get_the_seeded_hessian(slab_2x2, tmp_path):
    """A K–Br passivation unit (two ions, tag 1) has no torsions: its atoms join the seeded block, which gives the
    K+ a curvature of a few eV/Å² instead of alpha (70), with which it barely moved under DFT."""
    from ligbind.builders.passivation import passivate

    passivated = passivate(slab_2x2, "hollow", 1, max_arrangements=1)[0]
    ions = np.flatnonzero(passivated.get_tags() > 0)
    assert len(ions) == 2
    info = seed_hessian(passivated, load_protocol("ml-screen", SEEDED), "relax-kbr", tmp_path)
    assert info["atoms"] == 20 + 2 and info["force_calls"] == 1 + 6 * 22
    hessian = np.load(tmp_path / "relax-kbr.hessian.npy")
    for i in ions:
        block = hessian[3 * i : 3 * i + 3, 3 * i : 3 * i + 3]
        assert np.all(np.linalg.eigvalsh(block) < 20.0)  # not alpha·I


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run": {"hessian": "nope"}}, "unknown protocol 'nope'"),
        ({"run": {"hessian": "ml-screen"}, "relax": {"optimizer": "FIRE"}}, "run.hessian seeds ASE's BFGS"),
        ({"run": {"hessian_floor": 0}}, "hessian_floor"),
    ],
)
def test_bad_hessian_settings_are_refused(overrides, message):
    with pytest.raises(LigbindError, match=message):
        load_protocol("ml-screen", overrides)

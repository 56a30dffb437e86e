"""Energy definitions as balanced reactions of Terms: arithmetic, sign, supercell scaling and every refusal."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase import Atoms

from ligbind.analysis.energies import (
    EnergyMismatchError,
    Term,
    binding_energy,
    coadsorption_energy,
    delta_frenkel,
    exchange_binding_energy,
    frenkel_energy,
    interaction_energy,
    lowest,
    reaction_energy,
    supercell_multiple,
)
from ligbind.builders.slab import build_slab
from ligbind.errors import LigbindError

P = "protocol-hash-A"
A = 6.3  # Å, pseudo-cubic in-plane lattice
HEIGHT = 30.0  # Å, cell height (slab + vacuum)

SLAB_1X1 = Counter({"Cs": 1, "Pb": 2, "I": 5})
METHYLAMINE = Counter({"C": 1, "N": 1, "H": 5})
ACETIC_ACID = Counter({"C": 2, "H": 4, "O": 2})
HI = Counter({"H": 1, "I": 1})


def cell(nx: float, ny: float, height: float = HEIGHT) -> np.ndarray:
    return np.diag([nx * A, ny * A, height])


def times(comp: Counter, n: int) -> Counter:
    return Counter({k: v * n for k, v in comp.items()})


def slab(n: int = 1, energy: float = -20.0, **kw) -> Term:
    return Term(
        "slab", energy, times(SLAB_1X1, n * n), kw.pop("protocol", P), kw.pop("cell", cell(n, n)), **kw
    )


def mol(label: str, comp: Counter, energy: float, **kw) -> Term:
    return Term(label, energy, Counter(comp), kw.pop("protocol", P), None, **kw)


def complex_(n: int, energy: float, *ligands: Counter, **kw) -> Term:
    comp = times(SLAB_1X1, n * n)
    for lig in ligands:
        comp += lig
    return Term("complex", energy, comp, kw.pop("protocol", P), kw.pop("cell", cell(n, n)), **kw)


# ----------------------------------------------------------------------------------------------- binding
def test_binding_energy_arithmetic_and_sign():
    eb = binding_energy(complex_(1, -57.5, METHYLAMINE), mol("ligand", METHYLAMINE, -36.75), slab(1, -20.0))
    assert eb == pytest.approx(-57.5 + 36.75 + 20.0, abs=1e-12)
    assert eb == pytest.approx(-0.75, abs=1e-12)  # negative = binding
    # a complex above the separated fragments is unbound: positive
    assert binding_energy(complex_(1, -56.0, METHYLAMINE), mol("ligand", METHYLAMINE, -36.75), slab(1)) == (
        pytest.approx(0.75, abs=1e-12)
    )


def test_reaction_energy_reports_unit_scales_for_same_cell():
    energy, scales = reaction_energy(
        [complex_(2, -117.0, METHYLAMINE)], [mol("ligand", METHYLAMINE, -36.0), slab(2, -80.0)]
    )
    assert energy == pytest.approx(-1.0, abs=1e-12)
    assert scales == {"ligand": 1.0, "slab": 1.0}


def test_1x1_slab_reference_is_scaled_four_times_for_a_2x2_complex():
    e_slab_1x1 = -20.0
    energy, scales = reaction_energy(
        [complex_(2, 4 * e_slab_1x1 - 36.0 - 0.6, METHYLAMINE)],
        [mol("ligand", METHYLAMINE, -36.0), slab(1, e_slab_1x1)],
    )
    assert scales["slab"] == 4.0 and scales["ligand"] == 1.0
    assert energy == pytest.approx(-0.6, abs=1e-12)
    # the same through binding_energy
    eb = binding_energy(complex_(2, -116.6, METHYLAMINE), mol("ligand", METHYLAMINE, -36.0), slab(1, -20.0))
    assert eb == pytest.approx(-116.6 + 36.0 + 80.0, abs=1e-12)


def test_rectangular_and_rotated_supercells():
    assert supercell_multiple(cell(1, 1), cell(2, 1)) == 2
    assert supercell_multiple(cell(1, 1), cell(3, 2)) == 6
    # √2×√2 R45° cell (the tetragonal in-plane cell) is a 2-fold supercell of the pseudo-cubic one
    rot = np.array([[A, -A, 0], [A, A, 0], [0, 0, HEIGHT]])
    assert supercell_multiple(cell(1, 1), rot) == 2
    # and a 2×2 pseudo-cubic cell is a 2-fold supercell of the rotated one
    assert supercell_multiple(rot, cell(2, 2)) == 2


def test_supercell_scaling_with_real_built_slabs():
    small = build_slab(phase="cubic", size=(1, 1), layers=3, vacuum=12.0)
    big = build_slab(phase="cubic", size=(2, 2), layers=3, vacuum=12.0)
    assert supercell_multiple(small.cell.array, big.cell.array) == 4
    e_small = -21.25
    s = Term.from_atoms("slab", small, e_small, P, periodic_slab=True)
    c = Term.from_atoms("complex", big, 4 * e_small, P, periodic_slab=True)
    assert frenkel_energy(c, s) == pytest.approx(0.0, abs=1e-12)  # same composition after ×4, zero energy


def test_non_integer_supercell_is_refused():
    with pytest.raises(EnergyMismatchError, match="not an integer in-plane supercell"):
        binding_energy(
            Term("complex", -1.0, times(SLAB_1X1, 2) + METHYLAMINE, P, cell(1.5, 1.5)),
            mol("ligand", METHYLAMINE, -36.0),
            slab(1),
        )
    with pytest.raises(EnergyMismatchError):  # larger reference than complex: 1/4 is not an integer
        binding_energy(complex_(1, -57.0, METHYLAMINE), mol("ligand", METHYLAMINE, -36.0), slab(2, -80.0))


def test_different_cell_heights_are_refused():
    with pytest.raises(EnergyMismatchError, match="differ in height"):
        binding_energy(
            complex_(2, -117.0, METHYLAMINE, cell=cell(2, 2, HEIGHT + 1.0)),
            mol("ligand", METHYLAMINE, -36.0),
            slab(2, -80.0),
        )
    # within the tolerance of 0.05 Å it is the same vacuum
    eb = binding_energy(
        complex_(2, -117.0, METHYLAMINE, cell=cell(2, 2, HEIGHT + 0.01)),
        mol("ligand", METHYLAMINE, -36.0),
        slab(2, -80.0),
    )
    assert eb == pytest.approx(-1.0, abs=1e-12)


def test_different_protocols_are_refused_naming_the_terms():
    with pytest.raises(EnergyMismatchError, match="different protocols") as err:
        binding_energy(
            complex_(2, -117.0, METHYLAMINE), mol("ligand", METHYLAMINE, -36.0, protocol="B"), slab(2, -80.0)
        )
    assert "ligand: B" in str(err.value)


def test_unbalanced_composition_is_refused():
    with pytest.raises(EnergyMismatchError, match="not balanced"):
        binding_energy(complex_(2, -117.0, METHYLAMINE), mol("ligand", ACETIC_ACID, -36.0), slab(2, -80.0))
    # a complex that lost an H
    lost_h = complex_(2, -117.0, METHYLAMINE - Counter({"H": 1}))
    with pytest.raises(EnergyMismatchError, match="not balanced"):
        binding_energy(lost_h, mol("ligand", METHYLAMINE, -36.0), slab(2, -80.0))
    # slab scaled by the wrong multiple does not balance either: 2x2 complex built on a 2x1 cell composition
    with pytest.raises(EnergyMismatchError, match="not balanced"):
        binding_energy(
            Term("complex", -1.0, times(SLAB_1X1, 2) + METHYLAMINE, P, cell(2, 2)),
            mol("ligand", METHYLAMINE, -36.0),
            slab(1),
        )


def test_unconverged_terms_are_refused():
    for bad in ("complex", "ligand", "slab"):
        terms = {
            "complex": complex_(2, -117.0, METHYLAMINE, converged=bad != "complex"),
            "ligand": mol("ligand", METHYLAMINE, -36.0, converged=bad != "ligand"),
            "slab": slab(2, -80.0, converged=bad != "slab"),
        }
        with pytest.raises(EnergyMismatchError, match=f"unconverged terms cannot enter an energy: {bad}"):
            binding_energy(terms["complex"], terms["ligand"], terms["slab"])


def test_slab_reactant_without_periodic_product_is_refused():
    with pytest.raises(EnergyMismatchError, match="no periodic counterpart"):
        binding_energy(
            mol("complex", SLAB_1X1 + METHYLAMINE, -57.0), mol("ligand", METHYLAMINE, -36.0), slab(1)
        )


def test_errors_are_ligbind_errors():
    assert issubclass(EnergyMismatchError, LigbindError)


# ---------------------------------------------------------------------------------------------- exchange
def test_exchange_binding_energy():
    # acetic acid + slab → acetate on an iodide site + HI
    acetate_on_slab = times(SLAB_1X1, 4) - Counter({"I": 1}) + Counter({"C": 2, "H": 3, "O": 2})
    c = Term("complex", -110.0, acetate_on_slab, P, cell(2, 2))
    eb = exchange_binding_energy(
        c, mol("byproduct", HI, -3.5), mol("ligand", ACETIC_ACID, -30.0), slab(2, -82.0)
    )
    assert eb == pytest.approx(-110.0 - 3.5 + 30.0 + 82.0, abs=1e-12)
    assert eb == pytest.approx(-1.5, abs=1e-12)
    with pytest.raises(EnergyMismatchError, match="not balanced"):  # forgot the byproduct's H
        exchange_binding_energy(
            c, mol("byproduct", Counter({"I": 1}), -1.0), mol("ligand", ACETIC_ACID, -30.0), slab(2, -82.0)
        )
    with pytest.raises(EnergyMismatchError, match="different protocols"):
        exchange_binding_energy(
            c, mol("byproduct", HI, -3.5, protocol="other"), mol("ligand", ACETIC_ACID, -30.0), slab(2, -82.0)
        )


def test_exchange_with_1x1_reference_slab_scales_the_slab_only():
    acetate_on_slab = times(SLAB_1X1, 4) - Counter({"I": 1}) + Counter({"C": 2, "H": 3, "O": 2})
    c = Term("complex", -110.0, acetate_on_slab, P, cell(2, 2))
    eb = exchange_binding_energy(
        c, mol("byproduct", HI, -3.5), mol("ligand", ACETIC_ACID, -30.0), slab(1, -20.5)
    )
    assert eb == pytest.approx(-110.0 - 3.5 + 30.0 + 4 * 20.5, abs=1e-12)


# ------------------------------------------------------------------------------------------ coadsorption
def test_coadsorption_and_interaction_energy():
    e_slab, e_a, e_b = -80.0, -36.0, -30.0
    eb_a = binding_energy(
        complex_(2, e_slab + e_a - 0.7, METHYLAMINE), mol("A", METHYLAMINE, e_a), slab(2, e_slab)
    )
    eb_b = binding_energy(
        complex_(2, e_slab + e_b - 0.5, ACETIC_ACID), mol("B", ACETIC_ACID, e_b), slab(2, e_slab)
    )
    ab = complex_(2, e_slab + e_a + e_b - 1.45, METHYLAMINE, ACETIC_ACID)
    eb_ab = coadsorption_energy(ab, mol("A", METHYLAMINE, e_a), mol("B", ACETIC_ACID, e_b), slab(2, e_slab))
    assert (eb_a, eb_b, eb_ab) == (pytest.approx(-0.7), pytest.approx(-0.5), pytest.approx(-1.45))
    d_inter = interaction_energy(eb_ab, eb_a, eb_b)
    assert d_inter == pytest.approx(-0.25, abs=1e-9)  # the two ligands stabilise each other
    assert interaction_energy(-1.0, -0.7, -0.5) == pytest.approx(0.2, abs=1e-12)  # repulsion: positive
    with pytest.raises(EnergyMismatchError, match="not balanced"):  # B missing from the complex
        coadsorption_energy(
            complex_(2, -1.0, METHYLAMINE),
            mol("A", METHYLAMINE, e_a),
            mol("B", ACETIC_ACID, e_b),
            slab(2, e_slab),
        )


def test_coadsorption_with_a_1x1_slab_reference():
    ab = complex_(2, -4 * 20.0 - 36.0 - 30.0 - 1.2, METHYLAMINE, ACETIC_ACID)
    eb = coadsorption_energy(ab, mol("A", METHYLAMINE, -36.0), mol("B", ACETIC_ACID, -30.0), slab(1, -20.0))
    assert eb == pytest.approx(-1.2, abs=1e-9)


# ---------------------------------------------------------------------------------------------- Frenkel
def test_frenkel_and_delta_frenkel():
    pristine = slab(2, -80.0)
    defect = Term("defect", -78.6, times(SLAB_1X1, 4), P, cell(2, 2))
    ef_bare = frenkel_energy(defect, pristine)
    assert ef_bare == pytest.approx(1.4, abs=1e-12)

    lig_host = complex_(2, -117.0, METHYLAMINE)
    lig_defect = complex_(2, -115.1, METHYLAMINE)
    ef_lig = frenkel_energy(lig_defect, lig_host)
    assert ef_lig == pytest.approx(1.9, abs=1e-12)
    assert delta_frenkel(ef_lig, ef_bare) == pytest.approx(0.5, abs=1e-12)  # positive: ligand suppresses E_F
    assert delta_frenkel(1.0, 1.4) == pytest.approx(-0.4, abs=1e-12)


def test_frenkel_refuses_vacancy_only_and_other_cells():
    pristine = slab(2, -80.0)
    vacancy_only = Term("defect", -76.0, times(SLAB_1X1, 4) - Counter({"I": 1}), P, cell(2, 2))
    with pytest.raises(EnergyMismatchError, match="not balanced"):
        frenkel_energy(vacancy_only, pristine)
    with pytest.raises(EnergyMismatchError, match="differ in height"):
        frenkel_energy(Term("defect", -78.6, times(SLAB_1X1, 4), P, cell(2, 2, 40.0)), pristine)
    with pytest.raises(EnergyMismatchError, match="unconverged"):
        frenkel_energy(Term("defect", -78.6, times(SLAB_1X1, 4), P, cell(2, 2), converged=False), pristine)


def test_term_from_atoms_records_composition_and_cell_only_for_slabs():
    water = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[10, 10, 10], pbc=True)
    t = Term.from_atoms("ligand", water, np.float32(-14.25), P, periodic_slab=False)
    assert t.composition == Counter({"H": 2, "O": 1}) and t.cell is None
    assert isinstance(t.energy, float) and t.energy == -14.25
    s = Term.from_atoms("slab", water, -1.0, P, periodic_slab=True, converged=False)
    assert np.allclose(s.cell, 10 * np.eye(3)) and s.converged is False
    water.cell[0, 0] = 11.0  # the term keeps its own copy
    assert s.cell[0, 0] == 10.0


def test_lowest_picks_minimum_and_refuses_empty():
    assert lowest({"0": -0.5, "1": -0.9, "2": -0.2}) == ("1", -0.9)
    with pytest.raises(LigbindError, match="no usable configuration"):
        lowest({})

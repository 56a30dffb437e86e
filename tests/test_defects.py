"""Surface iodine Frenkel pairs: composition kept, one halide moved far enough, no overlapping atoms."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import find_mic, get_distances
from ase.neighborlist import neighbor_list

from ligbind.builders.defects import MIN_LIGAND_DISTANCE, MIN_SEPARATION, frenkel_pairs
from ligbind.builders.placement import ligand_indices, place_ligand
from ligbind.builders.slab import HALIDES, build_slab, find_layers
from ligbind.errors import LigbindError


def _close_pairs(atoms: Atoms, cutoff: float = 1.5) -> set[tuple[int, int]]:
    i, j = neighbor_list("ij", atoms, cutoff)
    return {(int(a), int(b)) for a, b in zip(i, j, strict=True)}


def _check_pairs(host: Atoms, pairs: list[Atoms], n_ligand: int = 0) -> None:
    """``n_ligand``: adsorbate atoms the host carries (the interstitial must keep its distance from them)."""
    assert pairs
    assert len(ligand_indices(host)) == n_ligand
    top = set(find_layers(host)[-1].tolist())
    z_top = host.positions[sorted(top), 2].max()
    seen = set()
    host_close = _close_pairs(host)  # covalent X–H / C–N bonds of MA and ligands only
    for d in pairs:
        # same atoms in the same order, same cell, constraints kept
        assert d.get_chemical_symbols() == host.get_chemical_symbols()
        np.testing.assert_array_equal(d.cell.array, host.cell.array)
        np.testing.assert_array_equal(d.get_tags(), host.get_tags())
        assert [c.todict() for c in d.constraints] == [c.todict() for c in host.constraints]
        moved = np.where(np.linalg.norm(d.positions - host.positions, axis=1) > 1e-9)[0]
        assert len(moved) == 1, f"{len(moved)} atoms moved"
        (v,) = moved
        assert d[v].symbol in HALIDES and v in top, "the vacancy is not a surface halide site"
        assert d.info["vacancy_atom"] == v and d.info["defect"] == "frenkel"
        shift = np.linalg.norm(find_mic(d.positions[v] - host.positions[v], d.cell, d.pbc)[0])
        assert shift >= MIN_SEPARATION == 4.0
        assert abs(shift - d.info["separation"]) < 1e-3
        # the interstitial sits on the surface, above the top layer
        assert d.positions[v, 2] > z_top
        # no atoms on top of each other: no new contact below 1.5 Å, and the interstitial halide keeps a
        # physical distance (≥ 2.5 Å) from every other atom
        assert _close_pairs(d) == host_close
        _, dist = get_distances(d.positions[[v]], np.delete(d.positions, v, axis=0), cell=d.cell, pbc=True)
        assert dist.min() >= 2.5, f"interstitial {dist.min():.2f} Å from another atom"
        lig = ligand_indices(d)
        assert len(lig) == n_ligand
        if n_ligand:
            _, dl = get_distances(d.positions[[v]], d.positions[lig], cell=d.cell, pbc=True)
            assert dl.min() >= MIN_LIGAND_DISTANCE
        key = (int(v), tuple(np.round(d.positions[v], 3)))
        assert key not in seen, "the same pair twice"
        seen.add(key)


@pytest.mark.parametrize(
    "material,phase", [("CsPbI3", "tetragonal"), ("CsPbI3", "cubic"), ("MAPbI3", "tetragonal")]
)
def test_frenkel_pairs_on_bare_slabs(material, phase):
    host = build_slab(material, phase, "2x2", layers=3)
    pairs = frenkel_pairs(host, max_pairs=6)
    assert 1 <= len(pairs) <= 6
    _check_pairs(host, pairs)
    assert {p.info["interstitial"] for p in pairs} <= {"atop-Pb", "hollow"}


def test_frenkel_pairs_next_to_a_ligand(slab_2x2):
    host = place_ligand(slab_2x2, "methylamine", n_configs=1)[0]
    pairs = frenkel_pairs(host, max_pairs=4)
    _check_pairs(host, pairs, n_ligand=7)  # CH3NH2
    assert all(p.info["ligand"] == "methylamine" for p in pairs)


def test_frenkel_pairs_on_an_exchange_complex(slab_2x2):
    """The top layer of an X-site exchange complex lacks the exchanged iodide; pairs still enumerate."""
    host = place_ligand(slab_2x2, "KBr", mode="exchange", n_configs=1)[0]
    pairs = frenkel_pairs(host, max_pairs=3)
    _check_pairs(host, pairs, n_ligand=1)  # the Br- on the vacated X site
    br = ligand_indices(host)
    assert all(p.info["vacancy_atom"] not in br for p in pairs)  # the exchanged Br stays


def test_max_pairs_is_respected(slab_2x2):
    assert len(frenkel_pairs(slab_2x2, max_pairs=2)) == 2
    with pytest.raises(LigbindError, match="bad number of Frenkel pairs 0"):
        frenkel_pairs(slab_2x2, max_pairs=0)


def test_frenkel_pairs_need_a_pbi2_surface(slab_2x2):
    slab = slab_2x2
    del slab[find_layers(slab)[-1].tolist()]
    with pytest.raises(LigbindError, match="not PbI2-terminated"):
        frenkel_pairs(slab)


def test_no_two_frenkel_pairs_are_symmetry_images(slab_2x2):
    """Pairs related by a symmetry of the slab are one defect (the 2x2 tilted slab once gave such pairs).

    Checked independently of the code under test: symmetry images have the same multiset of interatomic
    distances."""
    pairs = frenkel_pairs(slab_2x2, max_pairs=4)
    assert len(pairs) == 4  # so that the comparison below covers six couples
    prints = [np.sort(p.get_all_distances(mic=True)[np.triu_indices(len(p), 1)]) for p in pairs]
    for i in range(len(prints)):
        for j in range(i):
            assert np.abs(prints[i] - prints[j]).max() > 0.01, f"pairs {j} and {i} are symmetry images"


@pytest.mark.parametrize("size,expected", [((2, 2), 4), ((4, 4), 16)])
def test_every_hollow_of_the_surface_is_a_candidate(size, expected):
    from ligbind.builders.defects import interstitial_sites
    from ligbind.builders.slab import surface_pb

    slab = build_slab("CsPbI3", size=size)
    hollows = np.array([site for kind, site in interstitial_sites(slab) if kind == "hollow"])
    assert len(hollows) == expected  # one per square of surface Pb, periodic images included
    pb = slab.positions[surface_pb(slab, find_layers(slab))]
    for site in hollows:
        d = np.linalg.norm(find_mic((pb - site) * [1, 1, 0], slab.cell, slab.pbc)[0], axis=1)
        assert np.sort(d)[:4] == pytest.approx(np.full(4, np.sort(d)[:4].mean()), abs=0.5)  # centre of 4 Pb
        assert np.sort(d)[3] < 5.0
    _, dist = get_distances(hollows, cell=slab.cell, pbc=slab.pbc)
    assert dist[np.triu_indices(len(hollows), 1)].min() > 3.0  # all distinct


def test_undo_frenkel_puts_the_halide_back_on_its_site(slab_2x2):
    from ligbind.builders.defects import undo_frenkel

    pair = frenkel_pairs(slab_2x2, max_pairs=1)[0]
    v = pair.info["vacancy_atom"]
    relaxed = pair.copy()
    relaxed.positions += 0.05  # the pair relaxed: every atom somewhere else
    start = undo_frenkel(relaxed, slab_2x2)
    np.testing.assert_allclose(start.positions[v], slab_2x2.positions[v])
    others = np.arange(len(pair)) != v
    np.testing.assert_allclose(start.positions[others], relaxed.positions[others])  # the relaxation is kept
    assert start.get_chemical_symbols() == slab_2x2.get_chemical_symbols()

    # recombined through a neighbour: another halide took the site, the pair is pristine as it is
    taken = pair.copy()
    neighbour = next(i for i in range(len(pair)) if i != v and pair[i].symbol == pair[v].symbol)
    taken.positions[neighbour] = slab_2x2.positions[v] + [0.3, 0, 0]
    np.testing.assert_allclose(undo_frenkel(taken, slab_2x2).positions, taken.positions)

    # not the host's atoms with one moved: nothing to put back
    assert undo_frenkel(pair[:-1], slab_2x2) is None
    no_info = relaxed.copy()
    no_info.info.pop("vacancy_atom")
    assert undo_frenkel(no_info, slab_2x2) is None
    np.testing.assert_allclose(undo_frenkel(no_info, slab_2x2, v).positions, start.positions)  # told which


def test_a_pair_back_on_its_sites_is_recombined_whatever_its_energy(slab_2x2):
    """Recombination is read from the geometry: the moved halide back on its site, or a neighbour in the vacancy
    and the moved halide on the neighbour's site, flag the pair at any E_F; a pair whose vacancy a neighbour
    refilled while the moved halide stays interstitial is a pair (the vacancy moved)."""
    from ligbind.analysis.frenkel import pair_flags, recombined
    from ligbind.jobs import Result

    def flags(atoms: Atoms, ef: float = 0.4, hosts=(slab_2x2,)) -> list[str]:
        return pair_flags(ef, Result("k", "relax", atoms, 0.0, 0.0, True, 1, 1, {}), hosts)

    pair = frenkel_pairs(slab_2x2, max_pairs=1)[0]
    v = pair.info["vacancy_atom"]
    assert not recombined(pair, slab_2x2) and flags(pair) == []
    back = pair.copy()
    back.positions[v] = slab_2x2.positions[v] + [0.4, 0.3, -0.2]  # home again, relaxed a little
    assert recombined(back, slab_2x2) and flags(back) == ["recombined"]
    assert flags(back, ef=-0.3) == ["recombined", "below-pristine"]  # recombined into a lower basin
    neighbour = min(
        (i for i in range(len(pair)) if i != v and pair[i].symbol in HALIDES),
        key=lambda i: find_mic(pair.positions[i] - slab_2x2.positions[v], pair.cell, pair.pbc)[1],
    )
    moved_on = pair.copy()
    moved_on.positions[neighbour] = slab_2x2.positions[v]  # the neighbour fills the vacancy ...
    assert not recombined(moved_on, slab_2x2)  # ... the vacancy moved: still a pair
    moved_on.positions[v] = slab_2x2.positions[
        neighbour
    ]  # ... and the interstitial fills the neighbour's site
    assert recombined(moved_on, slab_2x2) and "recombined" in flags(moved_on)
    # against a host relaxed again elsewhere: back on the sites of either host is recombined
    shifted = slab_2x2.copy()
    shifted.positions += [2.0, 0, 0]
    assert flags(back, hosts=(shifted,)) == [] and flags(back, hosts=(shifted, slab_2x2)) == ["recombined"]
    assert not recombined(back[:-1], slab_2x2)  # other atoms: not this host's pair

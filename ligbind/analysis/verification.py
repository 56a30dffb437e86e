"""DFT verification of a screen (the AdsorbML pattern), defined once for the CLI and the campaign steps.

The screen protocol (an ML potential) relaxes K configurations; the best k of them (lowest, unflagged,
converged, distinct) are relaxed again with a DFT protocol, each rebuilt on the DFT-relaxed slab in its
screen pose with the DFT-relaxed molecule's geometry; Eb is assembled from DFT terms only, and with an LCAO
protocol that asks for it (``gpaw.counterpoise``) corrected for its basis-set superposition error. The stored row
(kind ``verification``) holds both numbers side by side, which protocol produced each, and flags where DFT
disagrees with the screen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from ligbind.analysis.binding import BindingOutcome
from ligbind.builders.exchange import exchanged_atoms
from ligbind.store import ResultStore

DISTINCT_EB = 0.005  # eV: two relaxed screen configurations closer than this are taken as the same minimum
DISAGREEMENT = 0.2  # eV: |Eb_dft − Eb_screen| beyond this is flagged
LIGAND_SWAP_RMSD = 0.3  # Å: a DFT molecule fitting the screen adsorbate worse than this is another conformer


@dataclass
class VerificationOutcome:
    """Eb from the screen and from DFT for one ligand, and how they compare."""

    ligand: str
    mode: str
    screen_protocol: str
    dft_protocol: str
    eb_screen: float | None
    eb_dft: float | None
    screen_config: int | None
    dft_config: int | None
    verified_configs: list[int] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    screen_key: str = ""
    dft_key: str = ""
    key: str = ""
    campaign: str | None = None
    bsse: float | None = None  # counterpoise BSSE of the DFT configuration (None: not corrected)
    eb_dft_uncorrected: float | None = None  # Eb_dft + BSSE, the plain sum of DFT terms

    @property
    def eb(self) -> float | None:
        """The reported Eb: the DFT value where one exists, else the screen's."""
        return self.eb_dft if self.eb_dft is not None else self.eb_screen

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eb": self.eb}


def check_verification(dft: dict[str, Any], where: str = "verification") -> None:
    """Refuse a verification that cannot be done: a protocol that is not DFT."""
    from ligbind.errors import LigbindError

    if not dft["is_dft"]:
        raise LigbindError(f"{where} needs a DFT protocol; '{dft['name']}' is not DFT")


def configurations_to_verify(screen: BindingOutcome, top_k: int) -> list[dict[str, Any]]:
    """The screen's best ``top_k`` configurations: converged, unflagged, lowest Eb first, distinct minima."""
    usable = sorted(
        (c for c in screen.configs if c["status"] == "converged" and not c["flags"]), key=lambda c: c["eb"]
    )
    chosen: list[dict[str, Any]] = []
    for c in usable:
        if all(abs(c["eb"] - d["eb"]) > DISTINCT_EB for d in chosen):
            chosen.append(c)
        if len(chosen) == top_k:
            break
    return chosen


def rebuild_on_slab(screen_complex: Atoms, screen_slab: Atoms, dft_slab: Atoms) -> Atoms:
    """The screen's relaxed complex rebuilt on the DFT-relaxed slab.

    Slab atoms (tags 0) take the DFT slab's positions; the adsorbate (tags ≥ 1) keeps its screen geometry,
    shifted by the mean displacement of the top-layer slab atoms under it (so its bonds to the surface keep
    their length). The slab part must be the same atoms in the same order as both bare slabs, less the atoms an
    exchange took out (:func:`exchanged_atoms`), which leave the DFT slab too.
    """
    removed = exchanged_atoms(screen_complex, screen_slab)
    if removed:
        screen_slab, dft_slab = screen_slab.copy(), dft_slab.copy()
        del screen_slab[removed]  # ASE renumbers the FixAtoms indices
        del dft_slab[removed]
    slab_atoms = np.where(screen_complex.get_tags() == 0)[0]
    if len(slab_atoms) != len(dft_slab) or list(screen_complex.numbers[slab_atoms]) != list(dft_slab.numbers):
        raise ValueError("the complex's slab part is not the bare slab")
    out = screen_complex.copy()
    top = screen_slab.positions[:, 2] > screen_slab.positions[:, 2].max() - 1.5
    shift = (dft_slab.positions[top] - screen_slab.positions[top]).mean(axis=0)
    out.positions[slab_atoms] = dft_slab.positions
    out.positions[screen_complex.get_tags() > 0] += shift
    out.set_constraint(dft_slab.constraints)
    out.info = {**screen_complex.info, "verified_from": screen_complex.info.get("config")}
    return out


def with_ligand_geometry(complex_: Atoms, ligand: Atoms, max_rmsd: float = LIGAND_SWAP_RMSD) -> Atoms:
    """The complex with its adsorbate's internal geometry taken from ``ligand`` (the DFT-relaxed molecule).

    ``ligand`` is superimposed on the adsorbate (ASE's Kabsch fit) and takes its place, so the DFT relaxation of
    the complex starts with the molecule at the DFT's bond lengths and angles, in the screen's pose. The ML
    potential's bond lengths differ from a DFT basis's (gpaw-quick sz(dzp): 5.7 eV/Å on methanethiol at its
    CHGNet geometry), and a complex started from them spends its first BFGS steps on the molecule's bonds.
    The complex is returned unchanged (``info['ligand_geometry'] = 'screen'``) when the adsorbate is not the
    molecule atom for atom (a proton moved, another mode) or does not fit it within ``max_rmsd`` Å (it changed
    conformation on the surface: the screen's conformer is the one to verify).
    """
    from ase.build import minimize_rotation_and_translation
    from ase.geometry import find_mic

    out = complex_.copy()
    ads = np.flatnonzero(complex_.get_tags() > 0)
    out.info["ligand_geometry"] = "screen"
    if len(ads) != len(ligand) or list(complex_.numbers[ads]) != list(ligand.numbers):
        return out
    # the adsorbate's atoms as one molecule (it may straddle the periodic boundary)
    offsets, _ = find_mic(complex_.positions[ads] - complex_.positions[ads[0]], complex_.cell, complex_.pbc)
    target = Atoms(complex_.numbers[ads], positions=complex_.positions[ads[0]] + offsets)
    fitted = Atoms(ligand.numbers, positions=ligand.positions)
    minimize_rotation_and_translation(target, fitted)
    rmsd = float(np.sqrt(((fitted.positions - target.positions) ** 2).sum(axis=1).mean()))
    out.info["ligand_fit_rmsd"] = round(rmsd, 4)
    if rmsd > max_rmsd:
        return out
    out.positions[ads] = fitted.positions + (complex_.positions[ads[0]] - target.positions[0])
    out.info["ligand_geometry"] = "dft"
    return out


def analyse_verification(
    screen: BindingOutcome,
    dft: BindingOutcome | None,
    *,
    threshold: float = DISAGREEMENT,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> VerificationOutcome:
    """Compare the screen's Eb with the DFT one and store the row (kind ``verification``)."""
    flags: list[str] = []
    eb_dft = dft_config = None
    if dft is not None:
        corrected = dft.eb_cp is not None
        eb_dft = dft.eb_cp if corrected else dft.eb
        dft_config = dft.cp_config if corrected else dft.best_config
    if dft is None or not dft.configs:
        flags.append("not-verified")
    elif eb_dft is None:
        flags.append("dft-unusable:" + "+".join(dft.flags or ["none"]))
    else:
        if screen.best_config is not None and dft_config != screen.best_config:
            flags.append("dft-prefers-another-configuration")
        if screen.eb is not None and abs(eb_dft - screen.eb) > threshold:
            flags.append(f"screen-off-by-more-than-{threshold:g}-eV")
    if dft is not None and any(
        c["config"] == screen.best_config and (c["flags"] or c["status"] != "converged") for c in dft.configs
    ):  # the screen's choice did not survive DFT (a reserve may have stood in for it)
        flags.append("screen-best-unusable-in-dft")
    if dft is not None:
        flags += [
            f for f in dft.flags if f.startswith(("basin-changed", "failed")) or f == "counterpoise-missing"
        ]
    out = VerificationOutcome(
        ligand=screen.ligand,
        mode=screen.mode,
        screen_protocol=screen.protocol,
        dft_protocol=dft.protocol if dft is not None else "",
        eb_screen=screen.eb,
        eb_dft=eb_dft,
        screen_config=screen.best_config,
        dft_config=dft_config,
        verified_configs=[c["config"] for c in dft.configs] if dft is not None else [],
        flags=sorted(set(flags)),
        screen_key=screen.key,
        dft_key=dft.key if dft is not None else "",
        key=f"verification-{screen.key.removeprefix('binding-')}-{dft.protocol if dft else 'none'}",
        campaign=campaign,
        bsse=dft.bsse if dft is not None else None,
        eb_dft_uncorrected=dft.eb_cp + dft.bsse if dft is not None and dft.eb_cp is not None else None,
    )
    if store is not None:
        store.put(
            Atoms(),
            out.key,
            data={"outcome": json.loads(json.dumps(out.as_dict(), default=float))},
            kind="verification",
            status="ok" if out.eb_dft is not None else "not-verified",
            ligand=out.ligand,
            mode=out.mode,
            protocol=out.dft_protocol,
            screen_protocol=out.screen_protocol,
            eb=out.eb,
            eb_screen=out.eb_screen,
            eb_dft=out.eb_dft,
            bsse=out.bsse,
            flags=",".join(out.flags) or "none",
            campaign=campaign,
        )
    return out

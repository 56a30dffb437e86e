"""Halide migration barrier analysis, defined once: Ea forward/backward from a band, flags, one stored row.

    Ea(forward)  = max_i E(image i) − E(initial)        (initial: vacancy at the site, hopper in place)
    Ea(backward) = max_i E(image i) − E(final)
    ΔEa          = Ea(forward, ligand@slab) − Ea(forward, bare) for the same hop (same site and hopping
                   halide); positive = the ligand slows migration

The endpoints are relaxed with the same protocol as the band, so the profile's first and last energies are
the relaxed endpoint energies (stored terms). Flags (kept in the table; a flagged barrier has no ΔEa):
``unconverged`` (the NEB hit its step limit); ``highest-image-endpoint`` (the maximum is an endpoint: no
barrier between these minima, or the band is wrong); ``ion-leaves-surface`` (the migrating halide rises more
than 3 Å above the top layer or loses every Pb neighbour within 4 Å); ``ligand-in-path`` (a ligand atom comes
within bonding distance of the migrating halide along the band); ``endpoint-not-minimum`` (an image on an
endpoint's half of the band lies more than 0.05 eV below it: that endpoint stopped above the bottom of its
basin, e.g. at a symmetric point where the forces vanish; the barrier recipe stops such a band, re-relaxes
that endpoint from the image and runs the band again, up to ENDPOINT_REFINEMENTS rounds (the last band runs
to convergence), so the flag survives only if that did not help); ``intermediate-minimum`` (an interior image
lies more than 0.025 eV, ~kT at room temperature, below both its neighbours: the path crosses a metastable
state, and of the maxima around it only the highest climbs, the other is a nudged image below its own saddle,
so Ea may be low).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.neb import NebRun
from ligbind.store import ResultStore

LEAVES_HEIGHT = 3.0  # Å above the top layer's mean height
LEAVES_PB_DISTANCE = 4.0  # Å: no Pb this close = detached
LIGAND_CONTACT = {"H": 2.2, "heavy": 2.9}  # Å from the migrating halide
SAME_STATE_SHIFT = 0.5  # Å: two relaxed states with no atom this far apart are one minimum
DISTINCT_MIN = 1.0  # Å: the migrating halide must differ this much between the relaxed endpoints
ENDPOINT_TOLERANCE = 0.05  # eV: an image this far below an endpoint on its half of the band → not a minimum
ENDPOINT_REFINEMENTS = 3  # rounds of re-relaxing an endpoint from a band that dips below it, at most
INTERMEDIATE_DEPTH = 0.025  # eV (~kT at 300 K): an interior image this far below both neighbours is a minimum


@dataclass
class BarrierOutcome:
    """One barrier: the profile, Ea both ways, flags, and ΔEa against the bare host for a ligand host."""

    ligand: str | None
    protocol: str
    images: int
    ea_forward: float | None
    ea_backward: float | None
    profile: list[dict[str, float]] = field(default_factory=list)
    e_initial: float = 0.0
    e_final: float = 0.0
    converged: bool = False
    n_steps: int = 0
    force_calls: int = 0
    flags: list[str] = field(default_factory=list)
    site: int = -1
    hopper: int = -1
    hop_length: float = 0.0
    initial_key: str = ""
    final_key: str = ""
    ea_bare: float | None = None
    delta_ea: float | None = None
    key: str = ""
    bare_key: str = ""  # the bare barrier of ``ea_bare`` ("": none, or stored before it was kept)
    campaign: str | None = None
    preconverge: dict[str, Any] | None = None
    refinements: int | None = None  # endpoint re-relaxation rounds (None: stored before they were counted)
    unsplit: bool = False  # its intermediate minimum relaxed back into an endpoint's basin: not split there
    wall_time: float = 0.0  # s: its endpoint relaxations and bands, every run of each (0: not recorded)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def minima(self) -> list[int]:
        """Profile entries that are relaxed intermediate minima (a band split there)."""
        return [int(p["image"]) for p in self.profile if p.get("minimum")]

    def unresolved(self) -> bool:
        """Whether another refinement round would change it: its band dips below an endpoint, or has an
        intermediate minimum not split yet."""
        energies = [p["e_rel"] for p in self.profile]
        minima = self.minima()
        splittable = not self.unsplit and intermediate_minima(energies, minima)
        return bool(endpoints_above_band(energies, minima) or splittable)


def same_state(a: Result, b: Result) -> bool:
    """Whether two relaxed states of one hop are the same minimum: no atom more than SAME_STATE_SHIFT apart
    (minimum image). The migrating halide alone does not tell: the DFT bare band's metastable state holds it
    0.83 Å from the final endpoint's, with a neighbour 1.04 Å off and 0.12 eV above it."""
    d = find_mic(b.atoms.positions - a.atoms.positions, a.atoms.cell, True)[1]
    return bool(d.max() < SAME_STATE_SHIFT)


def check_distinct_endpoints(initial: Result, final: Result) -> None:
    """Refuse endpoints that relaxed into the same minimum (the migrating halide ended where it started)."""
    m = int(initial.atoms.info["migrating"])
    d = float(find_mic(final.atoms.positions[m] - initial.atoms.positions[m], initial.atoms.cell, True)[1])
    if d < DISTINCT_MIN:
        raise LigbindError(
            f"the hop endpoints relaxed into the same minimum (the migrating halide {m} moved only {d:.2f} Å): "
            "no barrier to compute"
        )


def reaction_coordinate(band: list[Atoms]) -> list[float]:
    """Cumulative minimum-image path length (Å) along the band."""
    s = [0.0]
    for a, b in zip(band[:-1], band[1:], strict=True):
        step = find_mic(b.positions - a.positions, a.cell, a.pbc)[0]
        s.append(s[-1] + float(np.linalg.norm(step)))
    return s


def ion_leaves_surface(band: list[Atoms], migrating: int, z_top: float) -> bool:
    """The migrating halide rises above the surface or loses every Pb neighbour somewhere along the band."""
    for image in band:
        pos = image.positions[migrating]
        pbs = [i for i, s in enumerate(image.get_chemical_symbols()) if s == "Pb"]
        d = find_mic(image.positions[pbs] - pos, image.cell, image.pbc)[1]
        if pos[2] - z_top > LEAVES_HEIGHT or d.min() > LEAVES_PB_DISTANCE:
            return True
    return False


def ligand_in_path(band: list[Atoms], migrating: int) -> bool:
    """A ligand atom within bonding distance of the migrating halide at some image."""
    for image in band:
        ligand = np.where(image.get_tags() > 0)[0]
        if not len(ligand):
            return False
        d = find_mic(image.positions[ligand] - image.positions[migrating], image.cell, image.pbc)[1]
        is_h = np.array([image[i].symbol == "H" for i in ligand])
        if (d[is_h] < LIGAND_CONTACT["H"]).any() or (d[~is_h] < LIGAND_CONTACT["heavy"]).any():
            return True
    return False


def endpoints_above_band(energies: list[float], relaxed: Sequence[int] = ()) -> dict[int, int]:
    """Endpoints (0, last) with an image more than ENDPOINT_TOLERANCE below them on their half of the band,
    mapped to the lowest such image (the middle image of an odd count belongs to neither half).

    ``relaxed``: relaxed intermediate minima (a band split there): each part between two of these states is
    checked against its own two ends (a relaxed minimum with an image of its part below it is reported too)."""
    bounds = [0, *sorted(relaxed), len(energies) - 1]
    out = {}
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        n = hi - lo + 1
        halves = {lo: range(lo + 1, lo + n // 2), hi: range(lo + (n - 1) // 2 + 1, hi)}
        for end, side in halves.items():
            if side and min(energies[i] for i in side) < energies[end] - ENDPOINT_TOLERANCE:
                out[end] = min(side, key=lambda i: energies[i])
    return out


def intermediate_minima(energies: list[float], relaxed: Sequence[int] = ()) -> list[int]:
    """Interior images more than :data:`INTERMEDIATE_DEPTH` below both neighbours (endpoints count as
    neighbours): metastable states on the path; ``relaxed``: images that are relaxed minima already (the
    middle of a band split there, :func:`ligbind.neb.joined_bands`), not counted."""
    return [
        i
        for i in range(1, len(energies) - 1)
        if i not in relaxed and energies[i] < min(energies[i - 1], energies[i + 1]) - INTERMEDIATE_DEPTH
    ]


PROFILE_FLAGS = ("highest-image-endpoint", "endpoint-not-minimum", "intermediate-minimum")


def profile_flags(energies: list[float], relaxed: Sequence[int] = ()) -> list[str]:
    """The flags that the energy profile alone decides (endpoints first and last; ``relaxed``: relaxed
    intermediate minima): also derived again from a stored barrier's profile when it is loaded, so that a
    barrier stored before a criterion existed meets it."""
    flags = []
    if int(np.argmax(energies)) in (0, len(energies) - 1):
        flags.append("highest-image-endpoint")
    if endpoints_above_band(energies, relaxed):
        flags.append("endpoint-not-minimum")
    if intermediate_minima(energies, relaxed):
        flags.append("intermediate-minimum")
    return flags


def barrier_flags(run: NebRun, migrating: int, z_top: float) -> list[str]:
    """Anomaly flags of one band."""
    flags = [] if run.converged else ["unconverged"]
    if ion_leaves_surface(run.band, migrating, z_top):
        flags.append("ion-leaves-surface")
    if ligand_in_path(run.band, migrating):
        flags.append("ligand-in-path")
    return flags + profile_flags(list(run.energies), run.minima)


def stored_barrier(outcome: dict[str, Any]) -> BarrierOutcome:
    """A stored barrier (its row's ``outcome``) with the profile flags derived again from its stored profile
    (:func:`profile_flags`); a flagged barrier has no ΔEa."""
    out = BarrierOutcome(**outcome)
    energies = [p["e_rel"] for p in out.profile]
    if len(energies) > 2:
        out.flags = [f for f in out.flags if f not in PROFILE_FLAGS] + profile_flags(energies, out.minima())
        if out.flags:
            out.delta_ea = None
    return out


def in_bare_numbering(info: dict[str, Any], index: int) -> int:
    """An atom index of a host in the bare slab's numbering: past the atoms an exchange took out
    (``info['exchanged_indices']``), the same otherwise."""
    from ligbind.builders.exchange import recorded_exchange, to_bare_numbering

    return to_bare_numbering(index, recorded_exchange(info))


def barrier_energies(energies: list[float], minima: Sequence[int] = ()) -> tuple[float, float]:
    """(Ea forward, Ea backward) from a profile whose first and last entries are the endpoints.

    With relaxed intermediate minima (``minima``: a band split at a metastable state) each way's Ea is the
    largest rise from a minimum to a later maximum that way (the energy span: max E − E(start) while the
    intermediate lies above the start, max E after it − E(intermediate) when it lies below)."""
    n = len(energies)
    forward = max(max(energies[i:]) - energies[i] for i in (0, *minima))
    backward = max(max(energies[: i + 1]) - energies[i] for i in (n - 1, *minima))
    return forward, backward


def lowest_image(energies: list[float]) -> float:
    """The lowest intermediate image relative to the first endpoint (eV; negative: the band dips below it,
    and, for a dip before the highest image, max E − that image is the barrier out of the dip)."""
    return min(energies[1:-1]) - energies[0]


def analyse_barrier(
    run: NebRun,
    initial: Result,
    final: Result,
    protocol: dict[str, Any],
    *,
    z_top: float,
    ligand: str | None = None,
    bare: BarrierOutcome | None = None,
    store: ResultStore | None = None,
    campaign: str | None = None,
    preconverge: dict[str, Any] | None = None,
    key: str | None = None,
    refinements: int = 0,
    unsplit: bool = False,
    wall_time: float = 0.0,
) -> BarrierOutcome:
    """Ea of one band (ΔEa against ``bare`` for a ligand host), stored as one row of kind ``barrier``.

    ``key``: store it under this key instead of the band's (the barrier asked for, when its endpoints were
    re-relaxed on the way, ``refinements`` rounds); ``wall_time``: what computing it took, in seconds."""
    info = initial.atoms.info
    migrating = int(info["migrating"])
    energies = list(run.energies)
    forward, backward = barrier_energies(energies, run.minima)
    s = reaction_coordinate(run.band)
    flags = barrier_flags(run, migrating, z_top)
    out = BarrierOutcome(
        ligand=ligand,
        protocol=protocol["name"],
        images=len(run.band) - 2,
        ea_forward=forward,
        ea_backward=backward,
        profile=[
            {
                "image": k,
                "s": s[k],
                "e_rel": e - energies[0],
                **({"minimum": True} if k in run.minima else {}),
            }
            for k, e in enumerate(energies)
        ],
        e_initial=energies[0],
        e_final=energies[-1],
        converged=run.converged,
        n_steps=run.n_steps,
        force_calls=run.force_calls,
        flags=flags,
        site=int(info["site"]),
        hopper=int(info["hopper"]),
        hop_length=float(info["hop_length"]),
        initial_key=initial.key,
        final_key=final.key,
        key=key or run.key,
        campaign=campaign,
        preconverge=preconverge,
        refinements=refinements,
        unsplit=unsplit,
        wall_time=wall_time,
    )
    _against_bare(out, info, bare)
    if store is not None:
        _put_barrier(store, out, run.band[int(np.argmax(energies))], protocol)
    return out


def reuse_barrier(
    stored: BarrierOutcome,
    initial: Result,
    protocol: dict[str, Any],
    *,
    bare: BarrierOutcome | None,
    store: ResultStore,
    campaign: str | None = None,
) -> BarrierOutcome:
    """A stored barrier taken as it is, ΔEa against the current ``bare``, its row written again: a rerun of
    the step (a campaign screened again) owns it, so it stays in the campaign's tables (a direct run, without
    ``campaign``, leaves the row's campaign as it was)."""
    out = replace(stored, campaign=campaign or stored.campaign, ea_bare=None, delta_ea=None, bare_key="")
    _against_bare(out, initial.atoms.info, bare)
    _put_barrier(store, out, store.get(stored.key).toatoms(), protocol)
    return out


def _against_bare(out: BarrierOutcome, info: dict[str, Any], bare: BarrierOutcome | None) -> None:
    """``out.ea_bare`` and ``out.delta_ea`` of a ligand host: only for the same hop on the bare slab (``info``:
    the endpoint's, mapping the host's numbering to the bare slab's), ΔEa only when neither band is flagged."""
    same_hop = bare is not None and (bare.site, bare.hopper) == tuple(
        in_bare_numbering(info, i) for i in (out.site, out.hopper)
    )
    if out.ligand is not None and same_hop:
        out.ea_bare = bare.ea_forward
        out.bare_key = bare.key
        if not out.flags and not bare.flags and bare.ea_forward is not None and out.ea_forward is not None:
            out.delta_ea = out.ea_forward - bare.ea_forward


def _put_barrier(store: ResultStore, out: BarrierOutcome, top: Atoms, protocol: dict[str, Any]) -> None:
    """One row of kind ``barrier`` (``top``: the highest image)."""
    store.put_analysis(
        top,
        out.key,
        "barrier",
        out.as_dict(),
        protocol,
        out.flags,
        status="converged" if out.converged else "unconverged",
        ligand=out.ligand or "",
        ea_forward=out.ea_forward,
        ea_backward=out.ea_backward,
        ea_bare=out.ea_bare,
        delta_ea=out.delta_ea,
        images=out.images,
        n_steps=out.n_steps,
        campaign=out.campaign,
        wall_time=round(out.wall_time, 3),
    )


def load_barrier(store: ResultStore, key: str) -> BarrierOutcome | None:
    """The barrier stored under ``key``, or None."""
    row = store.get(key)
    return stored_barrier(row.data["outcome"]) if row is not None else None


def plot_profiles(outcomes: list[BarrierOutcome], path: str | Path, title: str = "") -> Path:
    """Energy profiles (E − E(initial) against the path length) of one or more barriers as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for out in outcomes:
        s = [p["s"] for p in out.profile]
        e = [p["e_rel"] for p in out.profile]
        label = f"{out.ligand or 'bare'}: Ea {out.ea_forward:.2f} eV" + (" (flagged)" if out.flags else "")
        ax.plot(s, e, "o-", label=label)
    ax.set_xlabel("path length (Å)")
    ax.set_ylabel("E − E(initial) (eV)")
    ax.set_title(title or f"halide migration ({outcomes[0].protocol})" if outcomes else title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

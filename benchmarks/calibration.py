"""Calibration of the screening presets against DFT (issue 10): MAE, max |ΔEb|, Spearman ρ, success rate.

The DFT reference is a ligbind campaign under benchmarks/calibration/ (every configuration of every ligand
relaxed with gpaw-laptop through ``verify: {top_k: configs}``), whose results database is committed next to
its YAML. This script never computes DFT: it reads that database and, for each screening preset, screens the
same ligands on the same slab with the same configurations (CHGNet's own screen is in the database already),
then compares configuration by configuration (the same placement seed and count give the same configuration
numbers) and ligand by ligand.

    python benchmarks/calibration.py                        # every calibration set that has a database
    python benchmarks/calibration.py --presets ml-screen    # one preset
    python benchmarks/calibration.py --detail               # and Eb per ligand and configuration

The other presets' screens are kept in ``--screens`` (default benchmarks/calibration/screens, committed with
the DFT data so that the figures are reproducible as printed; one store per set, rewritten after each
ligand whose screen computed something: an interrupted run keeps the ligands it finished). Results are found
by calculation key, so a rerun reuses them (~10-20 min of SevenNet saved) and a changed ligand or placement
recomputes its own.

Figures per preset, against Eb_DFT and against Eb_DFT − BSSE (the counterpoise-corrected Eb, for the
configurations whose counterpoise is computed): MAE and max |Eb_screen − Eb_DFT| over configurations with both
numbers; Spearman rank correlation of the ligands' best Eb; success rate: the screen's best configuration,
DFT-relaxed, lands within 0.1 eV of the lowest DFT Eb over all K configurations (over the distinct minima among
them, those the campaign relaxes: :func:`verified_configs`). Per set, then over all sets together (each ligand
on each surface one entry; the screening default is chosen on these). A partial database gives partial figures
(the counts say how many configurations and ligands entered).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = sorted((ROOT / "benchmarks" / "calibration").glob("*.yaml"))
PRESETS = ("ml-screen", "ml-screen-7net", "ml-screen-7net-l3i5")
SUCCESS = 0.1  # eV


Reference = dict[str, dict[int, float]]  # ligand -> configuration -> Eb (eV)


def _usable(configs: list[dict]) -> list[dict]:
    return [k for k in configs if k["status"] == "converged" and not k["flags"]]


def dft_reference(c: dict, store) -> tuple[Reference, Reference, dict[str, set[int]], set[str]]:
    """Eb_DFT per ligand and configuration, the same less each configuration's counterpoise BSSE (only the
    configurations whose counterpoise the campaign has computed), the configurations whose DFT relaxation has
    finished per ligand (flagged ones too: those have no Eb), and the ligands whose figures are provisional.

    From the DFT binding analyses of the campaign where they exist (the campaign writes them once every
    configuration of every ligand is DFT-relaxed); for the other ligands, from the DFT relaxations finished so
    far (:func:`provisional_reference`), so that a campaign still running gives figures too. The ML potentials
    were trained on plane-wave DFT, which has no basis-set superposition: the corrected Eb is the fair reference.
    """
    from ligbind.engine.fireworks import current_rows

    dft = c["verify"]["protocol"]["name"]
    bsse = {r.complex_key: float(r.bsse) for r in store.select(kind="counterpoise") if r.protocol == dft}
    out = {}
    for row in store.restricted(current_rows(c)).select(kind="binding", campaign=c["name"]):  # this plan's
        if row.protocol == dft:
            out[row.ligand] = row.data["outcome"]["configs"]
    provisional = {lig: v for lig, v in provisional_reference(c, store, skip=set(out)).items() if v}
    every = {**{lig: v for lig, v in out.items() if v}, **provisional}
    finished = {lig: {k["config"] for k in v} for lig, v in every.items()}
    configs = {lig: _usable(v) for lig, v in every.items()}
    plain = {lig: {k["config"]: k["eb"] for k in v} for lig, v in configs.items()}
    corrected = {
        lig: {k["config"]: k["eb"] - bsse[k["key"]] for k in v if k["key"] in bsse}
        for lig, v in configs.items()
    }
    plain = {lig: v for lig, v in plain.items() if v}
    return plain, {lig: v for lig, v in corrected.items() if v}, finished, set(provisional)


def provisional_reference(c: dict, store, skip: set[str] = frozenset()) -> dict[str, list[dict]]:
    """The configuration rows (config, eb, flags, key ...) of the DFT relaxations finished so far, against the
    campaign's DFT slab (ligands in ``skip``, whose DFT analysis is stored, left out).

    Rows are found by label (``slab``, ``ligand:<name>``, ``verify:<name>:<k>``), the DFT protocol's hash and
    the campaign's cell (a database may hold an earlier campaign's rows on another vacuum). The shared
    reference can still move lower once every configuration is in (``lowest_slab``): provisional figures.
    A configuration flagged only ``basin-changed`` whose bare framework the campaign has not relaxed yet
    enters too (the campaign judges it once that framework is relaxed).
    """
    from ligbind.analysis.binding import analyse_binding
    from ligbind.builders.slab import vacuum_thickness
    from ligbind.engine.campaign import campaign_slab, entry_from_spec
    from ligbind.jobs import result_from_row
    from ligbind.protocols import protocol_hash
    from ligbind.recipes import basin_framework, judged_flags
    from ligbind.store import calculation_key

    dft = c["verify"]["protocol"]
    slab = campaign_slab(c)
    suffix = "-" + protocol_hash(dft)
    rows = [r for r in store.select(kind="relax") if r.key.endswith(suffix) and r.status == "converged"]
    on_slab = [r for r in rows if np.allclose(np.asarray(r.cell), slab.cell.array, atol=1e-3)]
    slabs = [r for r in on_slab if str(r.get("label", "")).startswith("slab")]
    if not slabs:
        return {}
    slab_r = result_from_row(min(slabs, key=lambda r: r.energy), dft)
    box = max(vacuum_thickness(slab), 6.0)  # ligand_cell_structure: the slab's vacuum around the molecule
    out = {}
    for spec in c["ligands"]:
        name = spec["name"]
        if name in skip:
            continue
        ligands = [r for r in rows if r.get("label") == f"ligand:{name}"]
        configs = [r for r in on_slab if str(r.get("label", "")).startswith(f"verify:{name}:")]
        if not ligands or not configs:
            continue
        # the box is the molecule's extent plus ``box``: the row of this campaign's vacuum
        lig = min(
            ligands,
            key=lambda r: abs(np.mean(np.linalg.norm(r.cell, axis=1) - np.ptp(r.positions, axis=0)) - box),
        )
        results = []
        for r in configs:
            res = result_from_row(r, dft)
            res.atoms.info["config"] = int(str(r.get("label")).rsplit(":", 1)[1])
            res.anomalies = judged_flags(res, slab_r, dft, store)[0]  # read-only: the campaign may be running
            pending = store.get(calculation_key("relax", basin_framework(res, slab_r), dft)) is None
            if res.anomalies == ["basin-changed"] and pending:
                res.anomalies = []
            results.append(res)
        outcome = analyse_binding(
            entry_from_spec(spec), spec["mode"], dft, slab_r, result_from_row(lig, dft), results
        )
        out[name] = outcome.configs
    return out


class KeptScreens:
    """The other presets' screens of one set (``kept``, a results store), worked on as a copy in ``workdir``: the
    kept file is rewritten only when a screen computed something, after each ligand (a rerun leaves the
    repository clean; an interrupted one keeps the ligands it finished)."""

    def __init__(self, kept: Path, workdir: Path):
        from ligbind.store import ResultStore

        self.kept, self.copy = kept, workdir / "screens.db"
        if kept.exists():
            shutil.copy(kept, self.copy)
        self.store = ResultStore(self.copy)
        self.relaxations = self.store.db.count(kind="relax")

    def save(self) -> None:
        """Copy the screens back when relaxations were added since the last save."""
        if (n := self.store.db.count(kind="relax")) != self.relaxations:
            shutil.copy(self.copy, self.kept)
            self.relaxations = n


def screen(c: dict, preset: str, store, workdir: Path, after=None) -> dict:
    """The binding outcome per ligand with ``preset`` (reused from ``store`` where it holds them); ``after()``
    is called after each ligand (to keep what a long screen has computed so far)."""
    from ligbind.engine.campaign import campaign_slab, entry_from_spec
    from ligbind.recipes import bind

    slab = campaign_slab(c)
    out = {}
    for spec in c["ligands"]:
        out[spec["name"]] = bind(
            slab,
            entry_from_spec(spec),
            preset,
            n_configs=c["configs"],
            seed=c["seed"],
            store=store,
            workdir=workdir,
        )
        if after is not None:
            after()
    return out


def screen_eb(outcomes: dict) -> dict[str, dict[int, float]]:
    """Eb per ligand and configuration of a screen's usable configurations."""
    return {lig: {k["config"]: k["eb"] for k in _usable(r.configs)} for lig, r in outcomes.items()}


def verified_configs(c: dict, outcomes: dict) -> dict[str, set[int]]:
    """The configurations the campaign DFT-relaxes per ligand: its screen's best ``top_k`` distinct ones.

    With ``top_k`` = configs that is every configuration, less those within ``DISTINCT_EB`` of a better one
    (the same minimum, not relaxed twice): a ligand's DFT set is complete when it holds these, not K.
    """
    from ligbind.analysis.verification import configurations_to_verify

    top_k = c["verify"]["top_k"]
    return {lig: {k["config"] for k in configurations_to_verify(r, top_k)} for lig, r in outcomes.items()}


def judged_ligands(
    ref: Reference, plain: Reference, complete: dict[str, set[int]], finished: dict[str, set[int]]
) -> dict[str, set[int]]:
    """The ligands ready for ρ and the success rate against ``ref``, each with its DFT-finished configurations.

    Ready: every configuration the campaign verifies (``complete``, :func:`verified_configs`) has finished its
    DFT relaxation (a flagged one has no Eb but counts as done), and ``ref`` holds every usable one of them
    (for the counterpoise-corrected reference: every counterpoise is computed).
    """
    return {
        lig: finished[lig]
        for lig, v in ref.items()
        if complete.get(lig)
        and complete[lig] <= finished.get(lig, set())
        and set(plain.get(lig, {})) <= set(v)
    }


def figures(ref: Reference, ml: Reference, judged: dict[str, set[int]]) -> dict[str, float]:
    """MAE, max error, Spearman ρ over ligands and success rate of one preset against the DFT reference.

    MAE and max error take every configuration with both numbers. ρ and the success rate take the ligands in
    ``judged`` (:func:`judged_ligands`): ρ ranks the preset's best Eb against the lowest DFT Eb; a success is
    the preset's best configuration among the DFT-relaxed ones landing, DFT-relaxed and unflagged, within
    ``SUCCESS`` of the lowest DFT Eb (a pick flagged in DFT is a miss). A preset whose best configuration is one
    the campaign did not relax (a duplicate minimum of the campaign's screen) is judged by its best among the
    relaxed ones.
    """
    from scipy.stats import spearmanr

    errors, best_ml, best_dft, hits = [], [], [], []
    for lig, dft in ref.items():
        own = ml.get(lig, {})
        errors += [abs(own[i] - dft[i]) for i in sorted(set(dft) & set(own))]
        picks = [k for k in own if k in judged.get(lig, ())]
        if not picks:
            continue
        chosen = min(picks, key=own.__getitem__)
        best_ml.append(min(own.values()))
        best_dft.append(min(dft.values()))
        hits.append(chosen in dft and dft[chosen] - min(dft.values()) <= SUCCESS)
    rho = spearmanr(best_ml, best_dft).statistic if len(best_ml) >= 3 else float("nan")
    return {
        "configs": len(errors),
        "ligands": len(hits),
        "mae": float(np.mean(errors)) if errors else float("nan"),
        "max": float(np.max(errors)) if errors else float("nan"),
        "spearman": float(rho),
        "success": float(np.mean(hits)) if hits else float("nan"),
    }


def detail(
    plain: Reference, corrected: Reference, screens: dict[str, dict[str, dict[int, float]]], complete
) -> str:
    """Eb (eV) per ligand and configuration: DFT, DFT − BSSE and each preset ('-': none; '*': the campaign
    did not DFT-relax it, a duplicate minimum of its screen)."""

    def cell(v: float | None) -> str:
        return f"{v:>8.3f}" if v is not None else f"{'-':>8}"

    presets = list(screens)
    lines = [
        f"{'ligand':<20} {'config':>6} {'DFT':>8} {'DFT-BSSE':>8} "
        + " ".join(f"{p.replace('ml-screen-', ''):>10}" for p in presets)
    ]
    for lig in sorted({*plain, *(k for s in screens.values() for k in s)}):
        configs = sorted({*plain.get(lig, {}), *(k for s in screens.values() for k in s.get(lig, {}))})
        for k in configs:
            mark = "" if k in complete.get(lig, ()) else "*"
            lines.append(
                f"{lig:<20} {str(k) + mark:>6} {cell(plain.get(lig, {}).get(k))} "
                f"{cell(corrected.get(lig, {}).get(k))} "
                + " ".join(f"{cell(screens[p].get(lig, {}).get(k)):>10}" for p in presets)
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument(
        "--screens",
        type=Path,
        default=ROOT / "benchmarks" / "calibration" / "screens",
        help="directory keeping the other presets' screens between runs",
    )
    parser.add_argument(
        "--detail",
        action="store_true",
        help="also print Eb per ligand and configuration, DFT and each preset",
    )
    args = parser.parse_args(argv)
    try:
        args.screens.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--screens {args.screens}: {exc.strerror}")  # one line, exit 2
    from ligbind.engine.campaign import load_campaign
    from ligbind.store import ResultStore

    print(
        f"{'set':<20} {'preset':<22} {'reference':<10} {'configs':>7} {'ligands':>7} {'MAE':>7} {'max':>7} "
        f"{'rho':>6} {'success':>7}"
    )
    pooled: dict[tuple[str, str], tuple[Reference, Reference, dict[str, set[int]]]] = {}
    pooled_sets: set[str] = set()  # the sets whose rows entered the pool
    for path in SETS:
        c = load_campaign(path)
        if not Path(c["store"]).exists():
            print(f"{c['name']:<20} (no DFT database yet: run the campaign, see {path.name})")
            continue
        ResultStore.open_existing(c["store"])  # checks it is a results database
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(c["store"], Path(tmp) / "reference.db")  # the committed database stays untouched
            store = ResultStore(Path(tmp) / "reference.db")
            plain, corrected, finished, provisional = dft_reference(c, store)
            kept = KeptScreens(args.screens / f"{c['name']}.db", Path(tmp))
            own = screen(c, c["protocol"]["name"], store, Path(tmp))  # the campaign's screen, in its database
            complete = verified_configs(c, own)
            screens = {}
            for preset in args.presets:
                outcomes = (
                    own
                    if preset == c["protocol"]["name"]
                    else screen(c, preset, kept.store, Path(tmp), kept.save)
                )
                ml = screens[preset] = screen_eb(outcomes)
                for name, ref in (("DFT", plain), ("DFT-BSSE", corrected)):
                    if not ref:
                        continue
                    judged = judged_ligands(ref, plain, complete, finished)
                    print(_row(c["name"], preset, name, figures(ref, ml, judged)))
                    pooled_sets.add(c["name"])
                    pool = pooled.setdefault((preset, name), ({}, {}, {}))
                    for whole, part in zip(pool, (ref, ml, judged), strict=True):
                        whole.update({f"{c['name']}/{lig}": v for lig, v in part.items()})
            if provisional:
                print(
                    f"{'':<20} provisional (campaign still running; DFT slab as reference): "
                    f"{', '.join(sorted(provisional))}"
                )
            if args.detail:
                print(detail(plain, corrected, screens, complete))
    if len(pooled_sets) > 1:
        print("all sets together (each ligand on each surface counts once):")
        for (preset, name), (ref, ml, judged) in pooled.items():
            print(_row("all", preset, name, figures(ref, ml, judged)))
    return 0


def _row(where: str, preset: str, reference: str, f: dict[str, float]) -> str:
    return (
        f"{where:<20} {preset:<22} {reference:<10} {f['configs']:>7} {f['ligands']:>7} "
        f"{f['mae']:>7.3f} {f['max']:>7.3f} {f['spearman']:>6.2f} {f['success']:>7.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())

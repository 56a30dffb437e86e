"""Rehearse a campaign's DFT verification in minutes, before spending DFT hours on it.

Runs the campaign (``extends:`` it, in a scratch directory) with its ``verify:`` protocol replaced by
'fake-dft': CHGNet + D3 labelled as DFT (tests/fake_backends.py). Every verify-* Firework the real campaign
would run then runs at ML cost, so a plan or analysis that would fail, or come out empty, hours into the DFT
run shows up now: rehearsing benchmarks/mixed-halide/mixed-halide-dft.yaml found TMSBr's verified vacancy
refilled (its DFT E_vac would have been empty; verified defects now fall back on the screen's next site).
Since the stand-in is the screen's own potential, its numbers say nothing about DFT: only whether every
verification step completes and gives a usable row. Prints the run's counts and every verification row.

    python benchmarks/rehearse_verify.py benchmarks/mixed-halide/mixed-halide-dft.yaml [--dir /tmp/rehearsal]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def use_fake_dft() -> None:
    """Register tests/fake_backends.py as backend 'fake-dft' and a preset of that name (ml-screen's settings)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_backends import registration

    for target, name, value in registration():
        if isinstance(target, dict):
            target[name] = value
        else:
            setattr(target, name, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", type=Path, help="a campaign YAML with verify:")
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch directory (default: a new temporary one)"
    )
    args = parser.parse_args()
    from ligbind.engine.campaign import load_campaign
    from ligbind.errors import LigbindError

    try:  # ligbind's own checks (and its extends:), one line each
        campaign = load_campaign(args.campaign)
    except LigbindError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if not campaign.get("verify"):
        parser.exit(2, f"{parser.prog}: error: {args.campaign} has no verify: to rehearse\n")
    work = (args.dir or Path(tempfile.mkdtemp(prefix="rehearsal-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    name = f"{campaign['name']}-rehearsal"
    path = work / f"{name}.yaml"
    stand_in = {"protocol": "fake-dft", "overrides": None}  # the DFT overrides (gpaw: ...) do not apply
    path.write_text(
        yaml.safe_dump({"extends": str(args.campaign.resolve()), "name": name, "verify": stand_in})
    )
    use_fake_dft()
    import pandas as pd

    import ligbind.engine.fireworks as engine
    from ligbind.engine.campaign import campaign_results

    os.chdir(work)
    start = time.perf_counter()
    engine.screen(path)
    out = engine.run(path, progress=False, workers=1)
    print(
        f"{name}: {out['ran']} Fireworks in {time.perf_counter() - start:.0f} s; failed {out['failed']}, "
        f"unconverged {out['unconverged']}; states {out['states']} (in {work})"
    )
    for table, file in sorted(campaign_results(path).items()):
        if not table.endswith("_csv"):
            continue
        frame = pd.read_csv(file)
        rows = (
            frame[frame["protocol"] == "fake-dft"] if "protocol" in frame.columns else frame
        )  # verified.csv
        if len(rows):
            print(f"\n{table.removesuffix('_csv')} (verification rows):")
            print(rows.to_string(index=False, max_colwidth=48))


if __name__ == "__main__":
    main()

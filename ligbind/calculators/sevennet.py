"""SevenNet backend: universal machine-learned potentials whose weights ship in the sevenn wheel (offline).

Models (the ``sevennet: model:`` setting), all NequIP-type equivariant networks (5 interaction layers, 5 Å
cutoff, float32) trained on PBE(+U) data of the Materials Project trajectories (MPtrj):

- ``7net-0``: SevenNet-0 (11 Jul 2024, l_max 2, 0.84 M parameters), the default screening model;
- ``7net-l3i5``: SevenNet-l3i5 (l_max 3, 1.2 M parameters): higher angular resolution, ~2-3x slower;
- ``7net-mf-0``: SevenNet-MF-0, multi-fidelity; ``modal`` chooses the fidelity, ``PBE`` or ``R2SCAN`` (case
  sensitive; its r2SCAN energies have another zero of energy, -33.5 vs -2.8 eV/atom on CsPbI3, and need
  r2SCAN D3 parameters, which :meth:`SevenNetBackend.check_input` enforces).

Total energies are not comparable with CHGNet's: CHGNet learnt MP2020-corrected energies (-0.379 eV per
iodine), SevenNet uncorrected ones. On the bare 2x2 CsPbI3 slab CHGNet is 0.31 eV/atom lower, 0.07 once that
correction is removed. Energy differences (Eb) do not carry the correction.

Measured here (1 torch thread): the stress costs nothing noticeable (sevenn takes it from the same edge
forces as the atomic forces; <= 5 %, within the noise), so, unlike CHGNet, no energy-and-forces-only
subclass is needed.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ase.calculators.calculator import Calculator
from ase.data import chemical_symbols
from pydantic import Field, ValidationInfo, field_validator

from ligbind.calculators import Backend
from ligbind.errors import LigbindError
from ligbind.protocols import StrictModel

MULTI_FIDELITY = ("7net-mf-0",)


class SevenNetSettings(StrictModel):
    """The ``sevennet:`` section of a protocol."""

    model: Literal["7net-0", "7net-l3i5", "7net-mf-0"] = Field(
        description="pretrained model shipped in the sevenn wheel (others download their weights: refused)"
    )
    modal: Literal["PBE", "R2SCAN"] | None = Field(
        default=None,  # not a setting of the single-fidelity models, only of 7net-mf-0
        validate_default=True,
        description="fidelity of the multi-fidelity model 7net-mf-0; null for the others",
    )

    @field_validator("modal")
    @classmethod
    def _modal_fits_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        model = info.data.get("model")
        if model is None:  # the model itself was refused: that is the error to report
            return value
        if model in MULTI_FIDELITY and value is None:
            raise ValueError(f"{model} is a multi-fidelity model: set modal to PBE or R2SCAN")
        if model not in MULTI_FIDELITY and value is not None:
            raise ValueError(f"{model} has a single fidelity: modal must be null (only 7net-mf-0 takes one)")
        return value


@contextmanager
def _quiet():
    """Silence sevenn's and torch's warnings that say nothing to a ligbind user.

    sevenn warns "No tensor product accelerator is enabled" at every calculator (the accelerators, cuEquivariance,
    FlashTP and OpenEquivariance, are GPU only); torch warns that ``torch.jit.script`` (used by e3nn when the
    model is built) is deprecated.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No tensor product accelerator", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.*is deprecated", category=DeprecationWarning
        )
        yield


def weights_path(name: str) -> Path:
    """The checkpoint of the pretrained model ``name`` inside the sevenn package (never downloaded)."""
    with _quiet():
        import sevenn.util

    try:
        path = Path(sevenn.util.pretrained_name_to_path(name))  # these three have no download URL in sevenn
    except FileNotFoundError:
        raise LigbindError(
            f"the SevenNet model {name} is not in the installed sevenn package: reinstall sevenn"
        ) from None
    return path


@lru_cache(maxsize=3)
def _sevennet_model(name: str):
    """The pretrained model ``name``, built once per process (~2 s) and shared by every calculator."""
    path = weights_path(name)
    with _quiet():
        import sevenn.util

        return sevenn.util.load_checkpoint(str(path)).build_model()


class SevenNetBackend(Backend):
    """SevenNet universal potentials (weights shipped in the sevenn wheel, offline); not DFT, neutral only."""

    name = "sevennet"
    section = "sevennet"
    settings_model = SevenNetSettings

    def check_input(self, atoms, protocol) -> None:
        super().check_input(atoms, protocol)
        settings = protocol["sevennet"]
        if settings["modal"] == "R2SCAN" and protocol["dispersion"]["method"] != "none":
            if protocol["dispersion"]["xc"].lower() != "r2scan":
                raise LigbindError(
                    "7net-mf-0 with modal R2SCAN gives r2SCAN energies: set dispersion.xc to r2scan "
                    f"(not {protocol['dispersion']['xc']})"
                )
        known = _sevennet_model(settings["model"]).type_map
        missing = sorted({chemical_symbols[z] for z in set(atoms.numbers.tolist()) if z not in known})
        if missing:
            raise LigbindError(f"SevenNet {settings['model']} knows no {', '.join(missing)}")

    def calculator(self, protocol, atoms, directory, label, attempt=0) -> Calculator:
        import torch

        with _quiet():
            from sevenn.calculator import SevenNetCalculator

        # One thread per process, as for CHGNet: campaigns run one worker per core.
        torch.set_num_threads(int(protocol["run"]["threads"]))
        settings = protocol["sevennet"]
        with _quiet():
            return SevenNetCalculator(
                model=_sevennet_model(settings["model"]),
                file_type="model_instance",
                device="cpu",  # sevenn's default "auto" would take a GPU if one were visible
                modal=settings["modal"],
            )


BACKEND = SevenNetBackend()

"""Machine-learned interatomic potential backend: CHGNet with the weights shipped in its wheel (offline)."""

from __future__ import annotations

import contextlib
import io
from functools import lru_cache
from typing import Any

from ase.calculators.calculator import Calculator

from ligbind.errors import LigbindError


@lru_cache(maxsize=2)
def _chgnet_model():
    import warnings

    from chgnet.model import CHGNet

    # CHGNet's own "tensor to scalar" UserWarning on every structure is noise for users
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad", category=UserWarning)
    return CHGNet.load(verbose=False)


@lru_cache(maxsize=1)
def _chgnet_calculator_class() -> type[Calculator]:
    from chgnet.model.dynamics import CHGNetCalculator

    class CHGNetEnergyForces(CHGNetCalculator):
        """CHGNet that evaluates the stress (a strain derivative) and magnetic moments only when asked.

        Relaxations at fixed cell ask for energy and forces only; the stock calculator always runs its
        "efsm" task, which costs 1.5-1.8x more per call on these slabs (measured: 0.81 vs 0.46 s for a
        131-atom complex). Energies and forces are the same numbers.
        """

        def calculate(self, atoms=None, properties=None, system_changes=None, task=None) -> None:
            wanted = set(properties or ("energy", "forces", "stress", "magmoms"))
            if task is None:
                task = "ef" + ("s" if "stress" in wanted else "") + ("m" if "magmoms" in wanted else "")
            super().calculate(atoms, properties, system_changes, task=task)

    return CHGNetEnergyForces


def ml_calculator(protocol: dict[str, Any]) -> Calculator:
    """CHGNet (or SevenNet when installed) ASE calculator; the model is loaded once per process."""
    model = protocol.get("model", "chgnet")
    if model == "chgnet":
        import torch

        # One thread: as fast as two on a 40-atom slab here (0.040 vs 0.035 s per call), and 50x faster when
        # other processes share the cores (intra-op threads spin-wait).
        torch.set_num_threads(int(protocol.get("threads", 1)))
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "CHGNet will run on cpu" every time
            return _chgnet_calculator_class()(model=_chgnet_model(), use_device="cpu", on_isolated_atoms="ignore")
    if model == "sevennet":
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError as exc:
            raise LigbindError("model 'sevennet' needs the sevenn package: pip install sevenn") from exc
        return SevenNetCalculator("7net-0", device="cpu")
    raise LigbindError(f"unknown ML model '{model}' (known: chgnet, sevennet)")

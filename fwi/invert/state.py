"""The resumable state of a refinement: `RefineState`, what a rerun needs to continue exactly where one stopped.

The file (``torch.save`` of a plain dict, written atomically, read with ``weights_only=True``) holds the progress
(``done``, ``elapsed``, ``n_evals``, ``history``), the parameterisation's tensors, the optimiser's state of the
current stage, the stage's best iterate so far (``keep_best``) and the shot-drawing generator's state, tagged with the
configuration's `RefineConfig.key` and the number of models: a state of another configuration or batch is refused,
never continued.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fwi.atomic import atomic_path, space_guarded
from fwi.invert.best import to_cpu


@dataclass
class RefineState:
    """Progress of one `fwi.invert.core.refine` call; ``param`` / ``optimizer`` / ``rng`` are filled when saved."""

    done: int = 0  # iterations done
    elapsed: float = 0.0  # seconds of the iterations
    n_evals: int = 0  # forward + backward evaluations
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per iteration
    param: dict[str, torch.Tensor] | None = None  # Parameterisation.state_dict()
    optimizer: dict[str, Any] | None = None  # the current stage's optimiser state
    rng: torch.Tensor | None = None  # the shot-drawing generator's state
    best: dict[str, Any] | None = None  # the current stage's best iterate (keep_best: fwi.invert.best)

    def save(self, path: Path, key: str, batch: int, config: dict[str, Any]) -> None:
        """Write the state atomically (a kill never leaves a half-written file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, space_guarded(tmp, "wb", target=path) as fh:  # full disk: DiskFullError
            torch.save({"key": key, "batch": batch, "param": self.param, "history": self.history, "done": self.done,
                        "elapsed": self.elapsed, "n_evals": self.n_evals, "rng": self.rng,
                        "optimizer": self.optimizer, "best": to_cpu(self.best), "config": json.dumps(config)}, fh)

    @classmethod
    def load(cls, path: str | os.PathLike | None, key: str, batch: int) -> "RefineState | None":
        """The state at ``path`` (None when there is none); ValueError for a damaged file or one of another
        configuration (``key``) or number of models (``batch``)."""
        if path is None or not Path(path).exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged state file is a user-facing condition
            raise ValueError(f"{path} is not a readable refinement state ({type(exc).__name__}); delete it to start "
                             "anew") from None
        if state.get("key") != key or state.get("batch") != batch:
            raise ValueError(f"{path} was written by another configuration or batch; delete it (or use a new --out / "
                             "--overwrite) to start anew")
        return cls(done=int(state["done"]), elapsed=float(state["elapsed"]), n_evals=int(state["n_evals"]),
                   history=state["history"], param=state["param"], optimizer=state.get("optimizer"),
                   rng=state["rng"], best=state.get("best"))

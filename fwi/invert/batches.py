"""Refine many models in chunks: `refine_batches(...) -> RefineResult`, one `refine` call per chunk of models.

deepwave keeps the wavefields of every shot of a `refine` call for the gradient, so its memory grows with the number
of models refined at once (about 0.5 GB per salt70 model); chunking bounds it. The chunks' results are merged into
one `RefineResult` over all models (`merge_results`, `merge_history`), as if one call had refined them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fwi.data.transforms import Normalizer
from fwi.invert.checks import check_inputs
from fwi.invert.config import RefineConfig, RefineResult
from fwi.invert.core import refine
from fwi.physics import Survey

#: History keys summed over the chunks (each chunk's running total); other scalar keys are the same in every chunk.
SUMMED_KEYS = ("seconds", "n_evals")


def merge_history(histories: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-iteration records of chunks refined one after the other as one record list over all their models.

    Per-model values (lists: misfit, mae_ms, ssim, iou) are concatenated in chunk order, ``seconds`` and ``n_evals``
    summed, the rest (iteration, stage, cut-off) taken from the first chunk. Only the iterations every chunk has
    done are kept.
    """
    merged = []
    for entries in zip(*histories):
        entry = dict(entries[0])
        for key, value in entries[0].items():
            if isinstance(value, list):
                entry[key] = [x for e in entries for x in e[key]]
            elif key in SUMMED_KEYS:
                entry[key] = sum(e[key] for e in entries)
        merged.append(entry)
    return merged


def _concat(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    return None if any(p is None for p in parts) else np.concatenate(parts)


def _concat_metrics(parts: Sequence[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray] | None:
    if any(p is None for p in parts):
        return None
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def merge_results(results: Sequence[RefineResult]) -> RefineResult:
    """One `RefineResult` over the models of several (chunk order): per-model arrays concatenated, the history merged
    (`merge_history`), seconds and evaluations summed, the iterations those every chunk has done."""
    if not results:
        raise ValueError("nothing to merge")
    if len(results) == 1:
        return results[0]
    return RefineResult(
        velocity=np.concatenate([r.velocity for r in results]), start=np.concatenate([r.start for r in results]),
        history=merge_history([r.history for r in results]),
        misfit_before=np.concatenate([r.misfit_before for r in results]),
        misfit_after=np.concatenate([r.misfit_after for r in results]),
        seconds=float(sum(r.seconds for r in results)), n_evals=int(sum(r.n_evals for r in results)),
        iterations=min(r.iterations for r in results), complete=all(r.complete for r in results),
        config=results[0].config, salt_prob=_concat([r.salt_prob for r in results]),
        metrics_before=_concat_metrics([r.metrics_before for r in results]),
        metrics_after=_concat_metrics([r.metrics_after for r in results]))


def _fingerprint(*arrays: Any) -> str:
    """Short hash of the inputs that decide a chunk's result (its state file is found by it)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        x = np.ascontiguousarray(torch.as_tensor(a, dtype=torch.float32).detach().cpu().numpy())
        h.update(str(x.shape).encode())
        h.update(x.tobytes())
    return h.hexdigest()[:12]


def chunk_state_path(state_dir: str | os.PathLike, first: int, stop: int, observed: Any, start: Any,
                     salt_prob: Any) -> Path:
    """``<state_dir>/models-<first>-<last>-<hash of the chunk's inputs>.pt``: a rerun with the same models continues;
    other models (another --indices) or another chunking never pick up a state that is not theirs."""
    return Path(state_dir) / f"models-{first}-{stop - 1}-{_fingerprint(observed, start, salt_prob)}.pt"


def refine_batches(run: Any, observed_raw: Any, start_velocity: Any, salt_prob: Any = None,
                   config: RefineConfig | None = None, *, batch_size: int, truth: Any = None, truth_mask: Any = None,
                   normalizer: Normalizer | None = None, start_salt_logits: Any = None,
                   state_dir: str | os.PathLike | None = None, stop_after: int | None = None,
                   device: str | torch.device | None = None, progress: bool | None = None,
                   desc: str = "fwi") -> RefineResult:
    """`refine` the B models in chunks of ``batch_size`` (one after the other) and merge the results.

    Arguments as `refine` (all indexed by model along the first axis, sliced per chunk). ``state_dir``: each chunk
    keeps its own resumable state there (`chunk_state_path`); a rerun continues every chunk where it stopped.
    ``stop_after``: at most this many iterations per chunk in this call.

    The chunk size bounds the memory (deepwave keeps the wavefields of every shot of a chunk) and does not change the
    result for Adam and SGD, which step each model on its own (up to float rounding); L-BFGS couples the models of a
    chunk through its shared line search, and random shot subsets (``shots_per_iter``) are drawn per chunk, so with
    those the result depends on the chunking. The merged `RefineResult` holds every model in input order; its
    ``seconds`` and ``n_evals`` are summed over the chunks.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    config = config or RefineConfig()
    n = len(start_velocity)
    if n == 0:
        raise ValueError("nothing to refine: no starting models")
    # every model is checked before the first chunk runs (refine checks its chunk again)
    check_inputs(run if isinstance(run, Survey) else run.survey, torch.as_tensor(observed_raw, dtype=torch.float32),
                 torch.as_tensor(start_velocity, dtype=torch.float32),
                 None if salt_prob is None else torch.as_tensor(salt_prob, dtype=torch.float32), config)

    def part(x: Any, first: int, stop: int) -> Any:
        return None if x is None else x[first:stop]

    results = []
    for first in range(0, n, batch_size):
        stop = min(n, first + batch_size)
        obs, start, prob = part(observed_raw, first, stop), part(start_velocity, first, stop), \
            part(salt_prob, first, stop)
        state = None if state_dir is None else chunk_state_path(state_dir, first, stop, obs, start, prob)
        label = desc if n <= batch_size else f"{desc} {first + 1}-{stop}/{n}"
        results.append(refine(run, obs, start, prob, config, truth=part(truth, first, stop),
                              truth_mask=part(truth_mask, first, stop), normalizer=normalizer,
                              start_salt_logits=part(start_salt_logits, first, stop), state_path=state,
                              stop_after=stop_after, device=device, progress=progress, desc=label))
    return merge_results(results)

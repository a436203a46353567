"""The worker pool of a generation: the parts not yet on disk, modelled and written by ``workers`` processes
(`multiprocessing`, spawn: the functions the workers run are module-level so that they can be pickled)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fwi.data.geology import GeologyConfig
from fwi.data.modelling import model_part
from fwi.data.codec import GatherStorage
from fwi.data.parts import Part, part_is_complete, write_part
from fwi.physics import Survey


_WORKER: dict = {}


def _init_worker(parts_dir: str, seed: int, survey_json: str, geology: dict, storage: dict, threads: int,
                 device: str = "cpu") -> None:
    torch.set_num_threads(threads)
    _WORKER.update(parts_dir=Path(parts_dir), seed=seed, survey=Survey.from_json(survey_json),
                   geology=GeologyConfig.from_dict(geology), storage=GatherStorage(**storage),
                   device=torch.device(device))


def _run_part(part: Part) -> Part:
    w = _WORKER
    write_part(w["parts_dir"], part, model_part(part, w["seed"], w["survey"], w["geology"], w["device"]),
               w["survey"], w["storage"])
    return part


def generate_parts(parts_dir: Path, manifest: dict, parts: list[Part], workers: int, progress: bool = True,
                   device: torch.device = torch.device("cpu")) -> None:
    """Model every part not yet on disk, with ``workers`` processes (1: in this process; always 1 on CUDA)."""
    if device.type != "cpu":
        workers = 1
    todo = [p for p in parts if not part_is_complete(parts_dir, p)]
    survey = Survey.from_dict(manifest["survey"])
    total = sum(p.count for p in parts)
    bar = tqdm(total=total, initial=total - sum(p.count for p in todo), unit="model", desc="generating",
               disable=not progress, dynamic_ncols=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    init = (str(parts_dir), manifest["seed"], survey.to_json(), manifest["geology"],
            manifest.get("gathers_storage", {}), threads)
    if workers <= 1:
        previous = torch.get_num_threads()
        _init_worker(*init[:5], previous, str(device))
        for part in todo:
            _run_part(part)
            bar.update(part.count)
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for part in pool.imap_unordered(_run_part, todo):
                bar.update(part.count)
    bar.close()

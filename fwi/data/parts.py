"""The part files of a generation in ``<out>.parts/``: the plan, one part's file, its check, the manifest of the
settings, and the merge of all parts into the dataset."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from fwi.atomic import atomic_path, write_text
from fwi.data.codec import GatherStorage
from fwi.data.h5write import check_free_space, h5_writing
from fwi.data.presets import Preset
from fwi.data.store import (ARRAYS, SPLITS, DatasetError, RunningNormalisation, check_sample_arrays, create_split,
                            write_block, write_dataset)
from fwi.data.transforms import decimate_time
from fwi.physics import Survey


MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Part:
    """A block of consecutive samples of one split: the unit of work, of resumption and of sharding."""

    split: str
    start: int
    count: int

    @property
    def filename(self) -> str:
        return f"{self.split}-{self.start:07d}-{self.count:05d}.h5"


def plan_parts(sizes: dict[str, int], per_part: int) -> list[Part]:
    return [Part(split, start, min(per_part, sizes[split] - start))
            for split in SPLITS if split in sizes for start in range(0, sizes[split], per_part)]


def write_part(parts_dir: Path, part: Part, arrays: dict[str, np.ndarray], survey: Survey,
               storage: GatherStorage = GatherStorage()) -> None:
    """Check a generated block and store it in the dataset's own layout (decimated, encoded and compressed by the
    worker, so that the merge copies its chunks as they are), with the normalisation statistics of its full-rate
    gathers as an attribute (as `fwi.data.convert` keeps the source's)."""
    check_sample_arrays(arrays, survey)
    stats = RunningNormalisation()
    stats.update(arrays["velocity"], arrays["gathers"])
    if storage.time_decimation > 1:
        arrays = {**arrays, "gathers": decimate_time(arrays["gathers"], storage.time_decimation)}
    with atomic_path(parts_dir / part.filename) as tmp:
        with h5_writing(tmp, parts_dir / part.filename) as (f, _):
            create_split(f, part.count, survey, storage)
            write_block(f, slice(0, part.count), arrays, storage)
            f.attrs["normalisation"] = json.dumps(stats.result())


def part_is_complete(parts_dir: Path, part: Part) -> bool:
    """A part counts when its file opens and holds the expected number of samples (atomic renames make this so)."""
    path = parts_dir / part.filename
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return all(f[key].shape[0] == part.count for key in ARRAYS)
    except (OSError, KeyError):
        path.unlink()  # unreadable: redo it
        return False


def manifest_for(preset_name: str, preset: Preset, seed: int, sizes: dict[str, int]) -> dict:
    """The settings every part of a generation shares (a compact storage only when the preset has one, so that the
    parts of earlier generations still resume)."""
    storage = {} if preset.storage.is_default else {"gathers_storage": json.loads(preset.storage.to_json())}
    return {"preset": preset_name, "seed": seed, "sizes": sizes, "samples_per_part": preset.samples_per_part,
            "survey": preset.survey.to_dict(), "geology": preset.geology.to_dict(), **storage}


def manifest_storage(manifest: dict) -> GatherStorage:
    """The gather storage of a generation's manifest."""
    return GatherStorage(**manifest.get("gathers_storage", {}))


def prepare_parts_dir(parts_dir: Path, manifest: dict, resume: bool) -> None:
    path = parts_dir / MANIFEST
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != manifest:
            raise DatasetError(f"{parts_dir} holds parts of a generation with other settings; "
                               "use the same preset/seed/sizes, or --overwrite to start again")
        if not resume:
            raise FileExistsError(f"an interrupted generation exists in {parts_dir}; pass --resume to continue it "
                                  "or --overwrite to start again")
        return
    parts_dir.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(manifest, indent=1))


def merge_parts(out: Path, parts_dirs: list[Path], overwrite: bool = False, cleanup: bool = True) -> Path:
    """Assemble the parts (possibly spread over several directories, one per shard) into ``out``."""
    manifests = [json.loads((d / MANIFEST).read_text()) for d in parts_dirs if (d / MANIFEST).exists()]
    if not manifests:
        raise DatasetError(f"no generation manifest in {', '.join(map(str, parts_dirs))}")
    if any(m != manifests[0] for m in manifests[1:]):
        raise DatasetError("the parts directories were generated with different settings and cannot be merged")
    manifest = manifests[0]
    parts = plan_parts(manifest["sizes"], manifest["samples_per_part"])
    where: dict[Part, Path] = {}
    for part in parts:
        found = [d for d in parts_dirs if part_is_complete(d, part)]
        if found:
            where[part] = found[0]
    missing = [p for p in parts if p not in where]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(parts)} parts are missing (first: {missing[0].filename}); "
                           "finish every shard (or run with --resume) before merging")
    survey = Survey.from_dict(manifest["survey"])
    needed = sum((where[p] / p.filename).stat().st_size for p in parts)  # their chunks are copied as they are
    check_free_space(out, needed + (1 << 20), hint="the parts are kept: free some space and merge again")

    def blocks(split: str) -> Iterator[tuple[slice, h5py.Group]]:
        for part in (p for p in parts if p.split == split):
            with h5py.File(where[part] / part.filename, "r") as f:
                yield slice(part.start, part.start + part.count), f

    splits = {s: blocks(s) for s in SPLITS if s in manifest["sizes"]}
    write_dataset(out, splits, survey, sizes=manifest["sizes"], overwrite=overwrite, storage=manifest_storage(manifest),
                  attrs={"generator": {"preset": manifest["preset"], "geology": manifest["geology"]},
                         "seed": manifest["seed"]})
    if cleanup:
        for d in parts_dirs:
            shutil.rmtree(d, ignore_errors=True)
    return out

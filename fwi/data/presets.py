"""Named dataset presets: a survey, split sizes, geology settings (the `PRESETS` registry; `get_preset` by name)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fwi.data.codec import GatherStorage
from fwi.data.geology import FIELD_SALT, FIELD_SALT_SHIFTED, GeologyConfig
from fwi.physics import Survey
from fwi.registry import Registry


@dataclass(frozen=True)
class Preset:
    """Everything that defines a generated dataset apart from the seed."""

    survey: Survey
    sizes: dict[str, int]
    geology: GeologyConfig = field(default_factory=GeologyConfig)
    samples_per_part: int = 16
    description: str = ""
    #: how the generated file stores its gathers (default: float32 at the full time rate); a compact storage is
    #: written directly by the generation, without a full-rate file first (`fwi.data.convert` gives the same layout)
    storage: GatherStorage = field(default_factory=GatherStorage)


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.register("salt70", Preset(
    survey=Survey(),
    sizes={"train": 4000, "val": 500, "test": 500},
    description="research setting: the OpenFWI geometry (70 x 70, 5 shots, 1000 x 1 ms, 70 receivers)",
))
PRESETS.register("ablation70", Preset(
    survey=Survey(),
    sizes={"train": 6000, "val": 200, "test": 200},
    description="the salt70 geometry sized for the recorded CPU ablation (configs/ablation_base.yaml)",
))
PRESETS.register("quick", Preset(
    survey=Survey(),
    sizes={"train": 480, "val": 64, "test": 64},
    description="the salt70 geometry with few models: the README's main job on two CPU cores",
))
PRESETS.register("segsalt", Preset(
    survey=Survey(nz=201, nx=301, dx=10.0, nt=2000, dt=0.001, freq=15.0, n_sources=29, n_receivers=301),
    sizes={"train": 1600, "val": 100, "test": 100},
    samples_per_part=4,
    description="GPU-sized: the SEG salt geometry of FCNVMB / DD-Net (201 x 301 at 10 m, 29 shots, 301 "
                "receivers, 2 s at 1 ms, 15 Hz: 5 points per wavelength at 1500 m/s); ~70 MB of float32 gathers "
                "per model, so store it compact (convert --time-decimation 5 --dtype int16 gives their 400 "
                "time samples)",
))
#: The field-scale survey: the SEG salt extent (2 km x 3 km) on a 20 m grid. Why these numbers:
#: experiments/fieldsalt/README.md.
FIELD_SURVEY = Survey(nz=101, nx=151, dx=20.0, nt=1250, dt=0.0016, freq=7.0, n_sources=15, n_receivers=151,
                      source_depth=20.0, receiver_depth=20.0)
#: fieldsalt's gathers as stored: what the network reads (configs/fieldsalt.yaml: time_decimation 10), Nyquist
#: 31 Hz for a 7 Hz Ricker (nothing above ~20 Hz), int16 with a per-sample scale.
FIELD_STORAGE = GatherStorage(time_decimation=10, encoding="int16", compression="zstd")
PRESETS.register("fieldsalt", Preset(
    survey=FIELD_SURVEY,
    sizes={"train": 4000, "val": 500, "test": 500},
    geology=FIELD_SALT,
    samples_per_part=8,
    description="research setting at field scale: the SEG salt extent of FCNVMB / DD-Net (2 km deep x 3 km wide) "
                "on 101 x 151 cells of 20 m, 15 shots (every ~214 m, mirror-symmetric) and 151 receivers over the "
                "full width at 20 m depth, 2 s of data (1250 x 1.6 ms), 7 Hz Ricker (energy from ~2 to ~20 Hz); "
                "5.4 points per wavelength at 1500 m/s and 14 Hz, dt below the CFL limit at 5000 m/s (1.70 ms: one "
                "deepwave step per sample, half the steps of 1000 x 2 ms); geology FIELD_SALT (SEG-salt-like "
                "layers, domes, diapirs, lenses); stored compact as it is generated (gathers decimated 10x in time "
                "to 125 samples of 16 ms, int16 + Zstd with checksums: ~0.3 MB per model instead of 9.1 MB)",
    storage=FIELD_STORAGE,
))
PRESETS.register("fieldsalt-shifted", Preset(
    survey=FIELD_SURVEY,
    sizes={"train": 32, "test": 500},
    geology=FIELD_SALT_SHIFTED,
    samples_per_part=8,
    description="test family for fieldsalt, never trained on: the same survey, geology FIELD_SALT_SHIFTED "
                "(thinner, more jittered and more deformed layers, 2-4 faults, sills, more salt); evaluate its test "
                "split with a fieldsalt run (fwi.evaluate RUN --data FILE: the run's normalisation is used); the "
                "32-model train split exists only because a dataset file records its train split's statistics",
    storage=FIELD_STORAGE,
))
PRESETS.register("tiny", Preset(
    survey=Survey(nz=32, nx=33, dx=10.0, nt=300, dt=0.001, freq=15.0, n_sources=3, n_receivers=33),
    sizes={"train": 12, "val": 4, "test": 4},
    samples_per_part=4,
    description="seconds to make: tests and smoke runs",
))


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError ``unknown preset 'x'; valid: salt70, ...`` otherwise."""
    return PRESETS.get(name)

"""What a part holds: its salt velocity models (drawn from the seed sequence (seed, split, i)) and their shot
gathers, forward-modelled on the CPU or in batches on a GPU."""

from __future__ import annotations

import numpy as np
import torch

from fwi.data.geology import GeologyConfig, generate_model
from fwi.data.parts import Part
from fwi.physics import Survey, forward_model


SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def sample_models(split: str, indices: range, seed: int, survey: Survey,
                  geology: GeologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Velocity (n, nz, nx) float32 and salt masks (n, nz, nx) uint8 for the given sample indices."""
    pairs = [generate_model(np.random.SeedSequence([seed, SPLIT_CODES[split], i]), survey.nz, survey.nx, geology)
             for i in indices]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def models_per_batch(survey: Survey, device: torch.device, fraction: float = 0.5) -> int:
    """How many models one deepwave call propagates on ``device``: ``fraction`` of the free memory over an estimate
    of one model's working set (velocity, ~8 padded wavefields per shot, the gathers), at least 1."""
    if device.type != "cuda":
        return 1 << 30  # CPU: the whole part at once, as always (keeps the CPU path bit for bit)
    free, _ = torch.cuda.mem_get_info(device)
    pad = 2 * (survey.pml_width + survey.accuracy)
    cells = (survey.nz + pad) * (survey.nx + pad)
    per_model = 4 * (cells * (1 + 8 * survey.n_sources) + survey.n_sources * survey.nt * survey.n_receivers)
    return max(1, int(free * fraction // per_model))


def model_part(part: Part, seed: int, survey: Survey, geology: GeologyConfig,
               device: torch.device = torch.device("cpu")) -> dict[str, np.ndarray]:
    """Generate and forward-model one part: velocity (n,1,nz,nx), salt_mask (n,1,nz,nx), gathers (n,S,T,R).

    On CUDA the models are propagated in batches sized by `models_per_batch`; float32 results then differ from the
    CPU path by rounding only (different kernels and summation order): expected within ~1e-5 of each gather's peak
    amplitude (not tested here: no GPU on the development machine; `experiments/bench/gpu_check.sh` measures it).
    """
    velocity, mask = sample_models(part.split, range(part.start, part.start + part.count), seed, survey, geology)
    with torch.no_grad():
        if device.type == "cpu":
            gathers = forward_model(torch.from_numpy(velocity), survey).numpy()
        else:
            step = models_per_batch(survey, device)
            gathers = np.concatenate([forward_model(torch.from_numpy(velocity[i:i + step]).to(device), survey).cpu()
                                      .numpy() for i in range(0, len(velocity), step)])
    return {"velocity": velocity[:, None], "salt_mask": mask[:, None], "gathers": gathers}

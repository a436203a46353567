"""The generator's output is frozen: recorded datasets (salt70, ablation70, quick) depend on it bit for bit.

The reference hashes were computed with the generator as it was *before* `generate_model` was cut into step
functions (issue 28) and before the field-scale settings were added (issue 30). Each case is a configuration that
exercises other branches of the generator (water, faults, an unconformity, the dilation/erosion to the salt fraction
bounds, weighted kinds with sills); each hashes six models drawn from the seed sequences the dataset generator uses,
``(seed, split, i)``, and one model of another grid shape.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fwi.data.geology import GeologyConfig, generate_model

CASES = {
    "salt70": GeologyConfig(),
    "water_faults_unconf": GeologyConfig(water_prob=1.0, n_faults=(2, 3), unconformity_prob=1.0),
    "tight_fraction": GeologyConfig(min_salt_fraction=0.25, max_salt_fraction=0.3, max_salt_tries=2),
    "small_fraction": GeologyConfig(min_salt_fraction=0.03, max_salt_fraction=0.05, max_salt_tries=2),
    "sills_weighted": GeologyConfig(salt_kind_weights=(1.0, 0.0, 1.0, 3.0), n_salt=(2, 4)),
}
#: (seed, split code, index) of the dataset generator's seed sequences (fwi.data.modelling.sample_models)
SEQUENCES = [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 2, 3), (0, 0, 17)]
REFERENCE = {
    "salt70": ["99b6e495d57a74db", "8dac1b375151b155", "5f4ec946706551ce",
               "08cbffec37d13893", "72d0d9aa9fe5201e", "06b19a8a50081b29", "9152d4be761dfeaa"],
    "water_faults_unconf": ["58b38ce19c1edbf9", "f0fe35af5ce28900", "74ac07e2b7358ec1",
                            "a06e343d8b789ed6", "e2d2c722af10a36c", "06b19a8a50081b29", "1145a8bc12f09194"],
    "tight_fraction": ["70c7a06ab1946a72", "9a1f7cf989ee787d", "b1bcdf81ae3875e4",
                       "ed7fee457cc5c3da", "73ec9515c68b3781", "1dfd234cfaee8479", "fd63a2a8535430aa"],
    "small_fraction": ["99b6e495d57a74db", "8dac1b375151b155", "d295819dbe1941ff",
                       "c02e2d277328d46f", "fd7aa861892eaff3", "9688f96c256b42bf", "5c5b42df966a609e"],
    "sills_weighted": ["112ad9cca38cd559", "419e29ac0b66b278", "3cf2b6d92d8578ab",
                       "48613aaba27d8f01", "7d9e0364a5fb0139", "5223eb45d238089e", "8cc778f3753b7a89"],
}


def _hash(velocity: np.ndarray, mask: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(velocity).tobytes())
    digest.update(np.ascontiguousarray(mask).tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(CASES))
def test_models_are_bit_identical_to_the_recorded_generator(case):
    config = CASES[case]
    got = [_hash(*generate_model(np.random.SeedSequence(list(seq)), 70, 70, config)) for seq in SEQUENCES]
    got.append(_hash(*generate_model(5, 35, 100, config)))
    assert got == REFERENCE[case]

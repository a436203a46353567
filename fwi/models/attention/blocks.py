"""Imports every block module so that each registers itself (one module per block, named as its registry name)."""

from fwi.models.attention import (  # noqa: F401
    a2,
    aft,
    bam,
    ca,
    cbam,
    da,
    eca,
    gate,
    muse,
    nl,
    psa,
    scse,
    se,
    sge,
    shuffle,
    simam,
    sk,
)

"""Imports every block module so that each registers itself (one module per block or family)."""

from fwi.models.attention import (  # noqa: F401
    aft,
    bam,
    cbam,
    coord,
    danet,
    double,
    eca,
    gate,
    mhsa,
    muse,
    psa,
    scse,
    se,
    sge,
    shuffle,
    simam,
    sk,
)

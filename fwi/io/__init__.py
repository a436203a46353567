"""SEG-Y input/output (`fwi.io.segy`) and the SEG-Y -> HDF5 dataset importer (`python -m fwi.io.importer`)."""

from fwi.io.segy import (SegyError, ShotGather, read_gathers, read_traces, read_velocity, stack_gathers,
                         write_gathers, write_velocity)

__all__ = ["SegyError", "ShotGather", "read_gathers", "read_traces", "read_velocity", "stack_gathers",
           "write_gathers", "write_velocity"]

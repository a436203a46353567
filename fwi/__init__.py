"""fwi: attention U-Nets for data-driven full-waveform inversion of salt bodies."""

import os

# torch and deepwave each ship their own OpenMP runtime. With the default (active) wait policy the idle threads of
# one spin while the other works, which made deepwave calls after a torch step 20-100x slower on CPU (measured:
# 0.07 s -> 1-10 s). Passive waiting removes the contention; it must be set before either library starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

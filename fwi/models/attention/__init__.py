"""Attention blocks and skip gates, built by name: `fwi.models.attention.registry` (``create_attn``,
``create_gate``, ``list_attn``, ``list_gates``).

One module per block, named as the block's registry name (``ca.py`` is ``--attn ca``); shared pieces in
``common.py`` (widths, divisors, multi-head attention) and ``se.py`` (`ChannelAttn`, the channel attention that CBAM,
BAM and scSE hold as their ``channel`` branch). Importing this package imports every module in it, so each block
registers itself.

Adding a block: write ``fwi/models/attention/<name>.py`` holding a module class (or factory function)
``(channels, **options)`` that maps (B, C, H, W) -> (B, C, H, W), decorated with ``@register_attn("<name>")`` from
`fwi.models.attention.registry` (a gate: ``(skip_channels, gating_channels, **options)`` with
``@register_gate``). Nothing else to edit: the file is imported with the package, ``--attn <name>`` accepts it,
``python -m fwi.models.summary --all-attn`` lists it, and ``tests/models`` checks that every module here registers
under its file name; run ``python tests/models/test_state_dict_keys.py`` once to record its checkpoint keys.
Options with a default are the block's options (a mistyped one is an error); ``reduction`` is set by
``--attn-reduction``.
"""

import importlib
import pkgutil

#: Modules of this package that hold helpers, not blocks (every other module registers a block or a gate).
HELPER_MODULES = ("common", "registry")

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

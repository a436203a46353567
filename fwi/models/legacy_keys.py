"""Checkpoints written before a layer was renamed or moved still load: the old state-dict keys are renamed at load.

A module whose children changed names calls ``rename_on_load(self, {"old.": "new."})`` in its constructor. Its
``load_state_dict`` pre-hook then moves every key ``<prefix>old...`` of the incoming state dict to ``<prefix>new...``,
once, before anything is loaded, so every loader (``load_state_dict``, strict or not, on the module or on any network
holding it) reads old and new checkpoints alike. A key whose new name is also present is left alone (it then counts
as unexpected). Saving always writes the new names.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn


def renamed_key(key: str, renames: Mapping[str, str]) -> str | None:
    """``key`` with its first matching old prefix replaced by the new one; None when no old prefix matches."""
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def rename_on_load(module: nn.Module, renames: Mapping[str, str]) -> None:
    """Make ``module`` accept state dicts with the old key prefixes of ``renames`` (old -> new, relative to it)."""
    renames = dict(renames)

    def hook(mod: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = renamed_key(key[len(prefix):], renames)
            if new is not None and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(key)

    module.register_load_state_dict_pre_hook(hook)

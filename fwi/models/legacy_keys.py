"""Checkpoints written before a layer was renamed or moved still load: the old state-dict keys are renamed at load.

A module whose children changed names calls ``rename_on_load(self, {"old.": "new."})`` in its constructor. Its
``load_state_dict`` pre-hook then moves every key ``<prefix>old...`` of the incoming state dict to ``<prefix>new...``,
once, before anything is loaded, so every loader (``load_state_dict``, strict or not, on the module or on any network
holding it) reads old and new checkpoints alike. A key whose new name is also present is left alone (it then counts
as unexpected). Saving always writes the new names.

A move can also change the order of ``model.parameters()`` (the U-Net decoder's levels), by which an optimizer keys
its per-parameter state: `optimizer_state_for` puts a checkpoint's optimizer state in today's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

_RENAMES = "_legacy_key_renames"  # attribute holding a module's renames (old prefix -> new prefix)


def renamed_key(key: str, renames: Mapping[str, str]) -> str | None:
    """``key`` with its first matching old prefix replaced by the new one; None when no old prefix matches."""
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _rename_hook(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    renames = getattr(module, _RENAMES)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = renamed_key(key[len(prefix):], renames)
        if new is not None and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(key)


def rename_on_load(module: nn.Module, renames: Mapping[str, str]) -> None:
    """Make ``module`` accept state dicts with the old key prefixes of ``renames`` (old -> new, relative to it)."""
    setattr(module, _RENAMES, dict(renames))
    module.register_load_state_dict_pre_hook(_rename_hook)


def upgrade_keys(model: nn.Module, keys: Iterable[str]) -> list[str]:
    """State-dict ``keys`` (in their order) under the names ``model`` loads them as."""
    keys = list(keys)
    for prefix, module in model.named_modules():  # parents first, as load_state_dict runs the hooks
        renames = getattr(module, _RENAMES, None)
        if not renames:
            continue
        prefix = f"{prefix}." if prefix else ""
        present = set(keys)
        for i, key in enumerate(keys):
            new = renamed_key(key[len(prefix):], renames) if key.startswith(prefix) else None
            if new is not None and prefix + new not in present:
                keys[i] = prefix + new
    return keys


def optimizer_state_for(model: nn.Module, saved_keys: Iterable[str], state: dict[str, Any]) -> dict[str, Any]:
    """``state``, the state dict of a one-group optimizer over ``model.parameters()`` saved beside a model state dict
    with keys ``saved_keys`` (in order), with its per-parameter entries in today's ``model.parameters()`` order.

    An optimizer keys its state by parameter position; the saved model's key order gives the order its parameters
    had. Returned unchanged when the orders agree or cannot be matched (then loading fails as it would have).
    """
    names = [name for name, _ in model.named_parameters()]
    index = {name: i for i, name in enumerate(names)}
    saved = [key for key in upgrade_keys(model, saved_keys) if key in index]
    if saved == names or sorted(saved) != sorted(names) or len(state.get("param_groups", ())) != 1:
        return state
    new_index = [index[name] for name in saved]  # saved position -> today's position
    return {**state, "state": {new_index[int(i)]: v for i, v in state["state"].items()}}

"""Configs: the dataclass defaults as the one source of the research setting, ``base:`` chains, renamed keys and flags
(old files, checkpoints and commands still work), and a YAML read that loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fwi.checkpoint import load_checkpoint, save_checkpoint
from fwi.config import Config, flatten_config, load_config, parse_args, read_config_file, upgrade_config
from fwi.ablation.spec import build_ablation, load_spec

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def test_reading_a_config_loads_neither_torch_nor_deepwave():
    code = ("import sys; from fwi.config import load_config; cfg = load_config(sys.argv[1]); "
            "print(cfg.model.arch, [m for m in ('torch', 'deepwave', 'torchmetrics') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(CONFIGS / "quick.yaml")], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out == ["unet", "[]\n"]


def test_default_yaml_is_the_dataclass_defaults_and_sets_nothing():
    assert read_config_file(CONFIGS / "default.yaml") == {}
    assert load_config(CONFIGS / "default.yaml") == Config() == load_config(None)
    # the research setting, as the README states it
    d = Config()
    assert (d.data.preset, d.model.base_channels, d.optim.epochs, d.optim.lr, d.loss.salt_weight) == \
        ("salt70", 32, 80, 1e-3, 0.5)


def test_every_shipped_config_names_a_base_and_sets_only_what_differs():
    for path in sorted(CONFIGS.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        if path.name == "default.yaml":
            continue
        assert raw.get("base") == "default.yaml", path
        resolved_base = Config().to_dict()
        for section, values in raw.items():
            if section == "base":
                continue
            for key, value in values.items():
                default = resolved_base[section][key]
                assert value != default, f"{path.name}: {section}.{key} = {value!r} restates the default"


def test_base_chains_merge_section_by_section(tmp_path):
    (tmp_path / "a.yaml").write_text("optim: {epochs: 3, lr: 0.01}\nmodel: {attn: se, skip_attn: true}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\noptim: {epochs: 5}\n")
    (tmp_path / "c.yaml").write_text("base: sub/b.yaml\nmodel: {base_channels: 8}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.model.attn, cfg.model.skip_attn, cfg.model.base_channels) == \
        (5, 0.01, "se", True, 8)
    assert cfg.optim.batch_size == Config().optim.batch_size  # untouched keys keep the defaults


def test_a_base_cycle_and_a_missing_base_are_one_line_errors(tmp_path):
    (tmp_path / "x.yaml").write_text("base: y.yaml\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(ValueError, match="in a cycle: .*x.yaml -> .*y.yaml -> .*x.yaml"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "z.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml does not exist"):
        load_config(tmp_path / "z.yaml")


def test_old_key_and_old_flag_of_the_network_family_still_work(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  name: inversionnet\n")  # as configs were written before the rename
    assert load_config(old).model.arch == "inversionnet"
    for flags in (["--model", "inversionnet"], ["--model=inversionnet"], ["--arch", "inversionnet"]):
        assert parse_args(["--config", str(CONFIGS / "tiny.yaml"), *flags]).model.arch == "inversionnet"
    assert upgrade_config({"model": {"name": "unet", "attn": "se"}}) == {"model": {"arch": "unet", "attn": "se"}}


def test_print_config_round_trips(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--config", str(CONFIGS / "quick.yaml"), "--attn", "ca", "--skip-attn", "--print-config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = parse_args(["--config", str(CONFIGS / "quick.yaml"), "--attn", "ca", "--skip-attn"])
    assert printed == expected.to_dict()


def test_the_ablation_spec_still_resolves_to_the_recorded_cells():
    """Shortening the configs (``base:``) and renaming ``name`` -> ``arch`` changed no cell of the recorded ablation."""
    spec = CONFIGS / "ablation" / "salt70_attention.yaml"
    ablation = build_ablation(load_spec(spec), str(spec.relative_to(ROOT)), out=ROOT / "experiments")
    runs = ROOT / "experiments" / "salt70_attention" / "runs"
    checked = 0
    for cell in ablation.cells:
        recorded = yaml.safe_load((runs / cell.run / "config.yaml").read_text())
        resolved = flatten_config(dict(cell.config, run={**cell.config["run"], "out": recorded["run"]["out"]}))
        old = flatten_config(upgrade_config(recorded))
        old.pop("run.resume")  # how the cell was last invoked (two cells were resumed), not what it is
        assert {k: resolved[k] for k in old} == old, cell.run
        # keys added since the cell ran keep the behaviour it had: their defaults
        defaults = flatten_config(Config().to_dict())
        assert {k: resolved[k] for k in resolved if k not in old} == {k: defaults[k] for k in resolved if k not in old}
        checked += 1
    assert checked == 28


def test_a_checkpoint_recorded_with_the_old_key_loads_and_resumes(tiny_run, tmp_path):
    from fwi.run import load_run
    from fwi.continuation import resume_conflicts

    state = load_checkpoint(tiny_run / "best.pt")
    old = json.loads(json.dumps(state["config"]))
    old["model"]["name"] = old["model"].pop("arch")
    save_checkpoint({**state, "config": old}, tmp_path / "old.pt")
    new_run, old_run = load_run(tiny_run / "best.pt"), load_run(tmp_path / "old.pt")
    x = torch.randn(2, *new_run.data_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(new_run.predict(x)["velocity"], old_run.predict(x)["velocity"])
    assert resume_conflicts(state["config"], old) == []
    # a key added since the checkpoint was written counts as its default: no conflict, unless it was changed
    del old["data"]["train_samples"]
    assert resume_conflicts(state["config"], old) == []
    changed = json.loads(json.dumps(state["config"]))
    changed["data"]["train_samples"] = 5
    assert resume_conflicts(changed, old) == ["data.train_samples (0 -> 5)"]


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
@pytest.mark.parametrize("flags, message", [
    (["--bogus-flag", "1"], "Unrecognized options: --bogus-flag, 1 (see"),
    (["--epochs", "abc"], "'abc' (expected --epochs INT) (see"),
    (["--lrr", "1e-3"], "did you mean --lr?"),
])
def test_a_flag_error_is_the_same_line_whatever_the_console_encoding(monkeypatch, encoding, flags, message):
    # tyro boxes its message in Unicode lines on a UTF-8 stdout and in ASCII dashes on any other (a job log, a
    # non-UTF-8 console); the one-line error must read the same in both
    import io

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding=encoding))
    with pytest.raises(ValueError) as info:
        parse_args(flags)
    assert message in str(info.value) and "--" * 4 not in str(info.value) and "─" not in str(info.value)

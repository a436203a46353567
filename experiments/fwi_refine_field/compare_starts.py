"""Does one network give a better starting model for FWI than another? Paired over the same models.

    python experiments/fwi_refine_field/compare_starts.py --dir experiments/fwi_refine_field/results/test24 \
        --method sgd+continuation-lr02 --base unet-s0 --other ca-skip-s0

Reads the two jobs ``<dir>/<start>__<method>.json`` written by ``experiments/fwi_refine/run_study.py`` (same FWI;
the models both refined are compared, e.g. the first 12 of one job's 24) and writes
``<dir>/starts__<other>-vs-<base>__<method>.md``: per metric, both starts before and after FWI and the difference
other - base before and after, mean ± standard error over the models (the same models for both, so the pairing
removes the spread between models), with the number of models where ``other`` is better. Repeat ``--dir`` to pool
the models of several tags (e.g. ``--dir results/test24 --dir results/test24-36``); the record then goes to the last
folder.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from fwi.atomic import write_text

#: (per-model key, heading, higher is better, format)
METRICS = (("mae_ms", "MAE (m/s)", False, ".1f"), ("rmse_ms", "RMSE (m/s)", False, ".1f"),
           ("ssim", "SSIM", True, ".4f"), ("iou", "salt IoU", True, ".4f"), ("misfit", "data misfit", False, ".4f"))


def load_job(folders: list[Path], start: str, method: str) -> dict:
    """The job ``<start>__<method>.json`` of one results folder, or of several merged: the same start refined with
    the same FWI on different models (e.g. tags test24 and test24-36), indices and per-model values concatenated in
    folder order. An error when a folder lacks the job, or the parts differ in run, data, split or FWI settings, or
    refined a model twice."""
    parts = []
    for folder in folders:
        path = folder / f"{start}__{method}.json"
        if not path.is_file():
            raise SystemExit(f"{path} not found: run experiments/fwi_refine/run_study.py with --run {start}=RUN "
                             f"--methods {method} (and --out/--tag of {folder})")
        parts.append(json.loads(path.read_text()))
    job = parts[0]
    for part, folder in zip(parts[1:], folders[1:]):
        differ = [k for k in ("run", "data", "split", "fields", "iterations") if part[k] != job[k]]
        if differ:
            raise SystemExit(f"{start}__{method} in {folder} differs from {folders[0]} in {', '.join(differ)}: "
                             "only parts of one job can be merged")
        twice = sorted(set(part["indices"]) & set(job["indices"]))
        if twice:
            where = ", ".join(map(str, folders))
            raise SystemExit(f"{start}__{method}: models {_ranges(twice)} are in more than one of {where}")
        job = {**job, "indices": job["indices"] + part["indices"],
               "per_model": {k: v + part["per_model"][k] for k, v in job["per_model"].items()}}
    return job


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se


def common_models(base: dict, other: dict) -> list[int]:
    """The dataset indices both jobs refined (in ``base``'s order); an error when they share none or differ in data,
    split or FWI settings."""
    if base["data"] != other["data"] or base["split"] != other["split"]:
        raise SystemExit("the two jobs refined models of different datasets or splits")
    if base["fields"] != other["fields"] or base["iterations"] != other["iterations"]:
        raise SystemExit("the two jobs ran different FWI settings")
    common = [i for i in base["indices"] if i in set(other["indices"])]
    if not common:
        raise SystemExit("the two jobs share no model: run both with overlapping --indices")
    return common


def per_model(job: dict, key: str, indices: list[int]) -> list[float]:
    """``job``'s per-model values of ``key`` for the dataset ``indices``."""
    where = {i: n for n, i in enumerate(job["indices"])}
    return [job["per_model"][key][where[i]] for i in indices]


def compare(base: dict, other: dict) -> list[dict]:
    """Per metric and stage (before / after FWI), on the models both jobs refined: both means, the paired difference
    other - base ± s.e., and how many models ``other`` is better on."""
    models = common_models(base, other)
    rows = []
    for key, heading, higher, fmt in METRICS:
        for stage in ("before", "after"):
            b, o = per_model(base, f"{key}_{stage}", models), per_model(other, f"{key}_{stage}", models)
            diff, se = mean_se([x - y for x, y in zip(o, b)])
            better = sum((x > y) if higher else (x < y) for x, y in zip(o, b))
            rows.append({"metric": heading, "stage": stage, "base": sum(b) / len(b), "other": sum(o) / len(o),
                         "diff": diff, "se": se, "better": better, "n": len(b), "fmt": fmt})
    return rows


def render(base: dict, other: dict, rows: list[dict], command: str) -> str:
    models = common_models(base, other)
    lines = [f"# FWI start: `{other['start']}` against `{base['start']}`, method `{base['method']}`", "",
             f"`{command}`", "",
             f"{len(models)} models of `{base['data']}` ({base['split']} split, indices {_ranges(models)}) refined "
             f"from both starts, {base['iterations']} iterations; `{base['start']}` from "
             f"`{base['run']}`, `{other['start']}` from `{other['run']}`. Difference = {other['start']} - "
             f"{base['start']}, mean ± standard error over the same models (paired); 'better' counts the models where "
             f"`{other['start']}` is better.", "",
             f"| metric | stage | {base['start']} | {other['start']} | difference | better |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        f = r["fmt"]
        lines.append(f"| {r['metric']} | {'network' if r['stage'] == 'before' else 'after FWI'} | "
                     f"{format(r['base'], f)} | {format(r['other'], f)} | {format(r['diff'], '+' + f)} ± "
                     f"{format(r['se'], f)} | {r['better']}/{r['n']} |")
    gain = {s: next(r for r in rows if r["metric"] == "MAE (m/s)" and r["stage"] == s) for s in ("before", "after")}
    lines += ["", f"MAE change under FWI: `{base['start']}` {gain['after']['base'] - gain['before']['base']:+.1f} m/s, "
              f"`{other['start']}` {gain['after']['other'] - gain['before']['other']:+.1f} m/s; the difference "
              f"between the starts goes from {gain['before']['diff']:+.1f} ± {gain['before']['se']:.1f} to "
              f"{gain['after']['diff']:+.1f} ± {gain['after']['se']:.1f} m/s.", ""]
    return "\n".join(lines)


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    parts, start = [], None
    for k, i in enumerate(indices):
        start = i if start is None else start
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            parts.append(f"{start}-{i}" if i > start else str(i))
            start = None
    return ", ".join(parts)


def add_dir_argument(p: argparse.ArgumentParser) -> None:
    """``--dir`` (repeatable): the study folders whose jobs are read."""
    p.add_argument("--dir", type=Path, action="append", required=True,
                   help="a study's results/<tag> folder; repeat to merge the jobs of several tags (other models)")


def add_job_arguments(p: argparse.ArgumentParser, method: str, start_help: str) -> None:
    """The flags that name the jobs compared: ``--dir`` (repeatable), ``--method``, ``--base`` and ``--other``."""
    add_dir_argument(p)
    p.add_argument("--method", default=method)
    p.add_argument("--base", required=True, help=f"the reference: {start_help}")
    p.add_argument("--other", required=True, help=f"compared with it: {start_help}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_job_arguments(p, "sgd+continuation-lr02", "a start label (e.g. unet-s0, ca-skip-s0)")
    args = p.parse_args()
    base, other = load_job(args.dir, args.base, args.method), load_job(args.dir, args.other, args.method)
    dirs = " ".join(f"--dir {d}" for d in args.dir)
    command = (f"python experiments/fwi_refine_field/compare_starts.py {dirs} --method {args.method} "
               f"--base {args.base} --other {args.other}")
    out = args.dir[-1] / f"starts__{args.other}-vs-{args.base}__{args.method}.md"
    write_text(out, render(base, other, compare(base, other), command))
    print(out.read_text())


if __name__ == "__main__":
    main()

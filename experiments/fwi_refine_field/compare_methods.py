"""Does one FWI method end better than another from the same starts? Paired over the same models.

    python experiments/fwi_refine_field/compare_methods.py --dir experiments/fwi_refine_field/results/test24-36 \
        --starts unet-s0,unet-s1,ca-skip-s0,ca-skip-s1 \
        --base network-prior+continuation --other network-prior+continuation+keep-best

Reads the jobs ``<dir>/<start>__<method>.json`` of ``experiments/fwi_refine/run_study.py`` (``--dir`` repeatable to
pool tags, as in ``compare_starts.py``) and writes ``<last dir>/methods__<other>-vs-<base>.md``: per start and pooled
over every (start, model) pair, the metrics after FWI of both methods and the paired difference other - base, mean ±
standard error over the pairs, with the number of pairs where ``other`` is better. The pooled error treats the pairs
as independent; the same model under four starts is not quite that, so read it as a lower bound. When ``other``
recorded ``kept_iteration`` (``keep_best``), the table also counts per stage how many models left the stage at an
earlier iterate than its last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compare_starts import METRICS, _ranges, add_dir_argument, load_job, mean_se, per_model

from fwi.atomic import write_text


def pairs(base: dict, other: dict) -> list[int]:
    """The dataset indices both jobs refined from the same start (an error when they share none or other data)."""
    if (base["data"], base["split"], base["run"]) != (other["data"], other["split"], other["run"]):
        raise SystemExit(f"{base['start']}: the two methods' jobs refined other data, split or network")
    common = [i for i in base["indices"] if i in set(other["indices"])]
    if not common:
        raise SystemExit(f"{base['start']}: the two methods share no model")
    return common


def rows_of(label: str, values: list[tuple[list[float], list[float]]], n_models: str) -> list[str]:
    """One table row per metric after FWI from ``values[k] = (base, other)`` per metric of ``METRICS``."""
    out = []
    for (_, heading, higher, fmt), (b, o) in zip(METRICS, values):
        diff, se = mean_se([x - y for x, y in zip(o, b)])
        better = sum((x > y) if higher else (x < y) for x, y in zip(o, b))
        out.append(f"| {label} | {n_models} | {heading} | {format(sum(b) / len(b), fmt)} | "
                   f"{format(sum(o) / len(o), fmt)} | {format(diff, '+' + fmt)} ± {format(se, fmt)} | "
                   f"{better}/{len(b)} |")
    return out


def kept_earlier(job: dict) -> str | None:
    """Per stage, how many models left it at an iterate before its last (``kept_iteration`` of keep_best)."""
    ends = [h for h in job.get("history", []) if "kept_iteration" in h]
    if not ends:
        return None
    def band(cutoff: float | None) -> str:
        return "full band" if cutoff is None else f"{cutoff:g} Hz"

    return ", ".join(f"stage {h['stage']} ({band(h['cutoff'])}): {sum(k < h['iteration'] for k in h['kept_iteration'])}"
                     f"/{len(h['kept_iteration'])}" for h in ends)


def compare(folders: list[Path], starts: list[str], base_method: str, other_method: str) -> tuple[list[str], list[str]]:
    """The table's rows and the keep-best lines, per start and pooled."""
    table, notes = [], []
    pooled: list[tuple[list[float], list[float]]] = [([], []) for _ in METRICS]
    for start in starts:
        base, other = load_job(folders, start, base_method), load_job(folders, start, other_method)
        models = pairs(base, other)
        values = [(per_model(base, f"{key}_after", models), per_model(other, f"{key}_after", models))
                  for key, *_ in METRICS]
        for (pb, po), (b, o) in zip(pooled, values):
            pb.extend(b)
            po.extend(o)
        table += rows_of(start, values, f"{len(models)} ({_ranges(models)})")
        if len(folders) == 1 and (kept := kept_earlier(other)):
            notes.append(f"- `{start}`: models leaving a stage at an earlier iterate: {kept}")
    if len(starts) > 1:
        table += rows_of("pooled", pooled, str(len(pooled[0][0])))
    return table, notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dir_argument(p)
    p.add_argument("--starts", required=True, help="comma-separated start labels, e.g. unet-s0,ca-skip-s0")
    p.add_argument("--base", required=True, help="the reference method, e.g. network-prior+continuation")
    p.add_argument("--other", required=True, help="the method compared with it")
    args = p.parse_args()
    starts = args.starts.split(",")
    table, notes = compare(args.dir, starts, args.base, args.other)
    dirs = " ".join(f"--dir {d}" for d in args.dir)
    lines = [f"# FWI method `{args.other}` against `{args.base}`", "",
             f"`python experiments/fwi_refine_field/compare_methods.py {dirs} --starts {args.starts} "
             f"--base {args.base} --other {args.other}`", "",
             "After FWI, from the same starts and models; difference = other - base, mean ± standard error over the "
             "pairs; 'better' counts the pairs where the other method ends better.", "",
             f"| start | models | metric | {args.base} | {args.other} | difference | better |",
             "|---|---|---|---|---|---|---|", *table]
    if notes:
        lines += ["", f"`{args.other}`, per start:", *notes]
    out = args.dir[-1] / f"methods__{args.other}-vs-{args.base}.md"
    write_text(out, "\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()

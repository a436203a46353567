"""Ablations: a grid of training runs (variants x physics x seeds + extra cells), aggregated into a report.

One module per job: :mod:`~fwi.ablation.spec` (spec validation, cells and their resolved configs),
:mod:`~fwi.ablation.runner` (datasets, cell.yaml, training/evaluation commands through :mod:`fwi.launch`),
:mod:`~fwi.ablation.results` (metrics of the runs, results.csv), :mod:`~fwi.ablation.stats` (mean ± std,
pooled variance, Student's t, differences), :mod:`~fwi.ablation.report` (report.md, ``build_report``),
:mod:`~fwi.ablation.plots`, :mod:`~fwi.ablation.wandb_summary` and :mod:`~fwi.ablation.cli`
(``python -m fwi.ablate`` / ``fwi-ablate``, both ``fwi.ablation.cli:main``).
"""

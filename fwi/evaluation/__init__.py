"""Evaluation of a trained run: one module per job.

results (`Evaluation`, `summarize`), inference (the network over batches, scored by `fwi.scoring`), split
(`evaluate_split`), external (model files: `evaluate_models`, `check_models`, `prepare_external`), refine_settings
(``--refine-*`` settings checked against the dataset), refinement (`refine_split`, `Refinement`, `score_models`) and
report (`write_report`: figures, refined.md / .npy, metrics.json). `fwi.evaluate` is the CLI; import
library names from the module that defines them.
"""

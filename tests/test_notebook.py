"""notebooks/inspect_inversion.ipynb: committed without outputs, and runs end to end on a tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "inspect_inversion.ipynb"


def _parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    source = nb.cells[_parameters_cell(nb)].source
    for name in ("RUN_DIR", "SPLIT", "SAMPLES", "DEVICE", "REFINE_DIR"):
        assert f"{name} =" in source


def test_notebook_executes(tiny_run, tiny_dataset, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    from fwi.invert.cli import main as invert

    refine_dir = tmp_path / "refine"
    assert invert(["--data", str(tiny_dataset), "--indices", "0:2", "--start", f"run:{tiny_run}", "--out",
                   str(refine_dir), "--device", "cpu", "--iterations", "2", "--schedule", "full"]) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one torch thread on shared cores
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells[_parameters_cell(nb)].source = (f"RUN_DIR = {str(tiny_run)!r}\nSPLIT = 'test'\nSAMPLES = [0, 1]\n"
                                             f"DEVICE = 'cpu'\nREFINE_DIR = {str(refine_dir)!r}")
    NotebookClient(nb, kernel_name="python3", timeout=180,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on a cell error
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # velocity (chosen, worst), masks, 2 gathers, attention, histogram, refinement comparison and convergence
    assert images >= 9
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "skip_attn.0" in text and "mae" in text
    metrics = json.loads((refine_dir / "metrics.json").read_text())  # the refinement's numbers, as printed
    assert f"MAE {metrics['mae_ms_before']:.1f} -> {metrics['mae_ms_after']:.1f} m/s" in text

"""The example notebooks under ``examples/`` run top to bottom without an error.

Each runs in a fresh kernel (this interpreter's ``python3`` kernel, ipykernel) inside a
temporary folder, so the files they write stay out of the repository; each takes under a
minute on 2 cores.
"""

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def test_the_examples_folder_holds_the_two_notebooks():
    assert NOTEBOOKS == ["01_demo_study.ipynb", "02_own_segmentation.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_notebook_runs_without_error_and_draws_its_figures(tmp_path, name):
    shutil.copy(EXAMPLES / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pngs == {"01_demo_study.ipynb": 4, "02_own_segmentation.ipynb": 1}[name]

"""docs/quickstart.ipynb: committed without outputs, and it runs, top to bottom, in a real Jupyter kernel.

nbclient starts an IPython kernel (ipykernel) and executes every cell as
Jupyter would; the test then reads what the cells showed: the HTML tables of
the data set, the network and the history, tqdm's progress widget, the
epoch lines and the three pictures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


def test_quickstart_is_committed_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code, "the quickstart has no code"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])[:60]
    assert "widgets" not in notebook["metadata"]            # no saved widget state either


@pytest.mark.slow
def test_quickstart_runs_in_a_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")          # the kernel inherits the environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert [re.match(r"<table><caption>(\w+)", h).group(1) for h in html] == ["Dataset", "Network", "History"]
    assert "60,000" in html[0] and "784 → 64 → 10" in html[1] and "4 epochs" in html[2]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 4                                 # tqdm's widget: one per epoch
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert len(re.findall(r"^epoch \d/4  loss", text, re.MULTILINE)) == 4
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", text).group(1))
    assert accuracy > 88
    assert re.search(r"a 7, read as 7 with probability", text)
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3


def test_tables_for_notebooks():
    """The HTML tables Jupyter shows for a Network, a History and a Dataset."""
    import numpy as np

    from digitnet import History, Network
    from digitnet.data import Dataset

    net = Network([784, 30, 10], activation="sigmoid", output="softmax", seed=0)
    html = net._repr_html_()
    assert "Network 784 → 30 → 10 (loss: cross_entropy, float32)" in html
    assert html.count("<tr>") == 4 and "784 → 30" in html and "23,550" in html and "23,860" in html

    records = [{"epoch": e, "loss": 1 / e, "accuracy": 0.5, "val_loss": None, "val_accuracy": None,
                "lr": 0.1, "seconds": 0.25} for e in range(1, 151)]
    html = History(records, seed=4, best_epoch=120)._repr_html_()
    assert "History: 150 epochs, seed 4, best epoch 120" in html
    assert html.count("<tr>") == 1 + 20 + 1 and "… 130 more …" in html     # head, 10 + 10 rows, the gap
    assert ">50.00%<" in html and ">–<" in html and ">150<" in html
    assert "0 epochs" in History()._repr_html_()

    X = np.zeros((3, 28, 28), np.float32)
    html = Dataset("<mine>", X, np.array([0, 1, 1]))._repr_html_()
    assert "&lt;mine&gt;" in html and "<mine>" not in html                    # names are escaped
    assert "28 × 28" in html and "<td>test</td><td colspan='14'>none</td>" in html

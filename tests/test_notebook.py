"""docs/gail_walkthrough.ipynb runs from top to bottom (nbclient) and trains to the expert."""
import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


@pytest.mark.slow
def test_gail_walkthrough_notebook_executes_and_reaches_the_expert():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(os.path.join(DOCS, "gail_walkthrough.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    # runs in docs/, as a reader's Jupyter would; a failing cell raises CellExecutionError
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": DOCS}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.output_type == "stream")
    # the shapes the walkthrough prints
    assert "ex_obs_N_Do (40, 4) | ex_a_N_Da (40, 1) int64" in text
    assert re.search(r"obs stacked \(N, Do\): \(\d+, 4\) \| a \(N, Da\): \(\d+, 1\)", text)
    # the training cell's last ten true returns
    last = re.search(r"last 10 true returns: \[([^\]]*)\]", text)
    assert last, text[-2000:]
    returns = [float(x) for x in last.group(1).split()]
    assert sum(returns) / len(returns) >= 190, returns
    # both figures were drawn
    assert sum(o.output_type == "display_data" for c in nb.cells if c.cell_type == "code"
               for o in c.outputs) == 2

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
    # The training cell stops once ten iterations in a row average 195, at most 300. What
    # GAIL guarantees here is reaching the expert, not one curve: over seeds 0-5 and two
    # OpenBLAS builds (SciPy's and Debian's, whose rounding differs) it took 20-168
    # iterations, and the last ten of 300 fixed iterations averaged as low as 187.5 (a dip
    # after reaching 200), which is why the test does not look at a fixed iteration.
    last = re.search(r"(\d+) iterations; last 10 true returns: \[([^\]]*)\]", text)
    assert last, text[-2000:]
    returns = [float(x) for x in last.group(2).split()]
    assert int(last.group(1)) < 300 and sum(returns) / len(returns) >= 195, last.group(0)
    # both figures were drawn
    assert sum(o.output_type == "display_data" for c in nb.cells if c.cell_type == "code"
               for o in c.outputs) == 2

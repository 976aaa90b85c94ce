"""What a notebook shows of a call: its output in a real Jupyter kernel, run by nbclient."""

import nbformat
import pytest
from nbclient import NotebookClient

from pymc_modal import console

MODEL = """
import pymc as pm
import pymc_modal

with pm.Model() as model:
    pm.Normal("x", shape=3)
"""
SAMPLE = """
idata = pymc_modal.sample(
    model=model, draws=100, tune=100, chains=2, random_seed=1, backend="local", refit=True,
    target_ess=50,
)
"""


def _texts(cell) -> list[str]:
    """Every text a cell's outputs show: streams, and the plain text of displays."""
    found = []
    for output in cell.outputs:
        if output.output_type == "stream":
            found.append(output.text)
        elif "data" in output:
            found.append(output.data.get("text/plain", ""))
    return found


@pytest.mark.slow
def test_a_local_run_in_a_notebook_shows_one_live_panel_without_escape_codes(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(MODEL), nbformat.v4.new_code_cell(SAMPLE)]
    )
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()

    cell = notebook.cells[1]
    texts = _texts(cell)
    assert not any("\x1b" in text or "\r" in text for text in texts), texts
    (panel,) = [output for output in cell.outputs if output.output_type == "display_data"]
    shown = panel.data["text/plain"]
    # The bar's last state once, under the block lines, rather than every state stacked.
    assert shown.count("numpyro warm-up + draws") == 1 and "100%" in shown
    assert "draws 100: min bulk ESS" in shown
    assert any("Sampled 2 chains" in text for text in texts)


def test_the_screen_acts_on_carriage_returns_cursor_moves_and_erasures():
    screen = console.Screen()
    # tqdm redrawing its bar, writing a line above it, then ending; rich redrawing two lines.
    screen.feed("\r  0%|    | 0/10\r 50%|##  | 5/10\r" + " " * 20 + "\rdraws 5: ESS 12\n")
    screen.feed("\r 50%|##  | 5/10\r100%|####| 10/10\n")
    screen.feed("\x1b[?25lsampling 1\nchain 1\n\x1b[2A\x1b[2Ksampling 2\nchain 2\n\x1b[?25h")
    assert screen.text == "draws 5: ESS 12\n100%|####| 10/10\nsampling 2\nchain 2"

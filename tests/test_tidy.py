"Widget state only where a widget is shown: `tools/tidy.py` removes the rest, and no notebook here carries any."
import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import NBS, ROOT

_spec = importlib.util.spec_from_file_location("tidy", ROOT / "tools" / "tidy.py")
tidy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tidy)

STATE = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "ButtonModel"}},
                                                        "version_major": 2, "version_minor": 0}}


def notebook(code, outputs=()):
    "A notebook with one code cell and widget state."
    cells = [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["# A title"]},
             {"cell_type": "code", "execution_count": None, "id": "c", "metadata": {}, "outputs": list(outputs),
              "source": [code]}]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}, "widgets": STATE}, "nbformat": 4,
            "nbformat_minor": 5}


@pytest.mark.parametrize("name", sorted(p.name for p in NBS.glob("*.ipynb")))
def test_only_notebooks_that_show_widgets_carry_widget_state(name):
    nb = json.loads((NBS / name).read_text(encoding="utf-8"))
    assert not tidy.has_stale_state(nb), f"{name} carries widget state but shows no widget: run `python tools/tidy.py`"


def test_tidy_removes_stale_state_and_keeps_what_a_widget_needs(tmp_path):
    shown = {tidy.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0}, "text/plain": ["x"]}
    view = {"output_type": "display_data", "metadata": {}, "data": shown}
    cases = {"plain": notebook("x = 1"), "panel": notebook("panel = TrainingPanel(cfg)"),
             "shown": notebook("interact(f, x=1)", [view])}
    for name, nb in cases.items(): (tmp_path / f"{name}.ipynb").write_text(json.dumps(nb))
    paths = sorted(str(p) for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "tidy.py"), "--check", *paths],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "plain.ipynb" in r.stdout and "panel" not in r.stdout and "shown" not in r.stdout
    assert "widgets" in json.loads((tmp_path / "plain.ipynb").read_text())["metadata"]       # --check writes nothing
    assert tidy.main(paths) == 0
    tidied = json.loads((tmp_path / "plain.ipynb").read_text())
    assert tidied == {**cases["plain"], "metadata": {"kernelspec": {"name": "python3"}}}     # nothing else changed
    for name in ("panel", "shown"): assert json.loads((tmp_path / f"{name}.ipynb").read_text()) == cases[name]
    before = (tmp_path / "plain.ipynb").read_bytes()
    assert tidy.main(["--check", str(tmp_path / "plain.ipynb")]) == 0 and tidy.tidy(tmp_path / "plain.ipynb") is False
    assert (tmp_path / "plain.ipynb").read_bytes() == before

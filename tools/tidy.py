"""Remove the widget state of notebooks that show no widget (`metadata.widgets`), or check for it (`--check`).

JupyterLab saves the state of every widget the kernel holds into the notebook it saves, so a notebook saved in a
session where the training panel ran carries its state (about 100 KB) though none of its outputs shows a widget.
Only a notebook that makes widgets, or stores an output that shows one, needs that state. `make export` runs this
after nbdev_clean; with file arguments it tidies those notebooks only."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
MAKES_WIDGETS = ("TrainingPanel(", "ipywidgets")  # code that makes widgets
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output that shows a widget

def shows_widgets(nb:dict) -> bool:
    "Whether the notebook's code makes widgets or one of its outputs shows a widget."
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    return (any(m in "".join(c["source"]) for c in cells for m in MAKES_WIDGETS)
            or any(WIDGET_VIEW in o.get("data", {}) for c in cells for o in c.get("outputs", [])))

def has_stale_state(nb:dict) -> bool:
    "Whether the notebook carries widget state it does not need."
    return "widgets" in nb.get("metadata", {}) and not shows_widgets(nb)

def tidy(path:Path, check:bool=False) -> bool:
    "Remove the stale widget state of the notebook at `path` (unless `check`); True if it had some."
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    if not has_stale_state(nb): return False
    if not check:
        del nb["metadata"]["widgets"]  # written as nbdev_clean writes, so a tidy notebook stays byte for byte
        Path(path).write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True

def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [Path(a) for a in args if a != "--check"] or sorted(NBS.glob("*.ipynb"))
    stale = [p.name for p in paths if tidy(p, check)]
    if stale: print(("stale widget state in " if check else "removed stale widget state from ") + ", ".join(stale)
                    + (" (run `python tools/tidy.py`)" if check else ""))
    return 1 if check and stale else 0

if __name__ == "__main__":
    sys.exit(main())

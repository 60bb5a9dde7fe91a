"The package's shape: imports follow the notebooks' order, no private name crosses modules, no module is long."
import ast
import json
import re

import pytest
from conftest import NBS, ROOT

PKG = ROOT / "zo_gpt"
MAX_LINES = 390   # a prompt to split a chapter: helpers.py (its dataset-file half) and checkpoint.py (its run-folder half) are next


def chapter_of_module() -> dict:
    "{module name: the notebook it is exported from}."
    out = {}
    for path in PKG.glob("*.py"):
        m = re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", path.read_text())
        if m: out[path.stem] = m.group(1)
    return out


def imports(tree: ast.AST, here: str | None = None) -> list[tuple[str, list[str]]]:
    "(module, names) of every zo_gpt import in `tree`, at the top or inside functions; `here` resolves relative ones."
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: mod = node.module or "__init__"
            elif node.module and node.module.startswith("zo_gpt"): mod = node.module.split(".")[1] if "." in node.module else "__init__"
            else: continue
            found.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], []) for a in node.names if a.name.startswith("zo_gpt.")]
    return found


def test_modules_import_only_from_earlier_chapters_and_no_private_names():
    chapters = chapter_of_module()
    assert {"helpers", "train", "figures"} <= set(chapters)
    problems = []
    for mod, nb in chapters.items():
        for other, names in imports(ast.parse((PKG / f"{mod}.py").read_text())):
            if other == "__init__": continue
            if chapters[other] > nb: problems.append(f"{mod} ({nb}) imports {other} ({chapters[other]})")
            if other != mod: problems += [f"{mod} imports private {other}.{n}" for n in names if n.startswith("_")]
    assert not problems, problems


def test_notebooks_import_only_from_themselves_and_earlier_chapters():
    chapters = chapter_of_module()
    problems = []
    for nb in sorted(NBS.glob("*.ipynb")):
        if nb.name == "index.ipynb": continue   # the home page shows the whole package at work
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code": continue
            src = "".join(cell["source"])
            try: tree = ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
            except SyntaxError: continue
            problems += [f"{nb.name} imports {m} ({chapters[m]})" for m, _ in imports(tree)
                         if m in chapters and m != "__init__" and chapters[m] > nb.name]
    assert not problems, problems


def test_no_module_is_long():
    lengths = {p.name: len(p.read_text().splitlines()) for p in PKG.glob("*.py") if p.name != "_modidx.py"}
    assert max(lengths.values()) <= MAX_LINES, {k: v for k, v in lengths.items() if v > MAX_LINES}


@pytest.mark.parametrize("name", ["READ_BACK_EVERY", "CE_CHUNK_BYTES", "_HELD"])
def test_no_module_level_knob_for_tests_to_patch(name):
    assert not [p.name for p in PKG.glob("*.py") if re.search(rf"^{name}\s*=", p.read_text(), re.M)]


def test_notebooks_import_zo_gpt_before_torch():
    "OpenMP reads its wait policy once, when torch is first imported; importing zo_gpt first sets it (see 02a_config)."
    late = []
    for nb in sorted(NBS.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            first = re.search(r"^(?:import|from) (zo_gpt|torch)\b", "".join(cell["source"]), re.M) if cell["cell_type"] == "code" else None
            if first:
                if first.group(1) == "torch": late.append(nb.name)
                break
    assert not late, late

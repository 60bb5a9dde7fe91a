"Notebooks as a reader sees them: every table keeps its columns when a GFM renderer splits its rows, and no stored output is a stderr box."
import json

import pytest
from conftest import NBS

markdown_it = pytest.importorskip("markdown_it")   # dev requirement; JupyterLab's own renderer (marked) is JavaScript
from markdown_it.rules_block.table import escapedSplit  # noqa: E402  the parser's own row splitter

NOTEBOOKS = sorted(p.name for p in NBS.glob("*.ipynb"))
GFM = markdown_it.MarkdownIt("commonmark").enable("table")


def cells_of(row:str) -> list[str]:
    "A table row cut into cells as the parser cuts it: at every `|` not escaped as `\\|` (inside `code` too), outer pipes dropped."
    row = row.strip()
    if row.startswith("|"): row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"): row = row[:-1]
    return escapedSplit(row)


def table_problems(text:str) -> tuple[int, list[str]]:
    "(tables, problems) of one markdown text: rows whose cell count is not the header's, and `|` lines outside tables and code."
    lines, tables, problems, in_table, header = text.splitlines(), 0, [], set(), None
    for tok in GFM.parse(text):
        if tok.type == "table_open":
            tables, header = tables + 1, None
            in_table.update(range(*tok.map))
        elif tok.type in ("fence", "code_block"): in_table.update(range(*tok.map))   # code, not a table
        elif tok.type == "tr_open":   # the header row first, then the body's rows
            row = lines[tok.map[0]]
            n = len(cells_of(row))
            header = n if header is None else header
            if n != header: problems.append(f"{n} cells, header has {header}: {row[:90]}")
    for k, line in enumerate(lines):
        if line.lstrip().startswith("|") and k not in in_table: problems.append(f"a table row that renders as text: {line[:90]}")
    return tables, problems


def test_a_pipe_in_code_splits_the_cell_and_an_escaped_one_does_not():
    good = "| a | b |\n|---|---|\n| end | `<\\|endoftext\\|>` |\n"
    bad = "| a | b |\n|---|---|\n| end | `<|endoftext|>` |\n"
    assert table_problems(good) == (1, [])
    n, problems = table_problems(bad)
    assert n == 1 and problems == ["4 cells, header has 2: | end | `<|endoftext|>` |"]
    assert "<code>&lt;|endoftext|&gt;</code>" in GFM.render(good)      # what the reader sees: the token, whole


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_markdown_table_keeps_its_columns(name):
    problems = []
    for k, cell in enumerate(json.loads((NBS / name).read_text())["cells"]):
        if cell["cell_type"] == "markdown":
            problems += [f"cell {k}: {p}" for p in table_problems("".join(cell["source"]))[1]]
    assert not problems, problems


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_stored_output_is_a_stderr_box(name):
    "JupyterLab shows stderr in a pink box, which reads as an error: progress bars are widgets there, and warnings are avoided."
    boxes = [f"cell {k}: {''.join(o['text'])[:80]!r}" for k, cell in enumerate(json.loads((NBS / name).read_text())["cells"])
             for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not boxes, boxes

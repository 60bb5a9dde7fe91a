"""Write README.md from nbs/index.ipynb, or check that it is in sync (`--check`).

nbdev makes the README with quarto, which this project does not require; this does the same for the cells and
outputs the home page uses: markdown as it is, code cells as Python blocks, text outputs as plain blocks, PNG outputs
as files under README_files/. Cells marked `#| hide` are left out."""
import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE, TARGET, IMAGES = ROOT / "nbs" / "index.ipynb", ROOT / "README.md", "README_files"

def _directives(src: str) -> tuple[set, str]:
    "The `#| ` directives at the top of a cell, and the code without them."
    lines, flags = src.splitlines(), set()
    while lines and lines[0].startswith("#|"):
        flags.add(lines.pop(0)[2:].strip())
    return flags, "\n".join(lines).strip("\n")

def render(nb_path: Path = SOURCE) -> tuple[str, dict]:
    "README text and {relative image path: bytes} for the notebook at `nb_path`."
    nb = json.loads(nb_path.read_text())
    parts, images = [], {}
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":  # images beside the notebooks are under nbs/ from the top
            parts.append(src.strip("\n").replace("](images/", "](nbs/images/")); continue
        flags, code = _directives(src)
        if "hide" in flags or cell["cell_type"] != "code": continue
        if code and "echo: false" not in flags: parts.append(f"```python\n{code}\n```")
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            if out.get("output_type") == "stream" and out.get("name") == "stdout": text = "".join(out["text"])
            elif "image/png" in data:
                name = f"{IMAGES}/cell-{i}-output-{j}.png"
                images[name] = base64.b64decode(data["image/png"])
                parts.append(f"![]({name})"); continue
            elif "text/markdown" in data: parts.append("".join(data["text/markdown"]).strip("\n")); continue
            elif "text/plain" in data: text = "".join(data["text/plain"])
            else: continue
            parts.append(f"```\n{text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n", images

def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text, images = render()
    stale = [] if TARGET.exists() and TARGET.read_text() == text else ["README.md"]
    stale += [n for n, b in images.items() if not (ROOT / n).exists() or (ROOT / n).read_bytes() != b]
    if check:
        if stale: print("out of sync with nbs/index.ipynb: " + ", ".join(stale) + " (run `python tools/readme.py`)")
        return 1 if stale else 0
    TARGET.write_text(text)
    for name, data in images.items():
        (ROOT / name).parent.mkdir(exist_ok=True); (ROOT / name).write_bytes(data)
    for old in (ROOT / IMAGES).glob("*.png") if (ROOT / IMAGES).exists() else []:
        if f"{IMAGES}/{old.name}" not in images: old.unlink()
    return 0

if __name__ == "__main__":
    sys.exit(main())

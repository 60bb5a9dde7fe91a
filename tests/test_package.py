"The package as users get it: a wheel in a clean environment, and the notebooks as rendered pages."
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from conftest import NBS, ROOT

NOTEBOOKS = sorted(p.name for p in NBS.glob("*.ipynb"))


def test_wheel_works_without_notebook_tools(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("zo_gpt-*.whl"))
    assert next(dist.glob("zo_gpt-*.tar.gz"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py, bin_ = env_dir / "bin" / "python", env_dir / "bin"
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["torch==2.13.0"], check=True, capture_output=True)  # the build already on this disk
    subprocess.run(pip + [str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    def run(*args, code=0):
        r = subprocess.run([str(bin_ / "zo-gpt"), *map(str, args)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert r.returncode == code, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r
    check = ("import importlib.util as u, zo_gpt.cli, zo_gpt.profiling; "
             "missing = [m for m in ('jupyterlab', 'nbdev', 'papermill', 'ipywidgets', 'fastcore') if u.find_spec(m) is None]; "
             "print(len(missing))")
    assert subprocess.run([str(py), "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "5"
    assert run("--version").stdout.strip().startswith("zo-gpt ")
    for sub in ("prepare", "train", "sample", "profile"):
        assert "usage: zo-gpt " + sub in run(sub, "--help").stdout
    run("prepare", "--out", "d", "--n-seq", 60, "--seq-len", 30, "--vocab", "compact")
    run("train", "--data_dir=d", "--out_dir=r", "--block_size=32", "--batch_size=4", "--max_iters=6", "--eval_interval=3")
    assert (tmp_path / "r" / "loss.png").exists() and (tmp_path / "r" / "ckpt.pt").exists()
    assert "fraction of '1'" in run("sample", "--run", "r", "--tokens", 20).stdout
    run("profile", "--out", "p", "--data_dir=d", "--vocab=compact", "--block_size=32", "--steps=1")
    run("train", "--bogus=1", code=2)


def test_notebooks_render_to_html_with_their_stored_outputs():
    from nbconvert import HTMLExporter
    for name in NOTEBOOKS:
        nb = json.loads((NBS / name).read_text())
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"], name
        images = sum("image/png" in o.get("data", {}) for o in outputs)
        html, _ = HTMLExporter().from_filename(str(NBS / name))
        assert html.count("data:image/png;base64") >= images, name
        if name != "index.ipynb":
            md = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
            saw = next(i for i, m in enumerate(md) if "## What we saw" in m)       # the end of the story; appendices may follow
            assert any("## What you will learn" in m for m in md) and all("## Appendix" in m for m in md[saw + 1:]), name
            code = [c for c in nb["cells"] if c["cell_type"] == "code" and not "".join(c["source"]).startswith("#|")]
            assert "environment()" in "".join(code[1]["source"]) or "environment()" in "".join(code[0]["source"]), name


def test_editable_install_imports_from_the_folder_that_holds_the_clone(tmp_path):
    "A clone named zo_gpt, installed with `pip install -e .`: from its parent folder, `import zo_gpt` is the package, not the clone."
    clone = tmp_path / "zo_gpt"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files + [str(p.relative_to(ROOT)) for p in (ROOT / "zo_gpt").glob("*.py")]:
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        (clone / f).write_bytes((ROOT / f).read_bytes())
    prefix = tmp_path / "prefix"
    # A second install beside this environment's own: a PEP 660 wheel into a prefix, and -I so pip uninstalls nothing here
    # (without them pip runs `setup.py develop`, which replaces this environment's install and removes its zo-gpt).
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
                    "--use-pep517", "--ignore-installed", "--prefix", str(prefix), "-e", str(clone)], check=True, capture_output=True)
    site_dir = next(prefix.glob("lib/python*/site-packages"))
    check = f"import site; site.addsitedir({str(site_dir)!r}); import zo_gpt; print(zo_gpt.__file__, zo_gpt.__version__)"
    r = subprocess.run([sys.executable, "-S", "-c", check], cwd=tmp_path, capture_output=True, text=True)   # -S: only that install
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.split() == [str(clone / "zo_gpt" / "__init__.py"), __import__("zo_gpt").__version__]
    mine = subprocess.run([sys.executable, "-m", "pip", "show", "--files", "zo_gpt"], capture_output=True, text=True)
    assert mine.returncode == 0 and (Path(sys.executable).parent / "zo-gpt").exists()   # this environment's own install is untouched


"""bench/gpu.py runs only where a GPU is; its dry run takes every part through the CPU at a tiny size, so the script is
checked on every run of the suite, with or without a GPU. bench/threads.py's dry run takes a few steps at two of its
settings, for the same reason."""
import json
import re
import subprocess
import sys

from conftest import ROOT
from zo_gpt.accounting import CATEGORIES, account
from zo_gpt.losses import loss_methods


def test_gpu_bench_dry_run_runs_every_part(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), tmp_path / "data", tmp_path / "out", "--dry-run"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("all parts ran"), r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout
    steps = {m[0]: float(m[1]) for m in re.findall(r"== a100 preset, (now|before):.*\n\d+ steps in [\d.]+ s; ([\d.]+) ms a step", text)}
    assert set(steps) == {"now", "before"} and all(ms > 0 for ms in steps.values())
    assert re.search(r"then [\d.]+ ms a step, [\d.]+x the uncompiled step", text)
    for dtype in ("bfloat16", "float32"):   # each way this torch has, agreeing with the plain loss
        table = text.split(f"== the head's loss, {dtype}")[1].split("==")[0]
        diffs = [float(d) for d in re.findall(r"^(?:plain|ours|torch):.* ([\d.e+-]+)$", table, re.M)]
        assert len(diffs) == len(loss_methods()) and max(diffs) < 1e-2, table
    table = json.loads((tmp_path / "out" / "events.json").read_text())
    acc = account(table)
    assert table["device"] == "cpu" and len(table["steps"]) == 3 and set(acc["categories"]) == set(CATEGORIES)
    assert abs(sum(acc["categories"].values()) - acc["step_ms"]) < 1e-6 * acc["step_ms"]
    assert f"profiled {acc['step_ms']:.1f} ms" in text


def test_threads_bench_dry_run_prints_its_table(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "threads.py"), "--dry-run"], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [l.split() for l in r.stdout.splitlines() if l.strip().startswith(("2 threads, package", "1 thread "))]
    assert len(rows) == 2 and all(float(row[-5]) > 0 and float(row[-4]) > 0 for row in rows), r.stdout


def test_ladder_bench_prints_its_table_for_short_runs(tmp_path):
    "bench/ladder.py with two seeds of 48 steps: every passage has a row, each with a mean and its range."
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "ladder.py"), "--seeds", "2", "--steps", "48"], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+) \|$", r.stdout, re.M))
    assert {"uniform -> frequencies", "frequencies -> previous token", "previous token -> Bayes", "final excess"} <= set(rows)
    assert rows["uniform -> frequencies"].startswith("12 ± 0") and "2 runs of the cpu preset (48 steps" in r.stdout, r.stdout


def test_attention_bench_padded_variant_keeps_the_loss(tmp_path):
    "bench/attention.py's padded step: the model's attention goes through the padding (once a step, 18 steps), its loss the same to rounding."
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "attention.py"), "--variant", "padded", "1"], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["padded_calls"] >= 18 and m["loss_diff"] < 1e-5 and m["step_ms"] > 0, m

"""When each rule is learned, over seeds: the cpu preset (`zo-gpt train --preset cpu`, one torch thread each, two runs
at a time) for several seeds, read back from each run's metrics.jsonl:

- for each step up the ladder of strategies (uniform -> frequencies -> previous token -> Bayes), the first evaluation
  at which the model is nearer the upper rung than the lower one (KL(upper || model) < KL(lower || model));
- the boundary head: the first evaluation at which some head puts more than 90% of its attention on the latest sequence
  start, and how many steps its rise took (from its last evaluation under 20% to its first over 90%);
- the final excess.

Prints a markdown table (mean ± standard error over the seeds, and the range), the seconds the runs took, and the
machine. 03_train quotes the table. Usage: python bench/ladder.py [--seeds 8] [--first 1337] [--steps 600]"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLI = str(Path(sys.executable).parent / "zo-gpt")
LADDER = ("uniform", "frequencies", "previous token", "Bayes")


def train(seed, data, root, steps):
    out = root / f"seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={out}", f"--seed={seed}",
                        f"--max_iters={steps}"],
                       capture_output=True, text=True, env=env)
    if r.returncode: raise SystemExit(f"seed {seed}: {r.stderr[-2000:]}")
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"strategies"' in l]


def passages(val):
    "Steps at which the model first passes each rung, the boundary head's forming, and the final excess."
    row = {}
    for lower, upper in zip(LADDER, LADDER[1:]):
        row[f"{lower} -> {upper}"] = next((r["iter"] for r in val if r["strategies"][upper] < r["strategies"][lower]), None)
    top = max(range(len(val[-1]["heads"])), key=lambda h: val[-1]["heads"][h])
    over = [r["iter"] for r in val if r["heads"][top] > 0.9]
    under = [r["iter"] for r in val if r["heads"][top] < 0.2 and (not over or r["iter"] < over[0])]
    row["boundary head over 0.9"] = over[0] if over else None
    row["its rise, steps"] = over[0] - under[-1] if over and under else None
    row["final excess"] = val[-1]["kl"]
    return row


def stat(values, fmt):
    got = [v for v in values if v is not None]
    if not got: return "never"
    se = statistics.stdev(got) / len(got) ** 0.5 if len(got) > 1 else float("nan")
    never = f", never in {len(values) - len(got)}" if len(got) < len(values) else ""
    return f"{fmt(statistics.mean(got))} ± {fmt(se)} ({fmt(min(got))} to {fmt(max(got))}{never})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--first", type=int, default=1337)
    ap.add_argument("--steps", type=int, default=600, help="steps of each run (the preset's 600; fewer for a dry run)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        subprocess.run([CLI, "prepare", "--out", str(data), "--vocab", "compact"], check=True, capture_output=True)
        t0 = time.perf_counter()
        seeds = range(args.first, args.first + args.seeds)
        with ThreadPoolExecutor(2) as pool: rows = list(pool.map(lambda s: passages(train(s, data, root, args.steps)), seeds))
        wall = time.perf_counter() - t0
    every = 12
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")),
               platform.machine()) if Path("/proc/cpuinfo").exists() else platform.processor() or platform.machine()
    print(f"{len(rows)} runs of the cpu preset ({args.steps} steps; seeds {seeds[0]}-{seeds[-1]}, one torch thread each, two at a time) in "
          f"{wall:.0f} s on {cpu}, {os.cpu_count()} cores; evaluations every {every} steps\n")
    print("| passage | step (mean ± SE over seeds, and the range) |\n|---|---|")
    for key in rows[0]:
        fmt = (lambda v: f"{v:.1e}") if key == "final excess" else (lambda v: f"{v:.0f}")
        print(f"| {key} | {stat([r[key] for r in rows], fmt)} |")
    print("\nper seed:", json.dumps({s: r for s, r in zip(seeds, rows)}))


if __name__ == "__main__":
    main()

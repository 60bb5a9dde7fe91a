"""Sweep of cpu-preset settings over seeds and torch thread counts: how many runs end with an excess over the Bayes
predictor of at most 1e-4, and how many found the sequence boundary.

`python bench/sweep.py DATA_DIR [--seeds 8] [--threads 1 2] [--only NAME ...]` runs every setting with seeds 1337,
1338, ... at each thread count (one-thread runs two at a time, each in its own process; over an hour on two cores),
prints one row per setting and writes bench/out/sweep.json and a markdown table (`--table` prints the saved one). The same seed gives another run at another thread count: the
sums inside a matrix multiply are split differently, and a run that finds the boundary at one count can miss it at
the other. Steps do not depend on the machine; seconds do."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Each setting is the cpu preset (8 heads, GPT-2's initial weights' std 0.02, AdamW beta2 0.95, 600 steps) with the
# changes it names; "the old preset" is the preset before this sweep, and the last five are cheaper steps.
SETTINGS = {
    "the cpu preset: 8 heads, init std 0.02, beta2 0.95, 600 steps": {},
    "8 heads, init std 0.05": {"init_std": 0.05},
    "4 heads, init std 0.05": {"n_head": 4, "init_std": 0.05},
    "2 heads, init std 0.05": {"n_head": 2, "init_std": 0.05},
    "8 heads, init std 0.05, beta2 0.99": {"init_std": 0.05, "beta2": 0.99},
    "8 heads, init std 0.05, 400 steps": {"init_std": 0.05, "max_iters": 400},
    "the old preset: 2 heads, beta2 0.99, 400 steps": {"n_head": 2, "beta2": 0.99, "max_iters": 400},
    "the cpu preset in 400 steps": {"max_iters": 400},
    "2 heads": {"n_head": 2},   # cheaper steps, tried for a run in 15 s (03_train's appendix)
    "2 heads, lr 5e-2": {"n_head": 2, "lr": 5e-2},
    "4 heads": {"n_head": 4},
    "4 heads, batch 8": {"n_head": 4, "batch_size": 8},
    "8 heads, block 128": {"block_size": 128},
}
LEARNED = 5e-4  # P(end of text) where none can come below half the constant guess 1/1001: the run found the boundary


def worker(args):
    "Runs of one setting at one thread count in this process; one JSON line per run."
    import torch
    threads = args.threads[0]
    torch.set_num_threads(threads)
    from zo_gpt.config import make_config
    from zo_gpt.train import fit

    for seed in map(int, args.worker_seeds.split(",")):
        cfg = make_config("cpu", {"data_dir": args.data, "out_dir": f"{args.tmp}/{seed}-{threads}", "eval_interval": 25,
                                  **SETTINGS[args.setting], "seed": seed})
        t0 = time.perf_counter()
        h = fit(cfg, verbose=False)
        first = lambda limit: next((r["iter"] for r in h.val if r["kl"] <= limit), None)
        print(json.dumps({"setting": args.setting, "seed": seed, "threads": threads, "steps": cfg.max_iters,
                          "final_kl": h.final["kl"], "final_kl_se": h.final["kl_se"], "kl_parts": h.final["kl_parts"],
                          "p_eot_in_view": h.final["p_eot_in_view"], "steps_1e-3": first(1e-3), "steps_1e-4": first(1e-4),
                          "seconds": time.perf_counter() - t0}), flush=True)


def run_setting(name, seeds, threads, data, tmp):
    "All runs of one setting: one-thread runs split over two processes side by side, others one process."
    procs = []
    groups = [seeds[0::2], seeds[1::2]] if threads == 1 else [seeds]
    for group in groups:
        cmd = [sys.executable, __file__, data, "--worker", "--setting", name, "--threads", str(threads),
               "--worker-seeds", ",".join(map(str, group)), "--tmp", tmp]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": str(threads)}))
    rows = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode: raise SystemExit(f"{name}, {threads} threads: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return sorted(rows, key=lambda r: r["seed"])


def summary(rows) -> dict:
    kls = sorted(r["final_kl"] for r in rows)
    return {"runs": len(rows), "at_1e-4": sum(k <= 1e-4 for k in kls), "learned": sum(r["p_eot_in_view"] < LEARNED for r in rows),
            "median": statistics.median(kls), "worst": kls[-1], "steps": rows[0]["steps"],
            "s_per_run": {t: statistics.median(r["seconds"] for r in rows if r["threads"] == t) for t in sorted({r["threads"] for r in rows})}}


def markdown(rows, threads) -> str:
    "The sweep as a markdown table, one row per setting."
    head = (f"| setting | steps | runs at excess <= 1e-4 | boundary found | median excess | worst | "
            + " | ".join(f"s per run, {t} thread{'s' if t > 1 else ''}" for t in threads) + " |")
    out = [head, "|" + "---|" * (6 + len(threads))]
    for name in dict.fromkeys(r["setting"] for r in rows):
        s = summary([r for r in rows if r["setting"] == name])
        out.append(f"| {name} | {s['steps']} | {s['at_1e-4']} of {s['runs']} | {s['learned']} of {s['runs']} | {s['median']:.1e} | "
                   f"{s['worst']:.1e} | " + " | ".join(f"{s['s_per_run'].get(t, float('nan')):.0f}" for t in threads) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "sweep.json"))
    ap.add_argument("--table", action="store_true", help="print the table of the sweep saved at --out, without running it")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--setting", help=argparse.SUPPRESS); ap.add_argument("--worker-seeds", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker: return worker(args)
    if args.table:
        saved = json.loads(Path(args.out).read_text())
        return print(markdown(saved["runs"], sorted({r["threads"] for r in saved["runs"]})))
    import tempfile
    seeds = list(range(1337, 1337 + args.seeds))
    print(f"seeds {seeds[0]}-{seeds[-1]} at {' and '.join(map(str, args.threads))} torch threads per setting", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in SETTINGS:
            if args.only and name not in args.only: continue
            got = [r for t in args.threads for r in run_setting(name, seeds, t, args.data, tmp)]
            rows += got
            s = summary(got)
            print(f"{name:52} {s['at_1e-4']:>2} of {s['runs']} at <= 1e-4, boundary found in {s['learned']:>2}; "
                  f"median {s['median']:.1e}, worst {s['worst']:.1e}; "
                  + ", ".join(f"{v:.0f} s per run at {t} thread{'s' if t > 1 else ''}" for t, v in s["s_per_run"].items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": SETTINGS, "runs": rows}, indent=1))
    print("\n" + markdown(rows, args.threads))


if __name__ == "__main__":
    sys.exit(main())

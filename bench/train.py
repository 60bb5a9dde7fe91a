"""Training figures on this machine: the cpu preset in twelve runs, where a command's time goes, the GPT-2-vocabulary
step, and the a100 preset on the CPU.

1. The cpu preset: `zo-gpt train --preset cpu` as a fresh process, twelve runs (seeds 1337-1344 with one torch thread,
   1345-1348 with two; the dataset made beforehand): steps, tokens and seconds until the excess over the Bayes
   predictor reaches 1e-3 and 1e-4, the final excess (goal <= 1e-4 in at least 11 of the 12, within 600 steps), the
   loss against the floor and the final excess's standard error (goal <= 1e-5).
2. Where the whole command's time goes (two threads): imports, set-up, training steps, evaluations, checkpoints,
   loss.png and summary.json, and Python's own start and exit. Goals: everything but steps and evaluations <= 20%,
   evaluations <= 10%.
3. GPT-2-vocabulary step at n_embd 128, block 256, batch 16, vocab 50,304: seconds per training step and peak RSS,
   plain vs fused cross-entropy in float32, and bfloat16 autocast. Goal: fused >= 1.6x faster, <= 1.2 GB.
4. The a100 preset (batch 64 x block 512, n_embd 768, bfloat16) for one step on the CPU. Goal: <= 8 GB peak RSS.
5. The a100 preset on a GPU: bench/gpu.py (step time, peak GPU memory, loss and excess).
Each measurement runs in its own process so that peak RSS is its own."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "zo-gpt")


def worker(args):
    "One measurement in this process; prints a JSON line."
    import torch
    from zo_gpt.config import make_config
    from zo_gpt.model import GPT
    from zo_gpt.model import make_optimizer
    from zo_gpt.train import train_step
    cfg = make_config(args.preset, {"fused_ce": args.ce == "fused", "dtype": args.dtype, **json.loads(args.overrides)})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = GPT(cfg.model_config()).to(device)
    opt = make_optimizer(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, device, cfg.compile)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), device=device)
    y = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), device=device)
    times = []
    for _ in range(args.steps):   # training's own step: forward, backward, clipping, the update
        t0 = time.perf_counter()
        train_step(model, opt, cfg, lambda: (x, y), cfg.lr)
        if device.type == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def measure(preset, ce, dtype, steps, **overrides):
    r = subprocess.run([sys.executable, __file__, "--worker", "--preset", preset, "--ce", ce, "--dtype", dtype,
                        "--steps", str(steps), "--overrides", json.dumps(overrides)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


RUNS = [(seed, 1) for seed in range(1337, 1345)] + [(seed, 2) for seed in range(1345, 1349)]  # (seed, torch threads)


def time_to_floor(tmp, runs=RUNS):
    data = Path(tmp) / "data"
    subprocess.run([CLI, "prepare", "--out", str(data), "--vocab", "compact"], check=True, capture_output=True)
    print(f"1. the cpu preset: zo-gpt train --preset cpu as a fresh process (dataset made beforehand), {len(runs)} runs: "
          f"seeds {runs[0][0]}-{runs[-1][0]}, with the torch threads given; medians over the runs")
    print(f"   {'seed':>5} {'threads':>7} {'wall s':>6} {'step at 1e-3':>12} {'step at 1e-4':>12} {'final excess':>20} "
          f"{'P(eot) in view':>14}")
    rows = []
    for seed, threads in runs:
        out = Path(tmp) / f"run{seed}"
        t0 = time.perf_counter()
        r = subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={out}", f"--seed={seed}"],
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - t0
        if r.returncode: raise SystemExit(r.stderr)
        s = json.loads((out / "summary.json").read_text())
        val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "val"' in line]
        first = lambda limit: next((v for v in val if v["kl"] <= limit), None)
        rows.append({"wall": wall, "final": s["final"], "floor": s["floor"], "steps": s["iters"],
                     **{f"{k}_{lim}": (first(lim) or {}).get(k) for k in ("iter", "tokens", "time") for lim in (1e-3, 1e-4)}})
        f, at = s["final"], lambda lim: str(rows[-1][f"iter_{lim}"] or "-")
        print(f"   {seed:>5} {threads:>7} {wall:6.1f} {at(1e-3):>12} {at(1e-4):>12} {f['kl']:9.2e} +- {f['kl_se']:.0e} "
              f"{f['p_eot_in_view']:14.1e}", flush=True)
    med = lambda k: statistics.median(v for v in (r[k] for r in rows) if v is not None) if any(r[k] is not None for r in rows) else None
    fmt = lambda v, f: format(v, f) if v is not None else "not reached"
    for lim in (1e-3, 1e-4):
        print(f"   to excess <= {lim:.0e}: {fmt(med(f'iter_{lim}'), '.0f')} steps, {fmt(med(f'tokens_{lim}'), ',.0f')} tokens, "
              f"{fmt(med(f'time_{lim}'), '.1f')} s into the run (reached by {sum(r[f'iter_{lim}'] is not None for r in rows)} "
              f"of {len(rows)} runs)")
    kls = sorted(r["final"]["kl"] for r in rows)
    kl, wall, steps, good = statistics.median(kls), med("wall"), rows[0]["steps"], sum(k <= 1e-4 for k in kls)
    gap = statistics.median(r["final"]["loss"] - r["floor"] for r in rows)
    print(f"   final excess: {good} of {len(kls)} runs <= 1e-4 (goal >= {len(kls) - 1}: {'met' if good >= len(kls) - 1 else 'missed'}), "
          f"median {kl:.2e}, from {kls[0]:.1e} to {kls[-1]:.1e}; after {steps} steps (goal <= 600: "
          f"{'met' if steps <= 600 else 'missed'}), median wall {wall:.1f} s; loss - floor {gap:+.5f} (goal <= +0.002: "
          f"{'met' if gap <= 0.002 else 'missed'})")
    ses = sorted(r["final"]["kl_se"] for r in rows)
    print(f"   final excess standard error: median {statistics.median(ses):.1e}, largest {ses[-1]:.1e} (goal <= 1e-5: "
          f"{'met' if ses[-1] <= 1e-5 else 'missed'}); {rows[0]['final']['rounds']} rounds, {rows[0]['final']['scored']:,} tokens")
    return data


PHASES = {"imports": "importing zo_gpt, torch, numpy", "set-up": "dataset check, model, optimizer (inside fit)",
          "steps": "training steps", "evaluations": "evaluations (fixed batches and the final one)",
          "checkpoints": "checkpoints", "figure and summary": "arguments, loss.png, summary.json, the closing lines",
          "python": "Python's own start and exit"}


def split(data, threads=2):
    "Where one `zo-gpt train --preset cpu` spends its wall time; its phases are timed inside the process."
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--split-worker", "train", "--preset", "cpu", f"--data_dir={data}",
                            f"--out_dir={out}/run"], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - t0
    if r.returncode: raise SystemExit(r.stderr)
    t = json.loads(r.stdout.strip().splitlines()[-1])
    t["python"] = wall - t.pop("total")
    outside = wall - t["steps"] - t["evaluations"]
    print(f"2. where zo-gpt train --preset cpu spends its {wall:.1f} s wall ({threads} threads):")
    for k, name in PHASES.items(): print(f"   {name:50} {t[k]:6.2f} s {t[k] / wall:6.1%}")
    print(f"   outside the steps and evaluations: {outside:.2f} s, {outside / wall:.1%} of the wall (goal <= 20%: "
          f"{'met' if outside / wall <= 0.2 else 'missed'}); evaluations {t['evaluations'] / wall:.1%} (goal <= 10%: "
          f"{'met' if t['evaluations'] / wall <= 0.1 else 'missed'})")


def split_worker(argv):
    "Run the `zo-gpt` command `argv` in this process with its phases timed; prints a JSON line of seconds per phase."
    t0 = time.perf_counter()
    from zo_gpt import cli, train
    spent = dict.fromkeys(PHASES, 0.0)
    spent["imports"] = time.perf_counter() - t0
    stack, last = ["figure and summary"], [time.perf_counter()]  # the phase running now; time is counted once
    def switch():
        now = time.perf_counter(); spent[stack[-1]] += now - last[0]; last[0] = now
    def timed(fn, phase):
        def run(*a, **k):
            switch(); stack.append(phase)
            try: return fn(*a, **k)
            finally: switch(); stack.pop()
        return run
    for name, phase in (("fit", "set-up"), ("_loop", "steps"), ("evaluate_now", "evaluations"),
                        ("final_evaluation", "evaluations"), ("save_checkpoint", "checkpoints")):
        setattr(train, name, timed(getattr(train, name), phase))
    cli.main(argv)
    switch()
    print(json.dumps({**spent, "total": time.perf_counter() - t0}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="cpu"); ap.add_argument("--ce", default="fused"); ap.add_argument("--dtype", default="float32")
    ap.add_argument("--steps", type=int, default=4); ap.add_argument("--overrides", default="{}")
    ap.add_argument("--skip-a100", action="store_true", help="skip the one-step a100 measurement on the CPU (slow)")
    if sys.argv[1:2] == ["--split-worker"]: return split_worker(sys.argv[2:])
    args = ap.parse_args()
    if args.worker: return worker(args)
    import torch
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\n")
    with tempfile.TemporaryDirectory() as tmp:
        data = time_to_floor(tmp)
        print(); split(data)

    print("\n3. GPT-2-vocabulary step: n_embd 128, block 256, batch 16, vocab 50,304 (median of 3 steps after a warm-up)")
    step = dict(vocab="gpt2", n_embd=128, n_head=4, block_size=256, batch_size=16)
    rows = {}
    for name, ce, dtype in (("plain float32", "plain", "float32"), ("fused float32", "fused", "float32"),
                            ("fused bfloat16 autocast", "fused", "bfloat16")):
        r = measure("cpu", ce, dtype, 4, **step)
        rows[name] = (statistics.median(r["times"][1:]), r["rss_gb"])
        print(f"   {name:24} {rows[name][0]:6.2f} s/step   peak RSS {rows[name][1]:5.2f} GB")
    from zo_gpt.profiling import measure_matmul_peak
    peak, _ = measure_matmul_peak(torch.device("cpu"))
    head = 6 * 16 * 256 * 128 * 50304                                       # forward + backward FLOPs of the LM head
    print(f"   fp32 matmul floor of the LM head alone: {head / peak:.2f} s ({head / 1e9:.0f} GFLOP at a measured "
          f"{peak / 1e9:.0f} GFLOP/s)")
    print("   for scale, unmodified nanoGPT measured on this kind of machine: 2.0 s/step and 3.8 GB; zo_gpt's fused "
          "loss then took 1.28 s and its plain loss 1.89 s (figures from the issue that set these goals, not re-run here)")
    ratio = rows["plain float32"][0] / rows["fused float32"][0]
    print(f"   fused vs plain: {ratio:.2f}x faster (goal >= 1.6x: {'met' if ratio >= 1.6 else 'missed'}), "
          f"fused peak {rows['fused float32'][1]:.2f} GB (goal <= 1.2 GB: {'met' if rows['fused float32'][1] <= 1.2 else 'missed'})")

    if not args.skip_a100:
        print("\n4. the a100 preset on this CPU: batch 64 x block 512, n_embd 768, vocab 50,304, bfloat16, fused loss")
        r = measure("a100", "fused", "bfloat16", 2)
        print(f"   steps {', '.join(f'{t:.1f}' for t in r['times'])} s; peak RSS {r['rss_gb']:.2f} GB "
              f"(goal <= 8 GB: {'met' if r['rss_gb'] <= 8 else 'missed'})")
    print("\n5. the a100 preset on a GPU: " + ("run `python bench/gpu.py DATA_DIR OUT_DIR` there" if not torch.cuda.is_available()
          else "see `python bench/gpu.py DATA_DIR OUT_DIR`"))


if __name__ == "__main__":
    main()

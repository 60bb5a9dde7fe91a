"""Training figures on this machine: time to floor, the GPT-2-vocabulary step, and the a100 preset on the CPU.

1. The cpu preset: `zo-gpt train --preset cpu` as a fresh process, eight seeds (dataset made beforehand): steps,
   tokens and seconds until the excess over the Bayes predictor reaches 1e-3 and 1e-4, the final excess (goal <= 1e-4
   within 600 steps and 10 s wall), the loss against the floor, the final excess's standard error (goal <= 1e-5), and
   the share of the run's wall time the evaluations take (goal <= 10%; also given as a share of fit() alone).
2. GPT-2-vocabulary step at n_embd 128, block 256, batch 16, vocab 50,304: seconds per training step and peak RSS,
   plain vs fused cross-entropy in float32, and bfloat16 autocast. Goal: fused >= 1.6x faster, <= 1.2 GB.
3. The a100 preset (batch 64 x block 512, n_embd 768, bfloat16) for one step on the CPU. Goal: <= 8 GB peak RSS.
4. The a100 preset on a GPU: bench/gpu.py (step time, peak GPU memory, loss and excess).
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
    from zo_gpt.model import GPT, autocast
    from zo_gpt.train import make_optimizer
    cfg = make_config(args.preset, {"fused_ce": args.ce == "fused", "dtype": args.dtype, **json.loads(args.overrides)})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = GPT(cfg.model_config()).to(device)
    opt = make_optimizer(model, cfg, device)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), device=device)
    y = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), device=device)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        with autocast(device, cfg.dtype): loss = model(x, y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if device.type == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))


def measure(preset, ce, dtype, steps, **overrides):
    r = subprocess.run([sys.executable, __file__, "--worker", "--preset", preset, "--ce", ce, "--dtype", dtype,
                        "--steps", str(steps), "--overrides", json.dumps(overrides)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def time_to_floor(tmp, seeds=tuple(range(1337, 1345))):
    data = Path(tmp) / "data"
    subprocess.run([CLI, "prepare", "--out", str(data), "--vocab", "compact"], check=True, capture_output=True)
    print("1. the cpu preset: zo-gpt train --preset cpu as a fresh process (dataset made beforehand), seeds "
          + ", ".join(map(str, seeds)) + "; medians over the seeds")
    rows = []
    for seed in seeds:
        out = Path(tmp) / f"run{seed}"
        t0 = time.perf_counter()
        r = subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={out}", f"--seed={seed}"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode: raise SystemExit(r.stderr)
        s = json.loads((out / "summary.json").read_text())
        val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "val"' in line]
        first = lambda limit: next((v for v in val if v["kl"] <= limit), None)
        rows.append({"wall": wall, "final": s["final"], "floor": s["floor"], "steps": s["iters"],
                     **{f"{k}_{lim}": (first(lim) or {}).get(k) for k in ("iter", "tokens", "time") for lim in (1e-3, 1e-4)}})
        f = s["final"]
        print(f"   seed {seed}: wall {wall:4.1f} s; excess <= 1e-3 at step {rows[-1]['iter_0.001']}, <= 1e-4 at step "
              f"{rows[-1]['iter_0.0001']}; final loss {f['loss']:.5f} +- {f['se']:.5f} (floor {s['floor']:.5f}), "
              f"excess {f['kl']:.2e} +- {f['kl_se']:.1e}")
    med = lambda k: statistics.median(v for v in (r[k] for r in rows) if v is not None) if any(r[k] is not None for r in rows) else None
    fmt = lambda v, f: format(v, f) if v is not None else "not reached"
    for lim in (1e-3, 1e-4):
        print(f"   to excess <= {lim:.0e}: {fmt(med(f'iter_{lim}'), '.0f')} steps, {fmt(med(f'tokens_{lim}'), ',.0f')} tokens, "
              f"{fmt(med(f'time_{lim}'), '.1f')} s into the run (reached by {sum(r[f'iter_{lim}'] is not None for r in rows)} "
              f"of {len(rows)} seeds)")
    kls = sorted(r["final"]["kl"] for r in rows)
    kl, wall, steps = statistics.median(kls), med("wall"), rows[0]["steps"]
    gap = statistics.median(r["final"]["loss"] - r["floor"] for r in rows)
    print(f"   final excess: median {kl:.2e} (goal <= 1e-4: {'met' if kl <= 1e-4 else 'missed'}), from {kls[0]:.1e} to {kls[-1]:.1e}, "
          f"{sum(k <= 1e-4 for k in kls)} of {len(kls)} seeds <= 1e-4; after {steps} steps (goal <= 600: "
          f"{'met' if steps <= 600 else 'missed'}) in {wall:.1f} s wall (goal <= 10 s: {'met' if wall <= 10 else 'missed'}); "
          f"loss - floor {gap:+.5f} (goal <= +0.002: {'met' if gap <= 0.002 else 'missed'})")
    ses = sorted(r["final"]["kl_se"] for r in rows)
    print(f"   final excess standard error: seed {seeds[0]} {rows[0]['final']['kl_se']:.1e} (goal <= 1e-5: "
          f"{'met' if rows[0]['final']['kl_se'] <= 1e-5 else 'missed'}), median {statistics.median(ses):.1e}, largest {ses[-1]:.1e}, "
          f"{sum(v <= 1e-5 for v in ses)} of {len(ses)} seeds <= 1e-5; {rows[0]['final']['rounds']} rounds, "
          f"{rows[0]['final']['scored']:,} tokens")
    r = subprocess.run([sys.executable, __file__, "--eval-cost", str(data)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    cost = json.loads(r.stdout.strip().splitlines()[-1])
    share, of_wall = cost["eval_s"] / cost["fit_s"], cost["eval_s"] / wall
    print(f"   evaluations: {cost['evals']} on the fixed batches and the final one take {cost['eval_s']:.2f} s: {of_wall:.1%} "
          f"of the run's median wall time (goal <= 10%: {'met' if of_wall <= 0.10 else 'missed'}), {share:.1%} of the "
          f"{cost['fit_s']:.2f} s inside fit() alone")


def eval_cost(data):
    "Time spent in evaluations during one default cpu run, in this process; prints a JSON line."
    import zo_gpt.train as train
    from zo_gpt.config import make_config
    spent = {"s": 0.0, "n": 0}
    def timed(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            try: return fn(*a, **k)
            finally: spent["s"] += time.perf_counter() - t0; spent["n"] += 1
        return run
    train.evaluate, train.evaluate_split = timed(train.evaluate), timed(train.evaluate_split)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        train.fit(make_config("cpu", {"data_dir": data, "out_dir": out}), verbose=False)
        fit_s = time.perf_counter() - t0
    print(json.dumps({"eval_s": spent["s"], "evals": spent["n"] - 1, "fit_s": fit_s}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="cpu"); ap.add_argument("--ce", default="fused"); ap.add_argument("--dtype", default="float32")
    ap.add_argument("--steps", type=int, default=4); ap.add_argument("--overrides", default="{}")
    ap.add_argument("--skip-a100", action="store_true", help="skip the one-step a100 measurement on the CPU (slow)")
    ap.add_argument("--eval-cost", metavar="DATA", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker: return worker(args)
    if args.eval_cost: return eval_cost(args.eval_cost)
    import torch
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\n")
    with tempfile.TemporaryDirectory() as tmp: time_to_floor(tmp)

    print("\n2. GPT-2-vocabulary step: n_embd 128, block 256, batch 16, vocab 50,304 (median of 3 steps after a warm-up)")
    step = dict(vocab="gpt2", n_embd=128, n_head=4, block_size=256, batch_size=16)
    rows = {}
    for name, ce, dtype in (("plain float32", "plain", "float32"), ("fused float32", "fused", "float32"),
                            ("fused bfloat16 autocast", "fused", "bfloat16")):
        r = measure("cpu", ce, dtype, 4, **step)
        rows[name] = (statistics.median(r["times"][1:]), r["rss_gb"])
        print(f"   {name:24} {rows[name][0]:6.2f} s/step   peak RSS {rows[name][1]:5.2f} GB")
    from zo_gpt.profiling import measure_matmul_peak
    peak = measure_matmul_peak(torch.device("cpu"))
    head = 6 * 16 * 256 * 128 * 50304                                       # forward + backward FLOPs of the LM head
    print(f"   fp32 matmul floor of the LM head alone: {head / peak:.2f} s ({head / 1e9:.0f} GFLOP at a measured "
          f"{peak / 1e9:.0f} GFLOP/s)")
    print("   for scale, unmodified nanoGPT measured on this kind of machine: 2.0 s/step and 3.8 GB; zo_gpt's fused "
          "loss then took 1.28 s and its plain loss 1.89 s (figures from the issue that set these goals, not re-run here)")
    ratio = rows["plain float32"][0] / rows["fused float32"][0]
    print(f"   fused vs plain: {ratio:.2f}x faster (goal >= 1.6x: {'met' if ratio >= 1.6 else 'missed'}), "
          f"fused peak {rows['fused float32'][1]:.2f} GB (goal <= 1.2 GB: {'met' if rows['fused float32'][1] <= 1.2 else 'missed'})")

    if not args.skip_a100:
        print("\n3. the a100 preset on this CPU: batch 64 x block 512, n_embd 768, vocab 50,304, bfloat16, fused loss")
        r = measure("a100", "fused", "bfloat16", 2)
        print(f"   steps {', '.join(f'{t:.1f}' for t in r['times'])} s; peak RSS {r['rss_gb']:.2f} GB "
              f"(goal <= 8 GB: {'met' if r['rss_gb'] <= 8 else 'missed'})")
    print("\n4. the a100 preset on a GPU: " + ("run `python bench/gpu.py DATA_DIR OUT_DIR` there" if not torch.cuda.is_available()
          else "see `python bench/gpu.py DATA_DIR OUT_DIR`"))


if __name__ == "__main__":
    main()

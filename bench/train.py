"""Training figures on this machine: time to floor, the GPT-2-vocabulary step, and the a100 preset on the CPU.

1. Time to floor: `zo-gpt train --preset cpu` as a fresh process, from start to its final evaluation (dataset made
   beforehand). Goal: final loss <= floor + 0.002 in <= 10 s wall. Also the excess over the Bayes predictor, and what
   share of the run the evaluations take (goal <= 10%, final excess standard error <= 1e-5).
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


def time_to_floor(tmp):
    data = Path(tmp) / "data"
    subprocess.run([CLI, "prepare", "--out", str(data), "--vocab", "compact"], check=True, capture_output=True)
    out = Path(tmp) / "run"
    t0 = time.perf_counter()
    r = subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={out}"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode: raise SystemExit(r.stderr)
    s = json.loads((out / "summary.json").read_text())
    val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "val"' in line]
    floor, final = s["floor"], s["final"]
    print("1. time to floor: zo-gpt train --preset cpu, process start to final whole-split evaluation")
    print("   validation curve (step: loss +- se, seconds): " + ", ".join(f"{v['iter']}: {v['loss']:.4f}+-{v['se']:.4f} ({v['time']:.1f}s)" for v in val))
    first = next((v for v in val if v["loss"] <= floor + 0.003), None)
    print("   first evaluation at or below floor + 0.003: " + (f"step {first['iter']}, {first['time']:.1f} s into training" if first else "none"))
    gap = final["loss"] - floor
    print(f"   final whole-split loss {final['loss']:.5f} +- {final['se']:.5f}, floor {floor:.5f}, gap {gap:+.5f} "
          f"(goal <= +0.002: {'met' if gap <= 0.002 else 'missed'})")
    print(f"   wall {wall:.1f} s for the whole command (goal <= 10 s: {'met' if wall <= 10 else 'missed'})")
    print(f"   excess over the Bayes predictor {final['kl']:.2e} +- {final['kl_se']:.1e} nats per token on "
          f"{final['scored']:,} tokens (goal se <= 1e-5: {'met' if final['kl_se'] <= 1e-5 else 'missed'}); by situation: "
          + ", ".join(f"{k} {v:.1e}" for k, v in final["kl_parts"].items() if v))
    r = subprocess.run([sys.executable, __file__, "--eval-cost", str(data)], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    cost = json.loads(r.stdout.strip().splitlines()[-1])
    share = cost["eval_s"] / cost["fit_s"]
    print(f"   evaluations: {cost['evals']} on the fixed batches and the final one take {cost['eval_s']:.2f} s of the "
          f"{cost['fit_s']:.2f} s fit, {share:.1%} (goal <= 10%: {'met' if share <= 0.10 else 'missed'})")


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

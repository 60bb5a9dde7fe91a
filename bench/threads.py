"""Step time of the cpu preset early and late in a run, at each thread setting, on a quiet machine and with one core
kept busy by another program; then the whole `zo-gpt train --preset cpu` command, quiet and busy.

Late in a run the heads' attention is sharp, and softmax's tiny probabilities become subnormal floats, which the CPU
handles several times slower unless they are flushed to zero (`flush_denormal`, on by default). OpenMP's worker
threads spin while they wait for work; on a busy core the spinning costs more than the work, so zo_gpt asks OpenMP
to wait passively (`OMP_WAIT_POLICY=PASSIVE`, set when zo_gpt is imported before torch, unless already set).

Each setting runs in a fresh process, because OpenMP reads its environment once, when torch is first imported.
"libgomp default" imports torch before zo_gpt, so OpenMP keeps its own default (spin about 3 ms before sleeping);
"short spin" does the same with GOMP_SPINCOUNT=1000, a spin a hundred times shorter.
Goals: a late step at most 1.25x an early one (package defaults); with one core busy, the default run at most 1.1x
the 1-thread run; the whole command at most 15 s on a quiet machine."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CLI = str(Path(sys.executable).parent / "zo-gpt")
# (label, environment, flush_denormal); OMP_WAIT_POLICY '' means: torch imported first, libgomp's own default
SETTINGS = [
    ("2 threads, package defaults", {"OMP_NUM_THREADS": "2"}, True),
    ("2 threads, libgomp default wait", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": ""}, True),
    ("2 threads, short spin", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "1000"}, True),
    ("2 threads, no flush", {"OMP_NUM_THREADS": "2"}, False),
    ("1 thread", {"OMP_NUM_THREADS": "1"}, True),
    ("1 thread, no flush", {"OMP_NUM_THREADS": "1"}, False),
]


def worker(args):
    "Time `args.steps` steps from a fresh model and from the finished run's checkpoint; print a JSON line."
    if args.torch_first: import torch  # noqa: F401  OpenMP reads its environment now, before zo_gpt can set it
    import zo_gpt  # noqa: F401  otherwise zo_gpt first, as the command line does
    import torch
    from zo_gpt.checkpoint import load_checkpoint
    from zo_gpt.config import make_config
    from zo_gpt.model import precision
    from zo_gpt.tokens import load_dataset
    from zo_gpt.train import new_run, take_step
    cfg = make_config("cpu", {"flush_denormal": args.flush, "data_dir": args.data})
    data, device, out = load_dataset(args.data), torch.device("cpu"), {}
    with precision(device, cfg.tf32, cfg.flush_denormal):   # as in fit: the run's arithmetic from its first line
        for phase in ("early", "late"):
            state = new_run(cfg, data, device)
            if phase == "late":   # the finished run's weights and optimizer, stepped on at its final learning rate
                ckpt = load_checkpoint(Path(args.run) / "ckpt.pt")
                state.model.load_state_dict(ckpt["model"]); state.optimizer.load_state_dict(ckpt["optimizer"])
                state.iter = ckpt["iter"]
            times = []
            for i in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                take_step(state)
                if i >= args.warmup: times.append(time.perf_counter() - t0)
            out[phase] = statistics.median(times)
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))


@contextmanager
def busy_core(on:bool):
    "Another program keeping one core busy while the block runs."
    p = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if on else None
    try: yield
    finally:
        if p: p.kill(); p.wait()


def env_for(extra:dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **{k: v for k, v in extra.items() if v}}


def step_times(data, run, steps, warmup, repeats, settings=SETTINGS, busy_too=True):
    print(f"1. median step time of the cpu preset (ms), {steps} steps after a warm-up, early (a fresh model) and late "
          f"(the finished run's model); the best of {repeats} processes per cell")
    print(f"   {'setting':34} {'quiet early':>11} {'quiet late':>10} {'late/early':>10} {'busy early':>10} {'busy late':>9}")
    rows = {}
    for label, extra, flush in settings:
        row = {}
        for busy in ((False, True) if busy_too else (False,)):
            with busy_core(busy):
                got = []
                for _ in range(repeats):
                    cmd = [sys.executable, __file__, "--worker", "--data", str(data), "--run", str(run),
                           "--steps", str(steps), "--warmup", str(warmup), *(["--flush"] if flush else []),
                           *(["--torch-first"] if extra.get("OMP_WAIT_POLICY") == "" else [])]
                    r = subprocess.run(cmd, capture_output=True, text=True, env=env_for(extra))
                    if r.returncode: raise SystemExit(r.stderr)
                    got.append(json.loads(r.stdout.strip().splitlines()[-1]))
            for phase in ("early", "late"): row[(busy, phase)] = 1000 * min(g[phase] for g in got)
            if got[0]["threads"] != int(label[0]):   # the label says how many threads the row is about
                raise SystemExit(f"{label}: torch used {got[0]['threads']} threads")
        rows[label] = row
        ms = lambda busy, phase, w: f"{row[(busy, phase)]:{w}.1f}" if (busy, phase) in row else f"{'-':>{w}}"
        print(f"   {label:34} {ms(False, 'early', 11)} {ms(False, 'late', 10)} "
              f"{row[(False, 'late')] / row[(False, 'early')]:10.2f} {ms(True, 'early', 10)} {ms(True, 'late', 9)}", flush=True)
    if not busy_too: return rows
    d, one = rows["2 threads, package defaults"], rows["1 thread"]
    ratio = d[(False, "late")] / d[(False, "early")]
    print(f"   late / early step at the package defaults: {ratio:.2f} (goal <= 1.25: {'met' if ratio <= 1.25 else 'missed'})")
    for phase in ("early", "late"):
        r = d[(True, phase)] / one[(True, phase)]
        print(f"   one core busy, {phase} step: default / 1 thread = {r:.2f} (goal <= 1.1: {'met' if r <= 1.1 else 'missed'})")
    return rows


def command_times(data, repeats):
    print(f"2. zo-gpt train --preset cpu as a fresh process (dataset made beforehand), wall seconds, best of {repeats}")
    walls = {}
    for label, extra in (("package defaults", {}), ("1 thread", {"OMP_NUM_THREADS": "1"})):
        for busy in (False, True):
            with busy_core(busy), tempfile.TemporaryDirectory() as tmp:
                got = []
                for i in range(repeats):
                    t0 = time.perf_counter()
                    r = subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={tmp}/run{i}"],
                                       capture_output=True, text=True, env=env_for(extra))
                    got.append(time.perf_counter() - t0)
                    if r.returncode: raise SystemExit(r.stderr)
                    kl = json.loads(Path(f"{tmp}/run{i}/summary.json").read_text())["final"]["kl"]
            walls[(label, busy)] = min(got)
            print(f"   {label:18} {'one core busy' if busy else 'quiet':13} {min(got):6.1f} s (runs: "
                  f"{', '.join(f'{g:.1f}' for g in got)}); final excess {kl:.1e}", flush=True)
    q = walls[("package defaults", False)]
    b = walls[("package defaults", True)] / walls[("1 thread", True)]
    print(f"   quiet, package defaults: {q:.1f} s (goal <= 15: {'met' if q <= 15 else 'missed'}); one core busy, "
          f"default / 1 thread = {b:.2f} (goal <= 1.1: {'met' if b <= 1.1 else 'missed'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--data"); ap.add_argument("--run")
    ap.add_argument("--flush", action="store_true"); ap.add_argument("--torch-first", action="store_true")
    ap.add_argument("--steps", type=int, default=40); ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2, help="processes per cell; the fastest is reported")
    ap.add_argument("--dry-run", action="store_true", help="a few steps and one command run, to check the script works")
    args = ap.parse_args()
    if args.worker: return worker(args)
    if args.dry_run: args.steps, args.warmup, args.repeats = 3, 1, 1
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        subprocess.run([CLI, "prepare", "--out", str(data), "--vocab", "compact"], check=True, capture_output=True)
        iters = ["--max_iters=20", "--eval_interval=10", "--final_eval=False"] if args.dry_run else []
        subprocess.run([CLI, "train", "--preset", "cpu", f"--data_dir={data}", f"--out_dir={run}", *iters],
                       check=True, capture_output=True)
        if args.dry_run:   # two settings, quiet only: that the script works, not what it measures
            two = [s for s in SETTINGS if s[0] in ("2 threads, package defaults", "1 thread")]
            return step_times(data, run, args.steps, args.warmup, args.repeats, two, busy_too=False)
        step_times(data, run, args.steps, args.warmup, args.repeats)
        command_times(data, args.repeats)


if __name__ == "__main__":
    main()

"""Sweep of cpu-preset settings: steps, tokens and seconds until the excess over the Bayes predictor reaches 1e-3 and
1e-4, several seeds per setting, each run in this process one after another.

`python bench/sweep.py DATA_DIR [--seeds 3] [--steps 600] [--only NAME ...]` prints one row per setting (median over
seeds, and how many seeds got there) and writes bench/out/sweep.json. Steps and tokens do not depend on the machine;
seconds do. The excess is measured on the run's fixed validation batches every 25 steps, and at the end by the
preset's final evaluation."""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from zo_gpt.config import make_config
from zo_gpt.train import Callback, fit

# Each setting changes the old cpu preset (peak lr 1e-2, cosine to 1e-3 over 600 steps here); the last one is the
# preset chosen from this sweep. Every run uses --steps steps unless its setting says otherwise.
OLD = {"lr": 1e-2, "min_lr": 1e-3}
SETTINGS = {name: {**OLD, **changes} for name, changes in {
    "old preset": {},
    "lr 2e-2 to 2e-3": {"lr": 2e-2, "min_lr": 2e-3},
    "lr 3e-2 to 3e-3": {"lr": 3e-2, "min_lr": 3e-3},
    "lr 5e-3 to 5e-4": {"lr": 5e-3, "min_lr": 5e-4},
    "constant lr 1e-2": {"min_lr": 1e-2},
    "beta2 0.95": {"beta2": 0.95},
    "batch 32": {"batch_size": 32},
    "batch 8": {"batch_size": 8},
    "block 512, batch 8": {"block_size": 512, "batch_size": 8},
    "block 128, batch 32": {"block_size": 128, "batch_size": 32},
    "n_embd 64": {"n_embd": 64},
    "1 head": {"n_head": 1},
    "4 heads": {"n_head": 4},
    "weight decay 0.1": {"weight_decay": 0.1},
    "no gradient clipping": {"grad_clip": 0.0},
    "init std 0.05": {"init_std": 0.05},
    "lr 3e-2 to 3e-4": {"lr": 3e-2, "min_lr": 3e-4},
    "lr 3e-2 to 3e-5": {"lr": 3e-2, "min_lr": 3e-5},
    "lr 3e-2 to 3e-5, batch 8": {"lr": 3e-2, "min_lr": 3e-5, "batch_size": 8},
    "lr 3e-2 to 3e-5, block 128, batch 32": {"lr": 3e-2, "min_lr": 3e-5, "batch_size": 32, "block_size": 128},
    "lr 3e-2 to 3e-5, 400 steps (new preset)": {"lr": 3e-2, "min_lr": 3e-5, "max_iters": 400},
}.items()}


class Timer(Callback):
    "Seconds since the first step began, at every evaluation."
    def on_fit_start(self, state): self.t0 = time.perf_counter()
    def on_eval(self, state, record): record["since_start"] = time.perf_counter() - self.t0


def first(val, key, limit):
    return next((r[key] for r in val if r["kl"] <= limit), None)


def run(name, changes, seed, steps, data):
    cfg = make_config("cpu", {"max_iters": steps, "eval_interval": 25, "data_dir": data, "out_dir": f"/tmp/zo-sweep/{name}",
                              **changes, "seed": seed})
    timer = Timer()
    h = fit(cfg, callbacks=[timer], verbose=False)
    val = h.val
    return {"setting": name, "seed": seed, "steps_1e-3": first(val, "iter", 1e-3), "steps_1e-4": first(val, "iter", 1e-4),
            "tokens_1e-3": first(val, "tokens", 1e-3), "tokens_1e-4": first(val, "tokens", 1e-4),
            "s_1e-3": first(val, "since_start", 1e-3), "s_1e-4": first(val, "since_start", 1e-4),
            "final_kl": h.final["kl"], "final_kl_se": h.final["kl_se"], "p_eot_in_view": h.final["p_eot_in_view"],
            "s_per_step": val[-1]["since_start"] / val[-1]["iter"]}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data"); ap.add_argument("--seeds", type=int, default=3); ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--only", nargs="*"); ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "sweep.json"))
    args = ap.parse_args()
    rows = []
    print(f"torch threads {torch.get_num_threads()}; {args.seeds} seeds x {args.steps} steps per setting", flush=True)
    print(f"{'setting':28} {'steps to 1e-3':>13} {'steps to 1e-4':>13} {'reached 1e-4':>12} {'s to 1e-4':>9} "
          f"{'final excess':>12} {'ms/step':>7}", flush=True)
    for name, changes in SETTINGS.items():
        if args.only and name not in args.only: continue
        rs = [run(name, changes, 1337 + s, args.steps, args.data) for s in range(args.seeds)]
        rows += rs
        fmt = lambda v, f: format(v, f) if v is not None else "-"
        print(f"{name:28} {fmt(med([r['steps_1e-3'] for r in rs]), '13.0f')} {fmt(med([r['steps_1e-4'] for r in rs]), '13.0f')} "
              f"{sum(r['steps_1e-4'] is not None for r in rs):>8} of {len(rs)} {fmt(med([r['s_1e-4'] for r in rs]), '9.1f')} "
              f"{med([r['final_kl'] for r in rs]):12.1e} {1e3 * med([r['s_per_step'] for r in rs]):7.1f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": SETTINGS, "runs": rows}, indent=1))
    print("\n" + markdown(rows))


def markdown(rows) -> str:
    "The sweep as a markdown table: medians over seeds, and how many seeds reached each level."
    out = ["| setting (changes to the old cpu preset) | steps to 1e-3 | steps to 1e-4 | seeds at 1e-4 | tokens to 1e-4 | "
           "final excess | ms/step |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == name]
        m = lambda k: med([r[k] for r in rs])
        f = lambda v, spec: format(v, spec) if v is not None else "-"
        out.append(f"| {name} | {f(m('steps_1e-3'), '.0f')} | {f(m('steps_1e-4'), '.0f')} | "
                   f"{sum(r['steps_1e-4'] is not None for r in rs)} of {len(rs)} | {f(m('tokens_1e-4'), ',.0f')} | "
                   f"{m('final_kl'):.1e} | {1e3 * m('s_per_step'):.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())

"""The a100 preset on a CUDA GPU, in one run of a few minutes:

1. the dataset, made if DATA_DIR holds none (bench/prepare.py times it apart);
2. the preset's profile: categories, MFU, kernels, the unprofiled against the profiled step, and its event table
   (OUT_DIR/events.json, the GPU fixture for tests/) with how many kernels were matched to the operator that launched
   them and to its named ranges;
3. how often the training loop makes the host wait for the GPU (CUDA's sync debug mode), by the line that asked;
4. the preset's training run: step time, tokens/s, peak GPU memory, loss and excess over the floor; and the same steps
   as the GPU path was first written, for a before and after on one machine, through the run's own settings: the loss
   read back every step (`read_back_every=1`) and 166-row loss chunks (`ce_chunk_mib=32`). The first version also
   copied batches from pageable memory; that part is left out (only patching torch could bring it back), so "before"
   is a little faster here than the path as first measured;
5. the same steps with torch.compile(dynamic=False): the first read-back's time (compiling) and the step after it;
6. the head's loss each way this torch has (plain, ours, torch's) at the preset's size, bfloat16 and float32.

Each part runs even if an earlier one failed (its traceback is printed); the exit status says whether all did.
Step times come from the run's own read-backs (the host hears of steps in bursts): the time between the last steps
of two bursts, evaluations taken out, after the first `SKIP` steps.

Run where a GPU is: `python bench/gpu.py DATA_DIR OUT_DIR`; DATA_DIR gets the GPT-2 dataset if it holds none (offline,
TIKTOKEN_CACHE_DIR must name a tiktoken cache holding GPT-2's files). `--dry-run` runs every part on the CPU at a tiny
size, to check the script where no GPU is at hand.
"""
import argparse
import json
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from zo_gpt import train
from zo_gpt.accounting import account
from zo_gpt.config import make_config
from zo_gpt.evaluation import excess_text
from zo_gpt.helpers import get_device
from zo_gpt.losses import LOSSES, compare_losses, loss_methods, loss_table
from zo_gpt.model import ce_chunk_rows
from zo_gpt.profiling import category_table, flops_table, ops_table, profile_config, profile_steps
from zo_gpt.tokens import DataConfig, prepare

SKIP = 20  # steps left out of the step time: the first ones warm up (and a compiled run compiles in its first)
NOW = {}  # the run's own settings: on CUDA the loss read back every 10 steps, 512 MiB of logits per loss chunk
BEFORE = {"read_back_every": 1, "ce_chunk_mib": 32}  # the GPU path as first measured (101 ms a step on an H100)
TINY = {"n_embd": 32, "n_head": 2, "block_size": 32, "batch_size": 2, "max_iters": 24, "eval_interval": 12,
        "eval_batches": 1, "final_tokens": 2048, "device": "cpu"}  # --dry-run: each part once, as small as it goes
TINY_SKIP = 4  # --dry-run: steps left out of the step time


class Clock(train.Callback):
    "When the host hears of the last step of each read-back burst, and of each evaluation; it waits for nothing itself."
    def on_fit_start(self, state): self.t0, self.bursts, self.evals = time.perf_counter(), [], {}
    def on_step(self, state, record):
        if not any(r["loss"] is not None for r, _ in state.pending):   # the burst's last step
            self.bursts.append((time.perf_counter(), record["iter"]))
    def on_eval(self, state, record): self.evals[record["iter"]] = time.perf_counter()

    def step_ms(self, skip:int=SKIP) -> float:
        "Milliseconds per step from the first burst ending at or after `skip` to the last, evaluations taken out."
        (t0, i0), (t1, i1) = next(b for b in self.bursts if b[1] >= skip), self.bursts[-1]
        ends = dict((i, t) for t, i in self.bursts)
        evals = sum(t - ends[i] for i, t in self.evals.items() if i0 <= i < i1 and i in ends)
        return (t1 - t0 - evals) / max(1, i1 - i0) * 1e3


def way_text(way:dict, cfg) -> str:
    "The `way`'s settings (NOW, BEFORE) for `cfg`, in words."
    c, kind = replace(cfg, **way), get_device(cfg.device).type
    rows = ce_chunk_rows(c.vocab_size, 0, kind, c.ce_chunk_mib)
    return f"loss read back every {c.read_back(kind)} steps, loss chunks of {rows} rows"


def timed_fit(cfg, way:dict=NOW, callbacks:list=()):
    "Train `cfg` with the `way`'s settings (NOW, BEFORE); returns the history, the clock and the wall time."
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    clock, t0 = Clock(), time.perf_counter()
    h = train.fit(replace(cfg, **way), callbacks=[clock, *callbacks], verbose=False)
    return h, clock, time.perf_counter() - t0


def part(title:str, failed:list):
    "Run the decorated part now; a failure prints its traceback and is counted, and the next part runs."
    def run(fn):
        print(f"\n== {title}", flush=True)
        t0 = time.perf_counter()
        try: fn()
        except Exception:
            traceback.print_exc(file=sys.stdout); failed.append(title)
        print(f"({title}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return run


def linkage(table:dict) -> str:
    "How many of a GPU event table's kernels have their launching operator, named ranges and launch time."
    rows = table["rows"]; n = max(1, len(rows))
    share = lambda f: sum(1 for r in rows if f(r)) / n
    return (f"{len(rows)} rows over {len(table['steps'])} steps on {table['device']} ({table['device_name']}): "
            f"{share(lambda r: r['op']):.0%} with an operator, {share(lambda r: r['ranges']):.0%} with named ranges, "
            f"{share(lambda r: r.get('launch') is not None):.0%} with a launch time, "
            f"{share(lambda r: 'backward' in r['ranges']):.0%} in backward")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir"); ap.add_argument("out_dir")
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU at a tiny size")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device here (--dry-run checks the script on the CPU)")
    out, failed = Path(args.out_dir), []
    out.mkdir(parents=True, exist_ok=True)
    extra = {"data_dir": args.data_dir, **(TINY if args.dry_run else {})}
    skip = TINY_SKIP if args.dry_run else SKIP
    cfg = make_config("a100", {**extra, "out_dir": str(out / "run")})
    where = "CPU (dry run)" if args.dry_run else torch.cuda.get_device_name()
    summary = {"device": where, "torch": torch.__version__, "has_torch_loss": len(loss_methods()) == len(LOSSES)}
    print(f"{where}; torch {torch.__version__}; a100 preset: batch {cfg.batch_size} x block {cfg.block_size}, "
          f"n_embd {cfg.n_embd}, {cfg.dtype}")

    @part("dataset", failed)
    def _():
        data = DataConfig(n_seq=200, seq_len=300) if args.dry_run else DataConfig()
        meta = prepare(data, args.data_dir, verbose=False)
        print(f"{args.data_dir}: {sum(f['tokens'] for f in meta['files'].values()):,} tokens")

    @part("profile", failed)
    def _():
        r = profile_steps(profile_config("a100", extra), active=3, table=out / "events.json")
        table, total = json.loads((out / "events.json").read_text()), sum(r.categories.values())
        links = linkage(table)
        print(f"unprofiled step {r.step_ms:.1f} ms, profiled {r.profiled_step_ms:.1f} ms "
              f"(categories add to {total:.1f} ms, {total / r.step_ms:.0%} of the unprofiled step)")
        print(category_table({"a100 preset": r})); print(flops_table(r)); print(ops_table(r, 20))
        print(links)
        replay = account(table)   # the file written replays to the same step
        assert abs(sum(replay["categories"].values()) - r.profiled_step_ms) < 1e-6 * r.profiled_step_ms + 1e-9
        print(f"event table: {out / 'events.json'}, {(out / 'events.json').stat().st_size / 1e6:.2f} MB")
        summary["profile"] = {"step_ms": r.step_ms, "profiled_step_ms": r.profiled_step_ms, "mfu": r.mfu,
                              "peak": r.peak_source, "launch_bound": r.launch_bound,
                              "other_and_host": (r.categories["other"] + r.categories["data loading / host"]) / total,
                              "shares": {k: v / total for k, v in r.categories.items()}, "linkage": links}

    @part("host waits in the training loop (CUDA's sync debug mode)", failed)
    def _():
        if not torch.cuda.is_available(): print("no CUDA: nothing to count"); return
        c = make_config("a100", {**extra, "max_iters": 40, "eval_interval": 10**6, "final_eval": False})
        class Mark(train.Callback):   # the steps' warnings, not those of making the model and batches, nor evaluations
            def on_fit_start(self, state): self.first = len(caught)
            def on_step(self, state, record): self.last = len(caught)
        for name, way in (("now", NOW), ("before", BEFORE)):
            mark = Mark()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try: timed_fit(c, way, callbacks=[mark])
                finally: torch.cuda.set_sync_debug_mode("default")
            waits = [w for w in caught[mark.first:mark.last] if "synchroniz" in str(w.message)]
            print(f"{name}: {len(waits)} synchronizing calls in {c.max_iters} steps; {way_text(way, c)}")
            for (f, line), n in Counter((Path(w.filename).name, w.lineno) for w in waits).most_common(6):
                print(f"  {n:4d}  {f}:{line}")
            summary[f"host_waits_{name}"] = {"steps": c.max_iters, "syncs": len(waits)}

    for name, way in (("now", NOW), ("before", BEFORE)):
        @part(f"a100 preset, {name}: {way_text(way, cfg)}", failed)
        def _():
            now = name == "now"   # the run before needs no final evaluation, nor all 300 steps, for its step time
            shorter = {} if now else {"max_iters": min(cfg.max_iters, 100)}
            c = make_config("a100", {**extra, "final_eval": now, **shorter})
            h, clock, wall = timed_fit(c, way)
            ms = clock.step_ms(skip)
            tokens = c.batch_size * c.block_size * c.grad_accum
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            print(f"{c.max_iters} steps in {wall:.1f} s; {ms:.1f} ms a step, {tokens / ms * 1e3:,.0f} tokens/s"
                  + (f"; peak GPU memory {peak:.2f} GiB" if peak is not None else ""))
            for r in h.val: print(f"  step {r['iter']:4d}  val loss {r['loss']:.4f} +- {r['se']:.4f}  {excess_text(r)}")
            if h.final:
                f = h.final
                print(f"final, {f['scored']:,} tokens: loss {f['loss']:.5f} +- {f['se']:.5f}, floor {h.floor:.5f}, "
                      f"{excess_text(f)}")
            summary[name] = {"step_ms": ms, "tokens_per_s": tokens / ms * 1e3, "peak_gib": peak, "wall_s": wall,
                             **({"final_loss": h.final["loss"], "final_se": h.final["se"], "floor": h.floor,
                                 "excess": h.final["kl"], "excess_se": h.final["kl_se"]} if h.final else {})}

    @part("torch.compile(dynamic=False)", failed)
    def _():
        c = make_config("a100", {**extra, "compile": True, "max_iters": min(cfg.max_iters, 60), "final_eval": False})
        _, clock, _ = timed_fit(c, NOW)
        ms = clock.step_ms(skip)
        (t, i) = clock.bursts[0]
        compiling = t - clock.t0 - i * ms / 1e3
        print(f"first read-back after {t - clock.t0:.1f} s ({i} steps, compiling included: about "
              f"{compiling:.1f} s of compiling); then {ms:.1f} ms a step"
              + (f", {summary['now']['step_ms'] / ms:.2f}x the uncompiled step" if "now" in summary else ""))
        summary["compiled"] = {"step_ms": ms, "compile_s": compiling}

    for dtype in ("bfloat16", "float32"):
        @part(f"the head's loss, {dtype}", failed)
        def _():
            rows = cfg.batch_size * cfg.block_size
            print(f"{rows:,} rows x n_embd {cfg.n_embd} x vocab {cfg.vocab_size:,}, forward and backward:")
            results = compare_losses(rows, cfg.n_embd, cfg.vocab_size, device=cfg.device, dtype=dtype, repeats=5)
            print(loss_table(results))
            summary[f"loss_{dtype}"] = {r["method"].split(":")[0]: {"ms": r["ms"], "peak_mib": r["peak_mib"]}
                                        for r in results}

    if "now" in summary and "before" in summary:
        summary["speed_up"] = summary["before"]["step_ms"] / summary["now"]["step_ms"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n== summary ({out / 'summary.json'})\n{json.dumps(summary, indent=1)}")
    print(f"\n{'all parts ran' if not failed else 'failed: ' + ', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

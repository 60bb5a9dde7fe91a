"""Time the default 10M-token pipeline (generate, tokenize, write) end to end.

Prints the median of several runs, tokens per second, the time of each stage, and tiktoken on the full text for
scale. Goal on a 2-core machine: the whole default dataset in at most 0.5 s."""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

from zo_gpt.data import generate
from zo_gpt.tokens import DataConfig, encode_text, encode_words, gpt2_encoding, prepare

GOAL_S = 0.5


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--skip-tiktoken", action="store_true", help="skip timing tiktoken on the full text")
    args = ap.parse_args()
    cfg = DataConfig()
    n_tok = cfg.n_seq * (cfg.seq_len + 1)
    gpt2_encoding()  # loading the BPE files is not part of the pipeline
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(10**9))
        median, times = timed(lambda: prepare(cfg, Path(tmp) / f"run{next(runs)}", verbose=False), args.runs)
        t_gen, _ = timed(lambda: generate(cfg.n_seq, cfg.seq_len, cfg.p, cfg.seed), args.runs)
        words = generate(cfg.n_seq, cfg.seq_len, cfg.p, cfg.seed)
        t_tok, _ = timed(lambda: encode_words(words), args.runs)
    print(f"default dataset: {cfg.n_seq:,} sequences x {cfg.seq_len:,} words = {n_tok:,} tokens, {args.runs} runs")
    print("runs (s):          " + " ".join(f"{t:.3f}" for t in times))
    print(f"median end to end: {median:.3f} s   {n_tok / median / 1e6:.1f} M tokens/s")
    verdict = f"met, {GOAL_S / median:.1f}x under it" if median <= GOAL_S else f"missed, {median / GOAL_S:.1f}x over it"
    print(f"goal:              <= {GOAL_S} s: {verdict}")
    print(f"stages (median):   generate {t_gen:.3f} s, tokenize (lookup) {t_tok:.3f} s, "
          f"write + hash + the rest {max(median - t_gen - t_tok, 0):.3f} s")
    if not args.skip_tiktoken:
        t_tt, _ = timed(lambda: encode_text(words), 1)
        print(f"for scale:         tiktoken on the full text {t_tt:.2f} s ({t_tt / t_tok:.0f}x the lookup); "
              "the run we rebuild reported 2.55 s generating + 6.20 s tokenizing")


if __name__ == "__main__":
    main()

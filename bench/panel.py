"""What the training panel costs a run: steps per second of the cpu preset trained by `fit` alone, and by the panel
with 1, 10 and 20 runs shown, in the loss view (redrawn as the run goes) and the excess view (redrawn at evaluations).
Goal: the panel trains at >= 80% of the steps per second of `fit` alone, with one run shown or twenty.

    python bench/panel.py [--steps N] [--repeats 2]

The dataset is the default compact one, made in a temporary folder."""
import argparse
import os
import statistics
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

from zo_gpt.config import make_config, open_dataset  # noqa: E402
from zo_gpt.train import fit  # noqa: E402
from zo_gpt.ui import TrainingPanel  # noqa: E402


def steps_per_s(history):
    t = history.train
    return (len(t) - 1) / (t[-1]["time"] - t[0]["time"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=make_config("cpu").max_iters, help="steps per run (default: the cpu preset's)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting; the median is shown (default 2)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zo-bench-panel-")
    cfg = make_config("cpu", {"data_dir": f"{work}/data", "max_iters": args.steps, "out_dir": f"{work}/plain"})
    data = open_dataset(cfg, make=True)
    plain = [steps_per_s(fit(cfg, data=data, verbose=False)) for _ in range(args.repeats)]
    filler = fit(cfg, data=data, verbose=False)                   # a finished run to show beside the panel's own
    base = statistics.median(plain)
    print(f"cpu preset, {args.steps} steps, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"{'setting':34} {'steps/s':>8} {'of fit alone':>13} {'pictures':>9}")
    print(f"{'fit alone':34} {base:8.1f} {'100%':>13} {'':>9}")
    for view in ("loss", "excess"):
        for shown in (1, 10, 20):
            rates, pictures = [], []
            for r in range(args.repeats):
                panel = TrainingPanel(cfg, run_dir=f"{work}/panel-{view}-{shown}-{r}")
                panel._data[cfg.data_dir] = data
                for i in range(shown - 1): panel.add(filler, f"earlier run {i + 1}")
                panel.view.value = view
                assert panel.wait(60)
                before = panel._renderer.pictures
                panel.train_button.click()
                assert panel.wait(600) and panel.runs[-1].history.final, panel.status.value
                rates.append(steps_per_s(panel.runs[-1].history)); pictures.append(panel._renderer.pictures - before)
                panel.close()
            rate = statistics.median(rates)
            print(f"{f'panel, {view} view, {shown} run(s) shown':34} {rate:8.1f} {rate / base:12.0%} {statistics.median(pictures):9.0f}")


if __name__ == "__main__":
    main()

"The training panel driven headless: set widget values, click, wait, and check the runs, the figure's data, the image."
import subprocess
import sys
import threading
import time

import pytest

from zo_gpt.config import make_config
from zo_gpt.data import reference_excess, stream_floor
from zo_gpt.helpers import ConfigError
from zo_gpt.evaluation import History, loss_figure
from zo_gpt.runs import runs_figure
from zo_gpt.tokens import DataConfig, prepare
from zo_gpt.train import fit
from zo_gpt.runs import steps_to
from zo_gpt.ui import COMPARE, TrainingPanel, _label, _Live


def base(data, **kw):
    return make_config("cpu", {"data_dir": str(data), "eval_interval": 20, "eval_batches": 2, "warmup_iters": 5, **kw})


@pytest.fixture
def panel(compact_data, tmp_path):
    return TrainingPanel(base(compact_data), run_dir=str(tmp_path))


@pytest.fixture(scope="module")
def short_history(compact_data, tmp_path_factory):
    "A finished 40-step run, to fill the panel with runs."
    cfg = base(compact_data, batch_size=8, block_size=64, max_iters=40, eval_interval=5,
               out_dir=str(tmp_path_factory.mktemp("short")))
    return fit(cfg, verbose=False)


@pytest.fixture
def thread_errors():
    "Exceptions that end any thread during the test."
    errors, old = [], threading.excepthook
    threading.excepthook = lambda args: errors.append(f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}")
    yield errors
    threading.excepthook = old


def hlines(fig):
    return sorted(round(float(l.get_ydata()[0]), 6) for ax in fig.axes for l in ax.lines
                  if len(l.get_ydata()) == 2 and l.get_ydata()[0] == l.get_ydata()[1])


def legend_texts(fig):
    "The legend's labels, each on one line (the figure wraps long ones)."
    return [" ".join(t.get_text().split()) for t in fig.axes[0].get_legend().get_texts()]


def shown_is_current(panel):
    "The image on screen is the picture of the panel's state now."
    return bytes(panel.image.value) == panel.picture()


def test_train_records_the_settings_and_the_loss_falls_to_the_floor(panel):
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 200
    panel.train_button.click()
    panel.block.value = 128                                   # moving a slider during a run ...
    panel.train_button.click()                                # ... and pressing Train again change nothing
    assert panel.wait(timeout=120)
    assert len(panel.runs) == 1
    run = panel.runs[0]
    assert (run.cfg.batch_size, run.cfg.block_size, run.cfg.max_iters) == (8, 64, 200)
    h = run.history
    assert len(h.train) == 200 and h.val[0]["loss"] > h.val[-1]["loss"]
    assert abs(h.final["loss"] - h.floor) < 0.01 and h.floor == pytest.approx(stream_floor(2 / 3, 200, 64))
    assert "run 1: batch 8 x block 64" in panel.status.value and "done: excess" in panel.status.value
    assert h.final["kl"] < 0.05 and all("kl" in r for r in h.val)
    assert bytes(panel.image.value[:4]) == b"\x89PNG" and shown_is_current(panel)
    assert bytes(panel.image.value) == panel.picture("loss")
    fig = panel.figure()
    floors = hlines(fig)
    assert round(stream_floor(2 / 3, 200, 64), 6) in floors          # the run's own floor ...
    assert round(stream_floor(2 / 3, 200, 128), 6) in floors         # ... and the slider's
    assert "run 1: batch 8 x block 64, 200 steps, lr 3e-2, seed 1337" in legend_texts(fig)
    rules = panel.figure("rules")                                     # the newest run: its rules, heads and parts
    assert len(rules.axes) == 3 and "run 1" in rules.axes[0].get_title()
    panel.view.value = "excess"                                       # the toggle redraws with the excess
    assert panel.wait(timeout=30) and shown_is_current(panel) and bytes(panel.image.value) == panel.picture("excess")
    fig = panel.figure()
    assert fig.axes[0].get_yscale() == "log"
    assert {round(v, 6) for v in reference_excess(2 / 3, 200, 128).values()} <= set(hlines(fig))
    ys = [y for line in fig.axes[0].lines for y in line.get_ydata()]
    assert any(y == pytest.approx(h.val[-1]["kl"]) for y in ys)
    assert steps_to(h, excess=1.0) == 20 and steps_to(h, excess=0) is None
    panel.clear_button.click()
    assert panel.runs == [] and "ready" in panel.status.value


def test_stop_ends_a_run_within_a_second_and_keeps_it(panel):
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 3000
    panel.train_button.click()
    deadline = time.time() + 60
    while (not panel.runs or not panel.runs[0].history or len(panel.runs[0].history.train) < 5) and time.time() < deadline:
        time.sleep(0.05)
    t0 = time.perf_counter()
    panel.stop_button.click()
    panel.thread.join(timeout=10)
    assert not panel.running and time.perf_counter() - t0 < 1.5
    assert panel.wait(timeout=30)
    h = panel.runs[0].history
    assert h.interrupted and 5 <= len(h.train) < 3000 and panel.runs[0].model is not None
    assert "stopped at step" in panel.status.value
    assert not panel.train_button.disabled and panel.stop_button.disabled
    assert any(l.startswith("run 1:") and f"(stopped at step {len(h.train)})" in l for l in legend_texts(panel.figure()))


def test_a_panel_made_again_on_its_folder_stops_the_run_the_old_one_was_training(panel, compact_data):
    "A5 (pass 47): the panel's cell run again while its run trained left that run going unseen, with no Stop button for it."
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 3000
    panel.train_button.click()
    deadline = time.time() + 60
    while (not panel.runs or not panel.runs[0].history or len(panel.runs[0].history.train) < 3) and time.time() < deadline:
        time.sleep(0.05)   # a state: the run has taken steps
    again = TrainingPanel(base(compact_data), run_dir=str(panel.run_dir))
    assert not panel.running and panel.runs[0].history.interrupted and len(panel.runs[0].history.train) < 3000
    assert not again.running and "was training: its run was stopped after its step" in again.status.value


def test_stop_during_the_final_evaluation_ends_it_and_says_so(panel, monkeypatch):
    said = []
    def press_stop_there(self, state, done, total):   # Stop pressed while the final evaluation runs
        said.append(self.panel.status.value); self.panel.stop(); original(self, state, done, total)
    original = _Live.on_final_batch
    monkeypatch.setattr(_Live, "on_final_batch", press_stop_there)
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 20
    panel.train_button.click()
    assert panel.wait(timeout=60)
    run = panel.runs[0]
    assert len(run.history.train) == 20 and run.history.final is None and run.history.interrupted
    assert "final evaluation next" in said[0]
    assert "stopped in the final evaluation: all 20 steps are done" in panel.status.value
    assert run.legend.endswith("(stopped in the final evaluation)")


def test_errors_show_in_the_status_line(tmp_path, thread_errors):
    tiny = tmp_path / "tiny"
    prepare(DataConfig(n_seq=20, seq_len=20, vocab="compact"), tiny, verbose=False)
    panel = TrainingPanel(make_config("cpu", {"data_dir": str(tiny)}), run_dir=str(tmp_path / "runs"))
    panel.block.value, panel.iters.value = 64, 10
    panel.train_button.click()
    assert panel.wait(timeout=30)
    assert "failed: ConfigError: block_size=64 needs more than 129 tokens (two blocks); the val split has 42" in panel.status.value
    assert "Traceback" not in panel.status.value and panel.runs == [] and not panel.train_button.disabled
    assert thread_errors == []


def test_an_error_in_a_callback_fails_the_run_in_one_line(panel, monkeypatch, thread_errors):
    def broken(self, run, state, record, steps_per_s): raise RuntimeError("\nthe <status> line broke\n  ^\nat char 0")
    monkeypatch.setattr(TrainingPanel, "_progress", broken)
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 20
    panel.train_button.click()
    assert panel.wait(timeout=60)
    assert panel.status.value.endswith("failed: RuntimeError: the &lt;status&gt; line broke</span>") and "\n" not in panel.status.value
    assert panel.runs[0].legend.endswith("(failed)") and not panel.train_button.disabled and thread_errors == []


def test_a_picture_that_cannot_be_drawn_says_so_and_training_goes_on(panel, monkeypatch, thread_errors):
    def broken(*args, **kwargs): raise ValueError("no picture today")
    monkeypatch.setattr("zo_gpt.ui.runs_figure", broken)
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 20
    panel.train_button.click()
    assert panel.wait(timeout=60)
    h = panel.runs[0].history
    assert len(h.train) == 20 and h.final is not None and thread_errors == []
    assert "the plot could not be drawn: ValueError: no picture today" in panel.status.value


def test_runs_figure_is_a_plain_function():
    fig = runs_figure([], [], x="tokens", block_size=512)
    assert hlines(fig) == sorted([round(stream_floor(2 / 3, 1000, 512), 6), round(0.6365141682948128, 6)])
    assert fig.axes[0].get_xlabel() == "tokens seen"
    assert all(b * t == 4096 for b, t in COMPARE)
    with pytest.raises(Exception, match="view must be one of"):
        runs_figure([], [], view="accuracy")


def test_the_note_on_fixed_batches_leaves_the_floors_in_view():
    "M194: the note that the Bayes predictor scores below the floor on fixed batches sits beside the frame, not over its lines."
    floor = stream_floor(2 / 3, 1000, 256)
    val = [{"iter": i, "tokens": 4096 * i, "loss": floor + 0.01, "se": 0.01, "bayes": floor - 0.005, "kl": 0.01, "kl_se": 0.001} for i in (10, 20)]
    h = History({"block_size": 256}, floor, 0.6365141682948128, 2 / 3, 1000, train=[{"iter": i, "tokens": 4096 * i, "loss": 0.7} for i in range(1, 21)], val=val)
    fig = runs_figure([h], ["run"])
    ax, = fig.axes
    fig.canvas.draw()
    note, = [t for t in ax.texts if "by chance" in t.get_text()]
    assert note.get_window_extent().x0 > ax.get_window_extent().x1                  # right of the frame, under the legend
    assert note.get_window_extent().y1 < ax.get_legend().get_window_extent().y0     # and not over the legend


def test_every_legend_line_is_whole_with_runs_of_two_datasets():
    "M212: a floor's label names its dataset when runs differ in p; it wraps as a run's does, and ends inside the figure."
    runs = [History({"block_size": 32}, stream_floor(p, 60, 32), 0.6365, p, 60, train=[{"iter": i, "tokens": 128 * i, "loss": 0.9} for i in range(1, 21)],
                    val=[{"iter": 20, "tokens": 2560, "loss": 0.8, "se": 0.01, "bayes": 0.7, "kl": 0.1, "kl_se": 0.01}]) for p in (2 / 3, 0.99)]
    fig = runs_figure(runs, ["a", "b"], block_size=256, data={"p": 2 / 3, "seq_len": 60})
    fig.canvas.draw()
    texts = fig.axes[0].get_legend().get_texts()
    assert "floor, block 256, 60 words, p = 0.667:\n    0.6415 (slider)" in [t.get_text() for t in texts]   # the slider's: the data given
    assert all(t.get_window_extent().x1 <= fig.bbox.width for t in texts)


def test_gpt2_vocabulary_warns_before_training_and_a_short_run_is_in_view(panel):
    panel.vocab.value = "gpt2"
    assert "many times as long" in panel.status.value
    panel.vocab.value = "compact"
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 10   # a 10-step run
    panel.train_button.click()
    assert panel.wait(timeout=60)
    h = panel.runs[0].history
    ax = panel.figure().axes[0]
    assert ax.get_ylim()[1] >= h.val[-1]["loss"] > h.floor + 0.05          # where the run is now is in view


def test_the_loss_view_frames_the_floor_and_marks_runs_above_it(panel, short_history):
    early = type(short_history)(**{**short_history.__dict__, "train": short_history.train[:5],
                                   "val": [r for r in short_history.val if r["iter"] <= 5], "final": None})
    panel.add(early, "stopped after 5 steps")                 # far above the floor ...
    panel.add(short_history, "40 steps")                      # ... and the newest run, near it
    fig = panel.figure()
    ax = fig.axes[0]
    top = ax.get_ylim()[1]
    assert ax.get_yscale() == "linear" and short_history.floor < top < early.val[-1]["loss"]
    marks = [l for l in ax.lines if l.get_marker() == "^"]
    assert marks and all(l.get_ydata()[0] == top for l in marks)
    assert any("above the frame" in t.get_text() for t in ax.texts)


def test_twenty_runs_keep_a_legible_legend_with_labels_that_differ(panel, short_history):
    for i in range(20): panel.add(short_history, f"run of {40 + i} steps, seed {1337 + i} (stopped in the final evaluation)")
    fig = panel.figure()
    fig._repr_png_()                                           # lays the legend out
    legend, ax = fig.axes[0].get_legend(), fig.axes[0]
    texts = legend_texts(fig)
    assert len(set(texts)) == len(texts) and min(t.get_fontsize() for t in legend.get_texts()) >= 9
    box, page, plot = legend.get_window_extent(), fig.bbox, ax.get_window_extent()
    assert box.x0 >= plot.x1 and box.x1 <= page.x1 and box.y0 >= page.y0 and box.y1 <= page.y1   # beside the plot, whole
    lines = [c.lines[0] for c in ax.containers if c.get_label().startswith("run ")]
    assert len({(l.get_color(), l.get_marker(), l.get_linestyle()) for l in lines}) == 20   # no two runs look alike
    assert sorted(int(t.get_text()) for t in ax.texts if t.get_text().isdigit()) == list(range(1, 21))   # numbered
    panel.iters.value = 200                                     # the panel's own runs are labelled with their steps
    assert "200 steps" in _label(panel.config())


def test_the_seed_box_sets_the_run_and_a_repeated_run_says_so(panel):
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 20
    said = []
    for seed in (1337, 1337, 7):
        panel.seed.value = seed
        panel.train_button.click()
        assert panel.wait(timeout=120) and "— done" in panel.status.value
        said.append(panel.status.value)
    first, again, other = panel.runs
    assert [r["loss"] for r in again.history.train] == [r["loss"] for r in first.history.train]
    assert [r["loss"] for r in other.history.train] != [r["loss"] for r in first.history.train]
    assert other.cfg.seed == 7 and "seed 7" in other.label and "seed 1337" in first.label
    assert "the same settings and seed as run 1" in said[1] and "the same settings" not in said[0] + said[2]
    panel.seed.value = 1337
    panel.train_button.click()
    assert panel.wait(timeout=120) and "the same settings and seed as run 2" in panel.status.value


def test_sliders_land_on_the_values_they_show(panel):
    for label, value in panel.lr.options: assert float(label) == value
    panel.lr.value = 1e-3; panel.lr.value = 3e-2                   # away and back
    assert panel.config().lr == 3e-2 and panel.lr.label == "3e-2"
    panel.iters.value, panel.block.value = panel.iters.options[-1], 64   # the Train button names the run it would start
    assert f"block 64, {panel.iters.options[-1]} steps" in panel.train_button.tooltip


def test_any_base_config_is_shown_as_it_is(compact_data, tmp_path):
    odd = base(compact_data, batch_size=24, block_size=100, max_iters=5, lr=0.5, min_lr=0.05)
    panel = TrainingPanel(odd, run_dir=str(tmp_path))
    assert (panel.batch.value, panel.block.value, panel.iters.value, panel.lr.value) == (24, 100, 5, 0.5)
    c = panel.config()
    assert (c.batch_size, c.block_size, c.max_iters, c.lr, c.min_lr) == (24, 100, 5, 0.5, pytest.approx(0.05))
    with pytest.raises(ConfigError, match="base must be a TrainConfig"):
        TrainingPanel({"batch_size": 8})
    with pytest.raises(ConfigError, match="max_block"):
        TrainingPanel(odd, max_block=0)


def test_figures_drawn_from_four_threads_at_once(short_history):
    "matplotlib's text layout is not thread-safe: the package draws one figure at a time, whatever thread asks."
    serial = {view: runs_figure([short_history], ["a"], view=view, block_size=128)._repr_png_() for view in ("loss", "excess")}
    errors, pictures = [], []
    def draw(view):
        try:
            loss_figure(short_history)._repr_png_()
            for _ in range(6): pictures.append((view, runs_figure([short_history], ["a"], view=view, block_size=128)._repr_png_()))
        except Exception as e: errors.append(f"{type(e).__name__}: {e}")
    threads = [threading.Thread(target=draw, args=(v,)) for v in ("loss", "excess") * 2]
    for t in threads: t.start()
    for t in threads: t.join()
    assert errors == [] and len(pictures) == 24
    assert all(png == serial[view] for view, png in pictures)    # the same picture as drawn alone


@pytest.mark.parametrize("trial", range(3))
def test_stress_the_widgets_while_a_run_trains(panel, trial, thread_errors):
    "A reader flips the view, the x-axis and the block slider several times a second while a run trains."
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 150
    panel.train_button.click()
    flips, views, blocks = 0, ["loss", "excess"], [64, 128, 256]
    while panel.running:
        panel.view.value = views[flips % 2]
        if flips % 3 == 0: panel.xaxis.value = "tokens" if panel.xaxis.value == "iter" else "iter"
        panel.block.value = blocks[flips % 3]
        flips += 1
        time.sleep(0.07 + 0.05 * (trial % 2))
    assert panel.wait(timeout=60)
    h = panel.runs[0].history
    assert thread_errors == [] and flips >= 10
    assert len(h.train) == 150 and h.final is not None and "done: excess" in panel.status.value
    assert shown_is_current(panel)                               # the last change won: the view and block shown now,
    assert len(panel.runs) == 1 and not panel.running            # with the one run, finished


def test_python_exits_cleanly_while_a_run_trains_and_a_picture_is_drawn(compact_data, tmp_path):
    "Closing the kernel mid-run: the run stops after its step and the picture finishes; nothing is cut off inside torch."
    code = f"""
import time
from zo_gpt.config import make_config
from zo_gpt.ui import TrainingPanel
cfg = make_config("cpu", {{"data_dir": {str(compact_data)!r}, "max_iters": 3000}})
panel = TrainingPanel(cfg, run_dir={str(tmp_path)!r})
panel.train_button.click()
while not (panel.runs and panel.runs[0].history and len(panel.runs[0].history.train) >= 3): time.sleep(0.01)
panel.view.value = "excess"
print("leaving at step", len(panel.runs[0].history.train))
"""
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "leaving at step" in r.stdout and "terminate" not in r.stderr, r.stderr[-2000:]


def test_short_sequences_floor_under_the_entropy_is_in_the_frame(tmp_path):
    "Sequences of 2 words: the floor (0.42) is under H(p) (0.64). Both figures keep their loss axis upright and show the data."
    path = tmp_path / "data"
    prepare(DataConfig(n_seq=3000, seq_len=2, vocab="compact"), path, verbose=False)
    h = fit(base(path, batch_size=8, block_size=8, max_iters=30, eval_interval=10, final_tokens=0,
                 out_dir=str(tmp_path / "run")), verbose=False)
    assert h.floor < h.entropy - 0.2
    losses = [r["loss"] for r in h.val] + [h.final["loss"]]
    for ax in (loss_figure(h).axes[0], runs_figure([h], ["a"], block_size=8).axes[0]):
        lo, hi = ax.get_ylim()
        assert lo < min([h.floor] + losses) and max([h.entropy] + losses[-1:]) < hi, (lo, hi, h.floor, losses)


def test_the_rules_view_shows_the_newest_run_once_it_has_an_evaluation(panel, short_history):
    fig = panel.figure("rules")                                   # no run yet: the loss view, saying why
    assert "rules view shows a run from its first evaluation" in fig.axes[0].get_title()
    panel.add(short_history, "a 40-step run")
    fig = panel.figure("rules")
    assert len(fig.axes) == 3 and fig.axes[0].get_title().startswith("run 1: a 40-step run")
    assert panel.view.options[-1][1] == "rules" if isinstance(panel.view.options[-1], tuple) else panel.view.options[-1] == "rules"


def test_a_run_on_a_dataset_replaced_since_is_not_called_the_same_draw(compact_data, tmp_path):
    "A prepare --force between two runs of one setting (A175c): the second trains on another dataset, so it is another draw."
    import json, shutil
    from zo_gpt.cli import main
    shutil.copytree(compact_data, tmp_path / "ds")
    panel = TrainingPanel(base(tmp_path / "ds"), run_dir=str(tmp_path / "pan"))
    try:
        panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 10
        panel.train_button.click(); assert panel.wait(timeout=120) and "— done" in panel.status.value
        meta = json.loads((tmp_path / "ds" / "meta.json").read_text())["config"]
        assert main(["prepare", "--out", str(tmp_path / "ds"), "--n-seq", str(meta["n_seq"]), "--seq-len", str(meta["seq_len"]),
                     "--vocab", "compact", "--seed", "7", "--force"]) == 0
        panel.train_button.click(); assert panel.wait(timeout=120) and "— done" in panel.status.value
        assert "the same settings" not in panel.status.value, panel.status.value
    finally: panel.close()


def test_an_interrupted_wait_leaves_the_panel_knowing_its_run_is_going(compact_data, tmp_path):
    """A31 (pass 29): Python 3.11's interrupted Thread.join leaves is_alive() False; the panel then started a second run
    beside the first. The stop is sent only once the run trains, and the test waits for it inside the block that expects
    it: a run that ended first fails the test with its status line, never with a stop that lands in a later test."""
    import os, signal
    p = TrainingPanel(base(compact_data, max_iters=100_000, block_size=32, batch_size=4), run_dir=str(tmp_path))
    training = lambda: p.runs and p.runs[-1].history is not None and p.runs[-1].history.train
    def interrupt_once_training():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.running and not training(): time.sleep(0.05)
        if p.running and training(): os.kill(os.getpid(), signal.SIGINT)   # Jupyter's stop button, while the kernel waits for the panel
    p.start()
    interrupter = threading.Thread(target=interrupt_once_training, daemon=True)
    with pytest.raises(KeyboardInterrupt):
        interrupter.start()
        p.wait(300)
        interrupter.join()   # a stop sent is taken here at the latest
        pytest.fail(f"no stop: the run ended first, or never trained: {p.status.value}")
    try:
        assert p.running and not p.wait(0.1)
        p.start()                                                            # ignored: a run is going
        assert sum(t.name == "zo_gpt panel training" for t in threading.enumerate()) == 1
    finally:
        p.close(120)
    assert not p.running and len(p.runs) == 1

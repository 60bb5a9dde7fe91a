"The training panel driven headless: set widget values, click, wait, and check the runs and the figure's data."
import time

import pytest

from zo_gpt.config import make_config
from zo_gpt.data import reference_excess, stream_floor
from zo_gpt.tokens import DataConfig, prepare
from zo_gpt.ui import COMPARE, TrainingPanel, runs_figure, steps_to


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    prepare(DataConfig(n_seq=400, seq_len=200, vocab="compact"), path, verbose=False)
    return path


@pytest.fixture
def panel(data, tmp_path):
    base = make_config("cpu", {"data_dir": str(data), "eval_interval": 20, "eval_batches": 2, "warmup_iters": 5})
    return TrainingPanel(base, run_dir=str(tmp_path))


def hlines(fig):
    return sorted(round(float(l.get_ydata()[0]), 6) for ax in fig.axes for l in ax.lines
                  if len(l.get_ydata()) == 2 and l.get_ydata()[0] == l.get_ydata()[1])


def test_train_records_the_settings_and_the_loss_falls_to_the_floor(panel):
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 200
    before = panel.image.value
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
    assert panel.image.value != before and panel.image.value[:4] == b"\x89PNG"
    fig = panel.figure()
    floors = hlines(fig)
    assert round(stream_floor(2 / 3, 200, 64), 6) in floors          # the run's own floor ...
    assert round(stream_floor(2 / 3, 200, 128), 6) in floors         # ... and the slider's
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "run 1: batch 8 x block 64, lr 0.03, compact" in labels
    panel.view.value = "excess"                                       # the toggle redraws with the excess
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
    assert panel.wait(timeout=10)
    assert time.perf_counter() - t0 < 1.5
    h = panel.runs[0].history
    assert h.interrupted and 5 <= len(h.train) < 3000 and panel.runs[0].model is not None
    assert "stopped at step" in panel.status.value
    assert not panel.train_button.disabled and panel.stop_button.disabled
    labels = [t.get_text() for t in panel.figure().axes[0].get_legend().get_texts()]
    assert any(l.startswith("run 1:") and f"(stopped at step {len(h.train)})" in l for l in labels)


def test_errors_show_in_the_status_line(tmp_path):
    tiny = tmp_path / "tiny"
    prepare(DataConfig(n_seq=20, seq_len=20, vocab="compact"), tiny, verbose=False)
    panel = TrainingPanel(make_config("cpu", {"data_dir": str(tiny)}), run_dir=str(tmp_path / "runs"))
    panel.block.value, panel.iters.value = 64, 10
    panel.train_button.click()
    assert panel.wait(timeout=30)
    assert "failed: ConfigError: block_size=64 needs more than 129 tokens (two blocks); the val split has 42" in panel.status.value
    assert "Traceback" not in panel.status.value and panel.runs == [] and not panel.train_button.disabled


def test_runs_figure_is_a_plain_function():
    fig = runs_figure([], [], x="tokens", block_size=512)
    assert hlines(fig) == sorted([round(stream_floor(2 / 3, 1000, 512), 6), round(0.6365141682948128, 6)])
    assert fig.axes[0].get_xlabel() == "tokens seen"
    assert all(b * t == 4096 for b, t in COMPARE)
    with pytest.raises(Exception, match="view must be one of"):
        runs_figure([], [], view="accuracy")


def test_gpt2_vocabulary_warns_before_training_and_early_steps_are_visible(panel):
    panel.vocab.value = "gpt2"
    assert "30 times" in panel.status.value
    panel.vocab.value = "compact"
    panel.batch.value, panel.block.value, panel.iters.value = 8, 64, 10   # a 10-step run
    panel.train_button.click()
    assert panel.wait(timeout=60)
    h = panel.runs[0].history
    ax = panel.figure().axes[0]
    assert ax.get_ylim()[1] >= max(r["loss"] for r in h.train) and ax.get_yscale() == "log"

"""The causal test of the boundary head: small models trained for a few seconds each, every head knocked out in turn
(mean ablation), and `zo-gpt explain` on a run folder, as a user would call it."""
import shutil
import threading

import pytest
import torch

from zo_gpt.ablation import ablated, explain, explain_run, explain_table, head_means
from zo_gpt.checkpoint import load_model
from zo_gpt.cli import main
from zo_gpt.config import fixed_batches, make_config, open_dataset
from zo_gpt.helpers import ConfigError, DatasetError
from zo_gpt.train import Checkpointer, fit

SEEDS = range(1, 6)


@pytest.fixture(scope="module")
def small_runs(tiny_data, tmp_path_factory):
    """Five seeds of a small model (4 heads, block 64, 300 steps) on 200 sequences of 60 words: each learns where
    sequences end in about 2 s. explain's result for each, with its boundary scores."""
    results = {}
    for seed in SEEDS:
        out = tmp_path_factory.mktemp(f"seed{seed}")
        cfg = make_config("cpu", {"data_dir": str(tiny_data), "out_dir": str(out), "block_size": 64, "batch_size": 16,
                                  "n_head": 4, "max_iters": 300, "eval_interval": 100, "final_eval": False, "seed": seed})
        fit(cfg, callbacks=[Checkpointer()], verbose=False)
        model, _ = load_model(out, device="cpu")
        data = open_dataset(cfg)
        results[seed] = explain(model, fixed_batches(data.val, cfg, torch.device("cpu")), data.meta)
    return results


def test_knocking_out_the_top_boundary_head_costs_the_most_where_the_boundary_matters(small_runs):
    """Ablating the head with the highest boundary score multiplies the excess of words read with the sequence start
    in view by more than 2, and by more than ablating any other head does. Attention is not always causation: over 15
    seeds of this setting on a quiet 2-core machine the ordering held in 13 (in the others two heads watched the
    boundary and the rule rested on the other one), so the test asks for it in at least 3 of 5 seeds."""
    held = []
    for seed, r in small_runs.items():
        top = max(range(4), key=lambda h: r["scores"][h])
        f = r["factor"]
        held.append(f[top] > 2 and all(f[top] > f[h] for h in range(4) if h != top))
    assert sum(held) >= 3, {s: (r["scores"], r["factor"]) for s, r in small_runs.items()}


def test_the_boundary_head_knocked_out_gives_the_end_of_text_back_its_probability(small_runs):
    "Where the rule is found, knocking out the heads it rests on raises P(end of text) where the start is in view."
    for r in small_runs.values():
        h, rows = r["boundary_head"], r["rows"]
        if h is not None: assert r["factor"][h] > 2 and rows[f"head {h}"]["p_eot_in_view"] > rows["none"]["p_eot_in_view"]
        assert rows["all heads"]["kl"] > rows["none"]["kl"]


def test_ablated_restores_the_model_and_checks_its_arguments(tiny_data, finished_run):
    model, _ = load_model(finished_run, device="cpu")
    cfg = make_config("cpu", {"data_dir": str(tiny_data), "block_size": 32, "batch_size": 4, "n_embd": 16, "eval_batches": 1})
    batches = fixed_batches(open_dataset(cfg).val, cfg, torch.device("cpu"))
    means = head_means(model, batches)
    x = batches[0][0]
    with torch.no_grad():
        before = model(x)
        with pytest.raises(RuntimeError), ablated(model, [0], means): raise RuntimeError("a failure inside the block")
        assert torch.equal(model(x), before)                      # the hook is gone however the block ended
    for call, says in [(lambda: head_means("a model", batches), "model must be a GPT"),
                       (lambda: head_means(model, []), "batches must be a list of"),
                       (lambda: head_means(model, [(x,)]), "batches must be a list of"),
                       (lambda: head_means(model, [(x.float(), x.float())]), "batches must be a list of"),
                       (lambda: ablated(model, 3, means).__enter__(), "heads must be a list of head numbers"),
                       (lambda: ablated(model, [0], torch.zeros(model.config.n_head)).__enter__(), "means must be head_means"),
                       (lambda: ablated(model, [0], means[:, :1]).__enter__(), "means must be head_means"),
                       (lambda: explain_table({}), "result must be what explain returns"),
                       (lambda: explain_run(finished_run, data_dir=5), "data_dir must name a dataset folder"),
                       (lambda: ablated(model, [99], means).__enter__(), "heads must be a list of head numbers"),
                       (lambda: ablated(model, ["0"], means).__enter__(), "heads must be a list of head numbers"),
                       (lambda: ablated(model, [0], None).__enter__(), "means must be head_means"),
                       (lambda: explain(model, batches, {"tokens": []}), "meta.s tokens must be a dataset.s token table")]:
        with pytest.raises(ConfigError, match=says): call()


def test_zo_gpt_explain_prints_the_table_for_a_run_folder(finished_run, tiny_data, tmp_path, capsys):
    assert main(["explain", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "knocked out" in out and "all heads" in out
    assert out == explain_table(explain_run(finished_run)) + "\n"
    assert "no single head carries the boundary rule" in out      # a 4-step model: no head more than doubles that part
    moved = tmp_path / "run"                                      # the run copied where its dataset's path leads nowhere
    shutil.copytree(finished_run, moved)
    ckpt = torch.load(moved / "ckpt.pt", weights_only=True)
    ckpt["data_path"], ckpt["data_abspath"] = "gone/data", str(tmp_path / "gone" / "data")
    torch.save(ckpt, moved / "ckpt.pt")
    assert main(["explain", str(moved)]) == 1
    err = capsys.readouterr().err
    assert "cannot find the dataset" in err and "--data" in err and "Traceback" not in err
    assert main(["explain", str(moved), "--data", str(tiny_data)]) == 0              # the hint works
    other = tmp_path / "other"
    assert main(["prepare", "--out", str(other), "--n-seq", "50", "--seq-len", "30", "--vocab", "compact"]) == 0
    capsys.readouterr()
    assert main(["explain", str(moved), "--data", str(other)]) == 1
    err = capsys.readouterr().err
    assert "holds another dataset" in err and f"--out {other}" not in err       # K171: the remake is of the run's dataset, not of this one
    with pytest.raises(DatasetError, match="holds another dataset"): explain_run(moved, data_dir=other)
    assert main(["explain", str(moved), "--data", str(tmp_path / "nowhere")]) == 1
    assert "nowhere holds no dataset" in capsys.readouterr().err             # the folder given, not the run's
    old = torch.load(moved / "ckpt.pt", weights_only=True)                # a checkpoint without the newer keys
    for k in ("data_path", "data_config"): old.pop(k, None)
    torch.save(old, moved / "ckpt.pt")
    assert main(["explain", str(moved)]) == 0             # found by the data_dir of its settings


def test_a_replaced_dataset_gets_the_command_that_makes_it_again(tiny_data, tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data)
    assert main(["train", f"--data_dir={data}", f"--out_dir={run}", "--max_iters=2", "--eval_interval=1", "--block_size=32",
                 "--batch_size=4", "--n_embd=16", "--eval_batches=1", "--final_tokens=2000"]) == 0
    assert main(["prepare", "--out", str(data), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact", "--seed", "7",
                 "--force"]) == 0
    capsys.readouterr()
    assert main(["explain", str(run)]) == 1
    err = capsys.readouterr().err
    assert "holds another dataset" in err and "--seed 1337" in err
    command = err.split("`")[1].split()                           # the hint, followed
    assert main(command[1:]) == 0 and main(["explain", str(run)]) == 0


def test_explain_holds_its_dataset_for_reading_as_a_run_does(finished_run, tiny_data, tmp_path, monkeypatch):
    "A prepare --force of the dataset explain is reading is refused (A130), and explain waits for no prepare writing it."
    import zo_gpt.ablation as ablation
    from zo_gpt.folders import folder_lock
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    said, real = [], ablation.explain
    def explain_then_prepare(*a, **k):
        said.append(main(["prepare", "--out", str(data), "--n-seq", "200", "--seq-len", "60", "--vocab", "compact",
                          "--seed", "7", "--force"]))
        return real(*a, **k)
    monkeypatch.setattr(ablation, "explain", explain_then_prepare)
    assert main(["explain", str(finished_run), "--data", str(data)]) == 0 and said == [2]   # refused: in use
    monkeypatch.undo()
    got = []
    def explain_elsewhere():                                     # another thread: as another process, it does not hold the folder
        try: got.append(explain_run(finished_run, data_dir=data))
        except ConfigError as e: got.append(str(e))
    with folder_lock(data, "out"):                                                          # as a prepare writing it
        t = threading.Thread(target=explain_elsewhere); t.start(); t.join()
    assert "is in use by" in got[0], got


def test_the_ladder_functions_refuse_what_they_cannot_read(finished_run, tiny_data):
    import copy
    from zo_gpt.evaluation import History, loss_figure
    from zo_gpt.ladder import boundary_scores, evaluate_ladder, ladder_figure, nearest_rungs
    model, ckpt = load_model(finished_run, device="cpu")
    meta = open_dataset(make_config("cpu", {"data_dir": str(tiny_data)})).meta
    x = torch.zeros(1, 8, dtype=torch.int64)
    for call, says in [(lambda: evaluate_ladder(None, [(x, x)], meta), "model must be a GPT"),
                       (lambda: evaluate_ladder(model, [x], meta), "batches must be a list of"),
                       (lambda: boundary_scores(model, x + 9, meta), r"x and y must hold only the token ids \[0, 1, 3, 2, 4\], got \[9\]"),
                       (lambda: boundary_scores(model, torch.zeros(1, model.config.block_size + 1, dtype=torch.int64), meta),
                        "a context of 33 tokens is longer than the model's block_size=32")]:
        with pytest.raises(ConfigError, match=says): call()
    h = History(**{k: ckpt["history"][k] for k in ("config", "floor", "entropy", "p", "seq_len")})
    h.train, h.val = ckpt["history"]["train"], copy.deepcopy(ckpt["history"]["val"])
    for r in h.val: r.pop("heads")
    assert len(ladder_figure(h).axes) == 3                                  # without head scores: the other two panels
    h.val[0]["strategies"] = None
    with pytest.raises(ConfigError, match="strategies must give a distance"): nearest_rungs(h)
    h.train, h.val = h.train[:1], []
    ax = loss_figure(h).axes[0]                                              # one step: its loss is a visible point
    assert any(l.get_marker() == "o" and h.train[0]["loss"] in list(l.get_ydata()) for l in ax.get_lines())


def test_a_notebook_never_replaces_a_run_it_did_not_make(finished_run, tmp_path):
    import papermill as pm
    from conftest import NBS, execute_notebook
    keep = tmp_path / "keep"
    shutil.copytree(finished_run, keep)
    before = (keep / "ckpt.pt").read_bytes()
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute_notebook(str(NBS / "03c_ablation.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), kernel_name="python3",
                            parameters={"run_dir": str(keep), "frozen": False}, progress_bar=False)
    assert "holds another run" in str(e.value) and (keep / "ckpt.pt").read_bytes() == before

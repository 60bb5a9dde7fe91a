import json
import subprocess
import sys
from pathlib import Path

import pytest

from zo_gpt import __version__

CLI = str(Path(sys.executable).parent / "zo-gpt")


def zo(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_version_and_help():
    r = zo("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"zo-gpt {__version__}"
    r = zo("prepare", "--help")
    assert r.returncode == 0 and "--val-frac" in r.stdout and "--force" in r.stdout
    assert zo().returncode == 2  # a command is required


def test_prepare_writes_reuses_and_refuses(tmp_path):
    out = tmp_path / "ds"
    r = zo("prepare", "--out", out, "--n-seq", 300, "--seq-len", 50, "--p", "2/3", "--vocab", "compact")
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "stream floor, block   256" in r.stdout and "source entropy H(p)        0.63651" in r.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["p"] == pytest.approx(2 / 3) and meta["vocab_size"] == 5
    r = zo("prepare", "--out", out, "--n-seq", 300, "--seq-len", 50, "--vocab", "compact")
    assert r.returncode == 0 and "reused" in r.stdout
    r = zo("prepare", "--out", out, "--n-seq", 301, "--seq-len", 50)
    assert r.returncode == 1 and "other arguments" in r.stderr and "--force" in r.stderr
    r = zo("prepare", "--out", out, "--n-seq", 301, "--seq-len", 50, "--force")
    assert r.returncode == 0 and json.loads((out / "meta.json").read_text())["config"]["n_seq"] == 301


@pytest.mark.parametrize("args, needle", [
    (["--p", "1.5"], "p must be a probability"),
    (["--p", "two thirds"], "not a number"),
    (["--n-seq", "0"], "n_seq must be a positive integer"),
    (["--seq-len", "-4"], "seq_len must be a positive integer"),
    (["--n-seq", "5", "--val-frac", "0.01"], "val_frac=0.01 leaves the validation split empty: 5 sequences give 0 validation and 5 training sequences; ask for more sequences (n_seq=51 or more gives each split one), or a larger val_frac"),
    (["--vocab", "bytes"], "invalid choice"),
    (["--n_seq", "5"], "zo-gpt prepare: error: unrecognized arguments: --n_seq 5; did you mean --n-seq? (see zo-gpt prepare --help)"),   # D192
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, needle):
    r = zo("prepare", "--out", tmp_path / "ds", *args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ds").exists()


def test_unwritable_out_exits_2(tmp_path):
    (tmp_path / "f").write_text("")
    r = zo("prepare", "--out", tmp_path / "f" / "ds", "--n-seq", 10, "--seq-len", 3)
    assert r.returncode == 2 and "a file, not a folder; choose another folder" in r.stderr


def test_prepare_and_help_load_neither_torch_nor_matplotlib(tmp_path):
    code = ("import sys, contextlib, io\nimport zo_gpt.cli as cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert cli.main(['prepare', '--out', {str(tmp_path / 'ds')!r}, '--n-seq', '50', '--seq-len', '10']) == 0\n"
            "    try: cli.main(['train', '--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_train_help_describes_every_setting():
    r = zo("train", "--help")
    assert r.returncode == 0
    assert "data/zero_one-compact" in r.stdout and "data/zero_one-gpt2" in r.stdout
    assert "--final_tokens=" in r.stdout and "validation tokens the final evaluation may use" in r.stdout
    assert all(line.split()[-1] for line in r.stdout.splitlines() if line.startswith("  --") and "=" in line)



def test_profile_help_gives_the_settings_profile_runs():
    "profile's cpu model is the fused-loss benchmark's, its dataset under --out (K137): its table says so, not train's."
    from zo_gpt.profiling import profile_config
    r = zo("profile", "--help")
    rows = {l.split()[0]: l.split()[1:3] for l in r.stdout.splitlines() if l.startswith("  --") and "=" in l.split()[0]}
    cfg = profile_config("cpu")
    for k in ("vocab", "n_embd", "n_head", "block_size", "batch_size", "max_iters"): assert rows[f"--{k}="][0] == str(getattr(cfg, k)), k
    assert rows["--data_dir="] == ["--out/data-gpt2"] * 2 and "--out_dir=" not in rows
    assert zo("train", "--help").stdout.split("\n  --n_head=")[1].split()[0] == "8"   # train's own table is train's

def test_samples_are_one_sequence_per_paragraph():
    from zo_gpt.cli import format_sample
    text = "1 0 1<|endoftext|>0 1 1 1 0 1 1 0 1 1<|endoftext|>1 1"
    assert format_sample(text, 20).splitlines() == ["1 0 1<|endoftext|>", "0 1 1 1 0 1 1 0 1", "1<|endoftext|>", "1 1"]


def test_train_says_why_a_loss_sits_below_the_floor(tmp_path, monkeypatch, capsys):
    "A validation sample easier than average gives a loss under the floor; the command says so, with the Bayes loss."
    import zo_gpt.train
    from zo_gpt.cli import main
    from zo_gpt.config import make_config
    from zo_gpt.data import entropy, stream_floor
    from zo_gpt.evaluation import History
    floor = stream_floor(2 / 3, 1000, 256)
    def fit(cfg, **kw):
        if cfg: Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        h = History(vars(make_config("cpu")), floor, entropy(2 / 3), 2 / 3, 1000)
        h.final = {"loss": floor - 0.0005, "se": 0.0004, "bayes": floor - 0.00054, "kl": 4e-5, "kl_se": 1e-8, "scored": 512_512}
        return h
    monkeypatch.setattr(zo_gpt.train, "fit", fit)
    assert main(["train", f"--out_dir={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out
    assert "loss - floor -0.00050" in out and "the Bayes predictor scores 0.64310 on them, the model +0.00004 more" in out
    h = fit(None); h.final["loss"] = floor + 0.0002
    monkeypatch.setattr(zo_gpt.train, "fit", lambda cfg, **kw: Path(cfg.out_dir).mkdir(parents=True, exist_ok=True) or h)
    assert main(["train", f"--out_dir={tmp_path / 'run2'}"]) == 0
    assert "below the floor" not in capsys.readouterr().out


def test_train_reuse_reports_the_same_finished_run_and_trains_only_when_it_is_not_there(tiny_data, tmp_path):
    from conftest import SMALL
    args = ["train", f"--data_dir={tiny_data}", f"--out_dir={tmp_path / 'run'}", "--max_iters=4", "--eval_interval=2", *SMALL]
    first = zo(*args, "--reuse")                                           # nothing there yet: it trains
    assert first.returncode == 0 and "wrote" in first.stdout, first.stderr
    stamp = (tmp_path / "run" / "ckpt.pt").stat().st_mtime_ns
    again = zo(*args, "--reuse")
    assert again.returncode == 0 and "reused the finished run in" in again.stdout and "wrote" not in again.stdout, again.stderr
    result = lambda r: [l for l in r.stdout.splitlines() if l.startswith("final val loss")]
    assert result(again) == result(first) and len(result(first)) == 1   # the same results, reported again
    assert (tmp_path / "run" / "ckpt.pt").stat().st_mtime_ns == stamp
    assert zo(*args).returncode == 2                                       # without --reuse: refused, as before
    other = zo(*args, "--reuse", "--lr=0.01")                              # another run: refused, not replaced
    assert other.returncode == 2 and "holds a run" in other.stderr and (tmp_path / "run" / "ckpt.pt").stat().st_mtime_ns == stamp

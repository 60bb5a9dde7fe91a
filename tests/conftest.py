import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"


def execute_notebook(*args, **kwargs):
    """papermill's `execute_notebook`, started once more if its kernel never came up. Two kernels launched at once (two
    test workers) can be handed the same free port by jupyter_client, and the second then dies binding it ("Address
    already in use") before it runs a cell: a race in choosing ports, not in the notebook, seen once in a CI run."""
    import papermill as pm
    try: return pm.execute_notebook(*args, **kwargs)
    except RuntimeError as e:   # not a failing cell: papermill reports those as a PapermillExecutionError
        if not str(e).startswith(("Kernel didn't respond", "Kernel died before replying")): raise
        return pm.execute_notebook(*args, **kwargs)

# GPT-2's BPE files come from the shared tiktoken cache where the project has one beside it.
_cache = ROOT.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _cache.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_cache)
# Two cores: one BLAS/torch thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import zo_gpt  # noqa: E402,F401  before any test module imports torch: zo_gpt sets OpenMP's wait policy (02a_config)

# The suite's commands start as from a terminal, the stop signals theirs: a suite started in the background (`make test
# &`, a script's `&`) has Ctrl-C ignored, under nohup a hang-up, every command it starts would inherit that, and the tests
# that stop one with the signal would wait for a run that never stops.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN: signal.signal(signal.SIGINT, signal.default_int_handler)
for _sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
    if _sig is not None and signal.getsignal(_sig) is signal.SIG_IGN: signal.signal(_sig, signal.SIG_DFL)

# Arguments of a run that takes a second: `zo-gpt train ... *SMALL` (with --max_iters and --eval_interval).
SMALL = ["--block_size=32", "--batch_size=4", "--n_embd=16", "--eval_batches=1", "--final_tokens=2000"]


@pytest.fixture
def out(tmp_path):
    "A dataset folder that does not exist yet."
    return tmp_path / "ds"


# Datasets and runs made once per test session and shared by the test files: read them, never write to them (copy
# one with shutil.copytree to change it).

def _dataset(factory, name, **kwargs):
    from zo_gpt.tokens import DataConfig, prepare
    path = factory.mktemp(name) / "data"
    prepare(DataConfig(**kwargs), path, verbose=False)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    "200 sequences of 60 words, compact vocabulary (~11k train tokens): for runs of a few steps."
    return _dataset(tmp_path_factory, "tiny", n_seq=200, seq_len=60, vocab="compact")


@pytest.fixture(scope="session")
def tiny_gpt2_data(tmp_path_factory):
    "The same 200 sequences of 60 words, with GPT-2's token ids."
    return _dataset(tmp_path_factory, "tiny-gpt2", n_seq=200, seq_len=60, vocab="gpt2")


@pytest.fixture(scope="session")
def compact_data(tmp_path_factory):
    "400 sequences of 200 words, compact vocabulary (~72k train tokens): for runs that learn, up to block 256."
    return _dataset(tmp_path_factory, "compact", n_seq=400, seq_len=200, vocab="compact")


@pytest.fixture(scope="session")
def cpu_data(tmp_path_factory):
    "The cpu preset's dataset (`DataConfig(vocab='compact')`: 10,000 sequences of 1,000 words), made once."
    return _dataset(tmp_path_factory, "cpu", vocab="compact")


@pytest.fixture(scope="session")
def finished_run(tiny_data, tmp_path_factory):
    "A run folder of `zo-gpt train` on `tiny_data`: 4 steps, evaluated at 2 and 4, with SMALL's settings."
    from zo_gpt.cli import main
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", f"--data_dir={tiny_data}", f"--out_dir={run}", "--max_iters=4", "--eval_interval=2",
                 *SMALL]) == 0
    return run

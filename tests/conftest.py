import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"

# GPT-2's BPE files come from the shared tiktoken cache where the project has one beside it.
_cache = ROOT.parent / "shared" / "tiktoken-cache"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _cache.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_cache)
# Two cores: one BLAS/torch thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def out(tmp_path):
    "A dataset folder that does not exist yet."
    return tmp_path / "ds"

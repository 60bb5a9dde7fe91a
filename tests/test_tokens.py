import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import zo_gpt.tokens as tokens
from zo_gpt.data import entropy, generate, stream_floor
from zo_gpt.helpers import ConfigError, DatasetError
from zo_gpt.tokens import DataConfig, encode_text, load_dataset, mc_floor, prepare, token_table


def bins(path):
    return (Path(path) / "train.bin").read_bytes(), (Path(path) / "val.bin").read_bytes()


def test_token_table_is_gpt2s():
    table = token_table()
    assert [(r["text"], r["gpt2_id"], r["compact_id"]) for r in table] == [
        ("0", 15, 0), ("1", 16, 1), (" 0", 657, 3), (" 1", 352, 2), ("<|endoftext|>", 50256, 4)]


@pytest.mark.parametrize("n_seq, seq_len, val_frac", [
    (10_000, 1_000, 0.1),  # the default dataset: 10M tokens, ten chunks, the split inside a chunk
    (2_500, 1_000, 0.1),   # 2,250 train sequences end inside the third chunk of 1,047
    (3_000, 1, 0.5),       # one-word sequences: '0'/'1' then end-of-text
    (997, 7, 0.013),
])
def test_fast_path_writes_what_tiktoken_makes_of_the_text(out, n_seq, seq_len, val_frac):
    cfg = DataConfig(n_seq=n_seq, seq_len=seq_len, val_frac=val_frac)
    prepare(cfg, out, verbose=False)
    ref = encode_text(generate(n_seq, seq_len, cfg.p, cfg.seed))  # tiktoken on the full text
    cut = cfg.n_train * (seq_len + 1)
    assert bins(out) == (ref[:cut].tobytes(), ref[cut:].tobytes())
    # the compact files are the same stream through the recorded map
    cmeta = prepare(DataConfig(n_seq=n_seq, seq_len=seq_len, val_frac=val_frac, vocab="compact"), out / "c", verbose=False)
    compact = np.concatenate([np.fromfile(out / "c" / f, np.uint16) for f in ("train.bin", "val.bin")])
    assert compact.max() == 4 and cmeta["vocab_size"] == 5
    assert np.array_equal(np.array(cmeta["compact_to_gpt2"], np.uint16)[compact], ref)


def test_meta_records_what_was_made(out):
    cfg = DataConfig(n_seq=300, seq_len=40, p=0.3, seed=5, val_frac=0.2)
    meta = prepare(cfg, out, verbose=False)
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta
    assert meta["config"] == asdict(cfg) and meta["vocab_size"] == 50257 and meta["eot_id"] == 50256
    assert meta["split"] == {"by": "sequence", "train_seqs": 240, "val_seqs": 60}
    assert meta["files"]["train.bin"]["tokens"] == 240 * 41 == len(np.fromfile(out / "train.bin", np.uint16))
    counts = {t["text"]: (t["train"], t["val"]) for t in meta["tokens"]}
    assert counts["<|endoftext|>"] == (240, 60)
    assert counts["0"][0] + counts["1"][0] == 240
    words = generate(300, 40, 0.3, 5)
    assert counts[" 1"][0] == words[:240, 1:].sum() and counts["1"][1] == words[240:, 0].sum()
    assert meta["floors"]["entropy_nats"] == pytest.approx(entropy(0.3))
    assert meta["floors"]["stream"]["256"] == pytest.approx(stream_floor(0.3, 40, 256))


def test_same_arguments_reuse_other_arguments_refused(out, capsys):
    cfg = DataConfig(n_seq=200, seq_len=30)
    meta = prepare(cfg, out)
    stamp = (out / "train.bin").stat().st_mtime_ns
    assert prepare(cfg, out) == meta
    assert "reused" in capsys.readouterr().out
    assert (out / "train.bin").stat().st_mtime_ns == stamp
    other = DataConfig(n_seq=200, seq_len=31)
    with pytest.raises(DatasetError, match=r"other arguments \(seq_len=30 there, 31 asked\).*--force"):
        prepare(other, out)
    assert prepare(other, out, force=True)["config"]["seq_len"] == 31
    assert len(np.fromfile(out / "val.bin", np.uint16)) == 20 * 32


def test_bins_without_meta_are_not_overwritten(out):
    out.mkdir()
    (out / "train.bin").write_bytes(b"nanoGPT's own")
    with pytest.raises(DatasetError, match="without meta.json"):
        prepare(DataConfig(n_seq=20, seq_len=5), out)
    assert (out / "train.bin").read_bytes() == b"nanoGPT's own"
    prepare(DataConfig(n_seq=20, seq_len=5), out, force=True, verbose=False)
    assert load_dataset(out).train.shape == (18 * 6,)


def test_damaged_files_are_detected_and_rebuilt(out):
    cfg = DataConfig(n_seq=100, seq_len=20)
    prepare(cfg, out, verbose=False)
    good = bins(out)
    data = bytearray(good[0]); data[10] ^= 1
    (out / "train.bin").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="SHA-256 differs"):
        load_dataset(out)
    load_dataset(out, verify=False)  # sizes still agree
    with open(out / "val.bin", "r+b") as f: f.truncate(7)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(out, verify=False)
    prepare(cfg, out, verbose=False)  # same arguments: rebuilt, not trusted
    assert bins(out) == good
    (out / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(out)
    with pytest.raises(DatasetError, match="holds no dataset"):
        load_dataset(out / "missing")


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_seq=0), "n_seq"), (dict(seq_len=-1), "seq_len"), (dict(p=1.0), "p must be"), (dict(p=0), "p must be"),
    (dict(seed=-3), "seed"), (dict(val_frac=0), "val_frac"), (dict(val_frac=1), "val_frac"),
    (dict(n_seq=9, val_frac=0.05), "leaves the validation split empty"),
    (dict(n_seq=9, val_frac=0.95), "leaves the training split empty"), (dict(vocab="bpe"), "vocab must be one of"),
])
def test_bad_config_names_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        DataConfig(**kwargs)


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="out=.* is inside .*, a file, not a folder"):
        prepare(DataConfig(n_seq=10, seq_len=3), tmp_path / "file" / "ds")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare(DataConfig(n_seq=10, seq_len=3), tmp_path / "file")


def test_interrupt_leaves_no_partial_dataset(out, monkeypatch):
    old = prepare(DataConfig(n_seq=50, seq_len=9), out, verbose=False)
    real = tokens.iter_words
    def interrupted(*args, **kwargs):
        chunks = real(*args, **kwargs)
        yield next(chunks)
        raise KeyboardInterrupt
    monkeypatch.setattr(tokens, "iter_words", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(DataConfig(n_seq=3_000, seq_len=1_000), out, force=True, verbose=False)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]  # no temp files
    assert load_dataset(out).meta == old  # the old dataset is intact
    fresh = out.parent / "fresh"
    with pytest.raises(KeyboardInterrupt):
        prepare(DataConfig(n_seq=3_000, seq_len=1_000), fresh, verbose=False)
    assert not fresh.exists()  # no empty folder left behind either


def test_offline_without_bpe_files_says_how_to_provide_them(tmp_path):
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    cli = Path(sys.executable).parent / "zo-gpt"
    r = subprocess.run([str(cli), "prepare", "--out", str(tmp_path / "ds"), "--n-seq", "10", "--seq-len", "3"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "GPT-2's BPE files" in r.stderr and "TIKTOKEN_CACHE_DIR" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ds" / "meta.json").exists()


def test_mc_floor_bad_input(out):
    prepare(DataConfig(n_seq=20, seq_len=5), out, verbose=False)
    ds = load_dataset(out)
    with pytest.raises(ConfigError, match="block_size=500 needs more than"):
        mc_floor(ds, 500)
    with pytest.raises(ConfigError, match="split must be"):
        mc_floor(ds, 4, split="test")
    with pytest.raises(ConfigError, match="n_blocks"):
        mc_floor(ds, 4, n_blocks=0)

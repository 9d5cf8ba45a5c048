"""Token caches and tokenizers: text is tokenized once, reused, keyed by source and tokenizer, recorded."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conftest import compose, train
from framework.errors import ConfigError
from framework.runner import build
from plugins.problems.tokens import ByteTokenizer, GPT2Tokenizer, cache_root, cached_tokens, load_tokenizer

TEXT = "def f(x):\n    return x * 2  # doubled\n" * 200


def _problem(*overrides: str):
    return build(compose("model=gpt2-nano", "model.block_size=16", "model.batch_size=4", "model.val_batches=1",
                         *overrides).model, "model")


def test_the_token_cache_is_built_once_and_reused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    settings = [f"model.files=[{corpus}]", f"model.cache_dir={tmp_path / 'cache'}"]
    first = _problem(*settings)
    assert first.cache.built and first.tokenizer.calls == 1  # one document, tokenized once
    second = _problem(*settings)
    assert not second.cache.built and second.tokenizer.calls == 0  # read from the memory map
    assert np.array_equal(first.cache.tokens, second.cache.tokens)
    assert bytes(first.cache.tokens[: len(TEXT)].astype(np.uint8)) == TEXT.encode()
    assert first.cache.path.parent == tmp_path / "cache" / "tokens"  # nothing written beside the source
    # a changed file is a new entry; the old one stays
    corpus.write_text(TEXT + "x = 1\n")
    os.utime(corpus, ns=(1, 1))
    third = _problem(*settings)
    assert third.cache.built and third.cache.path != first.cache.path and first.cache.path.exists()
    assert not list((tmp_path / "cache" / "tokens").glob("*.partial"))


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "no record"])
def test_a_damaged_token_cache_is_rebuilt_with_a_note(tmp_path, capfd, damage):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    settings = [f"model.files=[{corpus}]", f"model.cache_dir={tmp_path / 'cache'}"]
    first = _problem(*settings)
    good = np.array(first.cache.tokens)
    path = first.cache.path
    del first
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "flipped byte":
        data = bytearray(path.read_bytes())
        data[3] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.with_suffix(".json").unlink()
    capfd.readouterr()
    again = _problem(*settings)
    note = capfd.readouterr().err.strip().splitlines()
    assert again.cache.built and again.tokenizer.calls == 1
    assert np.array_equal(np.array(again.cache.tokens), good)
    assert len(note) == 1 and note[0].startswith(f"note: token cache {path} is damaged (") and "rebuilding" in note[0]
    third = _problem(*settings)
    assert not third.cache.built  # healed: trusted again


def test_same_windows_from_the_cache_as_from_the_first_build(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    settings = [f"model.files=[{corpus}]", f"model.cache_dir={tmp_path}"]
    built, cached = _problem(*settings), _problem(*settings)
    for a, b in zip(built.train_loader(seed=3), cached.train_loader(seed=3)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_hugging_face_text_builder_goes_through_the_same_cache(tmp_path):
    """``datasets.load_dataset('text', data_files=...)`` offline: one document per line, cached once."""
    corpus = tmp_path / "lines.txt"
    corpus.write_text("first line\nsecond line\n" * 300)
    settings = ["model.dataset=text", f"model.files=[{corpus}]", f"model.cache_dir={tmp_path / 'c'}"]
    first = _problem(*settings, "model.max_documents=500")
    assert first.cache.built and first.tokenizer.calls == 500
    assert bytes(first.cache.tokens[:24].astype(np.uint8)) == b"first line\n\nsecond line\n"
    again = _problem(*settings, "model.max_documents=500")
    assert not again.cache.built and again.tokenizer.calls == 0
    assert first.data_info()["source"]["kind"] == "datasets"
    with pytest.raises(ConfigError, match="model.text_field='body': is not a field"):
        _problem(*settings, "model.text_field=body", "model.max_documents=3")


def test_gpt2_bpe_path_with_a_local_encoding():
    """The tiktoken code path on an encoding built here (GPT-2's own needs a download): ids plus <|endoftext|>."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {bytes([i]): i for i in range(256)}
    encoding = tiktoken.Encoding(name="bytes-bpe", pat_str=r"\S+|\s+", mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": 256})
    tokenizer = GPT2Tokenizer(encoding)
    ids = tokenizer.encode("héllo <|endoftext|> x".encode())
    assert ids[-1] == 256 and 256 not in ids[:-1]  # special text in a document is not a control token
    assert bytes(ids[:-1].astype(np.uint8)) == "héllo <|endoftext|> x".encode()


def test_auto_tokenizer_falls_back_to_bytes_and_says_why():
    tokenizer = load_tokenizer("auto")
    if isinstance(tokenizer, ByteTokenizer):  # offline without tiktoken's cache: the CPU CI machines
        assert "tiktoken cannot load the GPT-2 encoding" in tokenizer.note
        if "TimeoutError" not in tokenizer.note:  # a refused download fails at once; a dropped one waits
            with pytest.raises(ConfigError, match="model.tokenizer='gpt2': is unavailable"):
                load_tokenizer("gpt2")
    else:
        assert tokenizer.name == "gpt2-bpe" and tokenizer.vocab_size == 50257
    with pytest.raises(ConfigError, match="must be one of"):
        load_tokenizer("sentencepiece")


def test_summary_records_source_and_tokenizer(run_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    summary = train(run_dir, "model=gpt2-nano", f"model.files=[{corpus}]", "model.block_size=16",
                    "model.val_batches=1", "trainer.max_steps=2", "trainer.val_check_interval=2")
    data = summary["data"]
    assert data["tokenizer"] == "bytes" and data["tokens"] == len(TEXT) + 2
    assert data["source"]["files"][0][0] == str(corpus.resolve())


def test_cache_location_never_the_source_tree(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "optbench"
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine" and cache_root("/elsewhere") == __import__("pathlib").Path("/elsewhere")


def test_cached_tokens_respects_max_bytes(tmp_path):
    tokenizer = ByteTokenizer()
    cache = cached_tokens({"kind": "test"}, lambda: iter([b"a" * 50, b"b" * 50]), tokenizer, tmp_path, max_bytes=70)
    assert bytes(cache.tokens.astype(np.uint8)) == b"a" * 50 + b"\n\n" + b"b" * 20 + b"\n\n"

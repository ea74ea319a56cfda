"""The streaming path: the same batches as in memory, chunks decoded about once per epoch, and
the memory budget that chooses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2bold.errors import ConfigError
from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.storage import open_dataset
from eeg2bold.training.data import FoldData, SampleConfig
from eeg2bold.training.fit import FoldTrainer, TrainConfig
from eeg2bold.training.streaming import block_order, choose_path


@pytest.fixture(scope="module")
def store(sim_store):
    return open_dataset(sim_store)


def _pair(store, protocol="loso", align="none", cache_mb=64.0):
    cfg = SampleConfig(window_s=8.0, delay_s=2.0, align=align)
    samples = build_sample_table(store, window_s=8.0, delay_s=2.0)
    fold = get_protocol(protocol).folds(samples)[0]
    memory = FoldData(store, samples, fold, config=cfg, path="memory")
    stream = FoldData(store, samples, fold, config=cfg, path="stream", cache_mb=cache_mb)
    return memory, stream


@pytest.mark.parametrize("align", ["none", "euclidean"])
def test_streamed_batches_equal_the_in_memory_ones(store, align):
    memory, stream = _pair(store, align=align)
    assert (memory.path, stream.path) == ("memory", "stream")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        idx = rng.choice(memory.fold.split(split), 48, replace=False)
        runs, starts = memory.samples.run[idx], memory.samples.start_sample[idx]
        raw_m, raw_s = memory._cut(idx, runs, starts), stream._cut(idx, runs, starts)
        assert torch.equal(raw_m, raw_s)  # the same windows, bit for bit
        (em, tm), (es, ts) = memory.batch(idx), stream.batch(idx)
        assert torch.equal(tm, ts)
        torch.testing.assert_close(es, em, rtol=1e-5, atol=1e-5)
    for field in ("eeg_mean", "eeg_scale"):
        np.testing.assert_allclose(
            getattr(stream.normaliser, field), getattr(memory.normaliser, field), rtol=1e-9
        )
    assert (
        stream.describe()["data_path"] == "stream" and memory.describe()["chunks_decoded"] is None
    )


def test_training_is_the_same_on_both_paths_given_the_order(store, tiny_model):
    """The same seed and the block order on both paths: the same losses and val r."""
    memory, stream = _pair(store, protocol="within")
    config = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=16, shuffle="blocks", patience=0)
    reports = []
    for data in (memory, stream):
        torch.manual_seed(0)
        trainer = FoldTrainer(data=data, model_name=tiny_model, model_params={}, config=config)
        reports.append([trainer.step() for _ in range(2)])
    for a, b in zip(*reports, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        np.testing.assert_allclose(a.val.r, b.val.r, rtol=1e-4, atol=1e-5)


def test_block_order_decodes_each_chunk_about_once_per_epoch(store):
    _, stream = _pair(store, cache_mb=2.0)  # a cache far smaller than the fold's EEG
    train = stream.fold.train
    generator = torch.Generator().manual_seed(3)
    order = block_order(train, batch_size=32, generator=generator)
    assert sorted(order.tolist()) == sorted(train.tolist())  # a permutation
    assert order.tolist() != sorted(train.tolist())
    batches = list(order.split(32))
    stream.will_read(batches)
    for idx in batches:
        stream.batch(idx)
    stream._prefetch.stop()
    runs = stream._runs
    touched = {
        (int(r), k)
        for i in train
        for r in [stream.samples.run[i]]
        for k in runs[int(r)].chunks_of(
            int(stream.samples.start_sample[i]),
            int(stream.samples.start_sample[i]) + stream.n_window,
        )
    }
    decoded = stream.describe()["chunks_decoded"]
    assert len(touched) <= decoded <= 1.5 * len(touched), (decoded, len(touched))
    # a global shuffle through the same small cache decodes far more
    _, again = _pair(store, cache_mb=2.0)
    for idx in torch.as_tensor(train)[torch.randperm(train.size, generator=generator)].split(32):
        again.batch(idx)
    assert again.describe()["chunks_decoded"] > 2 * decoded


def test_the_memory_budget_chooses_the_path(monkeypatch):
    monkeypatch.delenv("EEG2BOLD_DATA_PATH", raising=False)
    monkeypatch.setenv("EEG2BOLD_MEMORY_BUDGET_MB", "100")
    assert choose_path(99.0) == "memory" and choose_path(101.0) == "stream"
    monkeypatch.setenv("EEG2BOLD_DATA_PATH", "memory")
    assert choose_path(1e9) == "memory"
    monkeypatch.setenv("EEG2BOLD_DATA_PATH", "sideways")
    with pytest.raises(ConfigError, match="EEG2BOLD_DATA_PATH"):
        choose_path(1.0)
    monkeypatch.setenv("EEG2BOLD_DATA_PATH", "auto")
    monkeypatch.setenv("EEG2BOLD_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(ConfigError, match="EEG2BOLD_MEMORY_BUDGET_MB"):
        choose_path(1.0)


def test_a_fold_over_the_budget_streams(store, monkeypatch):
    monkeypatch.delenv("EEG2BOLD_DATA_PATH", raising=False)
    monkeypatch.setenv("EEG2BOLD_MEMORY_BUDGET_MB", "0.5")
    cfg = SampleConfig(window_s=8.0, delay_s=2.0)
    samples = build_sample_table(store, window_s=8.0, delay_s=2.0)
    fold = get_protocol("loso").folds(samples)[0]
    assert FoldData(store, samples, fold, config=cfg).path == "stream"
    monkeypatch.setenv("EEG2BOLD_MEMORY_BUDGET_MB", "10000")
    assert FoldData(store, samples, fold, config=cfg).path == "memory"

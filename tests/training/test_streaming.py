"""The streaming path: the same batches as in memory, chunks decoded about once per epoch, and
the memory budget that chooses it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import zarr

from eeg2bold.errors import ConfigError
from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.storage import open_dataset
from eeg2bold.training.data import FoldData, SampleConfig
from eeg2bold.training.fit import FoldTrainer, TrainConfig
from eeg2bold.training.streaming import SPAN_BATCHES, ChunkedRun, block_order, choose_path


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


def test_each_block_of_the_order_is_one_span_read_in_one_go(store, monkeypatch):
    """The shorter last span comes last, so every ``SPAN_BATCHES`` batches are one span of
    time-contiguous samples, and the prefetcher reads each in one store read per run (a
    misaligned grouping reads the same chunks in many small pieces)."""
    _, stream = _pair(store, cache_mb=4.0)  # about half the fold: every epoch decodes
    train, batch = np.sort(stream.fold.train), 16
    order = block_order(train, batch_size=batch, generator=torch.Generator().manual_seed(1))
    span = SPAN_BATCHES * batch
    assert train.size % span  # the store leaves a shorter last span: it must come last
    blocks = [order[i : i + span].numpy() for i in range(0, order.numel(), span)]
    assert np.array_equal(np.sort(blocks[-1]), train[-(train.size % span) :])
    for block in blocks:  # each block: one contiguous stretch of the sorted samples
        where = np.searchsorted(train, np.sort(block))
        assert np.array_equal(where, np.arange(where[0], where[0] + block.size))
    reads: list[tuple[int, int]] = []
    original = ChunkedRun._read

    def counted(self, k0, k1):
        reads.append((self.run, k1 - k0))
        return original(self, k0, k1)

    monkeypatch.setattr(ChunkedRun, "_read", counted)
    batches = list(order.split(batch))
    stream.will_read(batches)
    for idx in batches:
        stream.batch(idx)
    stream._prefetch.stop()
    runs_per_block = [np.unique(stream.samples.run[b]).size for b in blocks]
    assert len(reads) <= sum(runs_per_block), (reads, runs_per_block)


def test_the_cache_grows_to_hold_four_blocks_of_large_windows(store):
    """A cache smaller than a block would drop what was read ahead before it is used, and
    decode chunks again: it grows to four blocks (never past MAX_CACHE_MB)."""
    _, stream = _pair(store, cache_mb=0.1)
    order = block_order(stream.fold.train, batch_size=16, generator=torch.Generator())
    batches = list(order.split(16))
    stream.will_read(batches)
    block = max(group[2] for group in stream._prefetch._groups.values())
    assert block > 0.1e6 / 4  # a block larger than a quarter of the cache asked for
    assert stream._cache.max_bytes == 4 * block
    for idx in batches:
        stream.batch(idx)
    stream._prefetch.stop()
    assert stream._cache.bytes <= stream._cache.max_bytes


def test_windows_across_cached_stretches_or_past_a_tiny_cache_are_exact(store):
    memory, stream = _pair(store, cache_mb=64.0)
    run = int(memory.samples.run[memory.fold.train[0]])
    chunked, raw = stream._runs[run], memory._runs[run]
    c, n = chunked.chunk, memory.n_window
    chunked.ensure(np.array([0]), 3 * c)  # chunks 0-2 in one stretch ...
    chunked.ensure(np.array([3 * c]), 3 * c)  # ... 3-5 in the next
    starts = np.array([c // 2, 3 * c - n // 2, 2 * c + 1])  # inside, across, across
    out = np.empty((3, raw.shape[0], n), dtype=np.float32)
    chunked.gather(starts, n, out)
    for j, s in enumerate(starts):
        assert np.array_equal(out[j], raw[:, s : s + n])
    assert len(stream._cache._items) == 2  # read from the two stretches, nothing re-read
    _, tiny = _pair(store, cache_mb=1e-3)  # smaller than one window: read past the cache
    tiny._runs[run].gather(starts, n, out)
    for j, s in enumerate(starts):
        assert np.array_equal(out[j], raw[:, s : s + n])


def test_a_store_written_with_zarrs_default_codec_streams_the_same(sim_store, tmp_path):
    """Stores from before the EEG codec changed (zstd): re-encoded here, the same windows."""
    old = tmp_path / "zstd.zarr"
    shutil.copytree(sim_store, old)
    dataset = open_dataset(old)
    for key in dataset.runs():
        path = dataset.location.path(key.subject, key.run, "eeg")
        array = zarr.open_array(path, mode="r")
        values, attrs = array[...], dict(array.attrs)
        shutil.rmtree(path)
        again = zarr.create_array(
            path,
            shape=values.shape,
            dtype=values.dtype,
            chunks=array.chunks,
            fill_value=np.nan,
            dimension_names=array.metadata.dimension_names,
            attributes=attrs,
            zarr_format=3,
        )
        again[...] = values
        assert again.metadata.codecs[-1].to_dict()["name"] == "zstd"
    memory, _ = _pair(open_dataset(sim_store))
    _, stream = _pair(open_dataset(old))
    idx = np.random.default_rng(1).choice(memory.fold.train, 40, replace=False)
    runs, starts = memory.samples.run[idx], memory.samples.start_sample[idx]
    assert torch.equal(memory._cut(idx, runs, starts), stream._cut(idx, runs, starts))


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

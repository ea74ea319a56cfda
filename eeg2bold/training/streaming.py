"""Training from stores larger than memory: a run's EEG read chunk by chunk, as batches need it.

A :class:`ChunkedRun` stands in for a run's EEG array in :class:`~eeg2bold.training.data.
FoldData`: slicing it ``[:, a:b]`` decodes only the store chunks the slice covers, through a
bounded LRU :class:`ChunkCache` shared by the fold's runs. A :class:`Prefetcher` decodes the
chunks of the next batches in a background thread while the current one trains. With the
training order shuffled within blocks of contiguous spans (:func:`block_order`), each chunk is
decoded about once per epoch.

Which path a fold takes: :func:`choose_path` (the touched EEG against a memory budget,
``$EEG2BOLD_MEMORY_BUDGET_MB`` or half the memory available; ``$EEG2BOLD_DATA_PATH`` =
``memory`` or ``stream`` overrides).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

from eeg2bold.errors import ConfigError, DatasetError

DataPath = Literal["memory", "stream"]
DEFAULT_CACHE_MB = 256.0
SPAN_BATCHES = 4  # a block of the streaming order: this many batches of contiguous samples


def available_mb() -> float:
    """MemAvailable of this machine (Linux), else a large number."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def choose_path(touched_mb: float) -> DataPath:
    """``memory`` when the fold's EEG fits the budget, else ``stream`` (see module doc)."""
    forced = os.environ.get("EEG2BOLD_DATA_PATH", "auto")
    if forced not in ("auto", "memory", "stream"):
        raise ConfigError(f"EEG2BOLD_DATA_PATH must be auto, memory or stream, not {forced!r}")
    if forced != "auto":
        return forced  # type: ignore[return-value]
    budget = os.environ.get("EEG2BOLD_MEMORY_BUDGET_MB")
    try:
        limit = float(budget) if budget else available_mb() / 2
    except ValueError:
        raise ConfigError(f"EEG2BOLD_MEMORY_BUDGET_MB must be a number, not {budget!r}") from None
    return "memory" if touched_mb <= limit else "stream"


class ChunkCache:
    """Decoded stretches of runs' chunks, indexed by chunk; the least recently used stretch
    dropped past ``max_mb``. ``decoded`` counts chunks decoded (twice if decoded twice)."""

    def __init__(self, max_mb: float = DEFAULT_CACHE_MB):
        self.max_bytes = int(max_mb * 1e6)
        self.bytes = 0
        self.decoded = 0
        # (run, first chunk) -> (number of chunks, block [C, samples])
        self._items: OrderedDict[tuple[int, int], tuple[int, np.ndarray]] = OrderedDict()
        self._index: dict[tuple[int, int], tuple[int, int]] = {}  # (run, k) -> its stretch
        self._lock = threading.Lock()

    def has(self, run: int, k: int) -> bool:
        with self._lock:
            return (run, k) in self._index

    def chunk(self, run: int, k: int) -> tuple[int, np.ndarray] | None:
        """(first chunk, block) of the stretch holding chunk ``k`` of ``run``, or None."""
        with self._lock:
            key = self._index.get((run, k))
            if key is None:
                return None
            self._items.move_to_end(key)
            return key[1], self._items[key][1]

    def put(self, run: int, k0: int, n_chunks: int, block: np.ndarray) -> None:
        with self._lock:
            key = (run, k0)
            if key in self._items:
                self._drop(key)
            self._items[key] = (n_chunks, block)
            self.bytes += block.nbytes
            self.decoded += n_chunks
            for k in range(k0, k0 + n_chunks):
                self._index[(run, k)] = key
            while self.bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[int, int]) -> None:
        n_chunks, block = self._items.pop(key)
        self.bytes -= block.nbytes
        for k in range(key[1], key[1] + n_chunks):
            if self._index.get((key[0], k)) == key:
                del self._index[(key[0], k)]


class _TensorStoreArray:
    """A local Zarr v3 array read through tensorstore (its C++ decoder reads chunk ranges
    about 6× faster than zarr-python here); sliced ``[:, a:b]`` like a zarr array."""

    def __init__(self, path: str, array: Any):
        import tensorstore as ts

        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}
        self._ts = ts.open(spec, read=True).result()
        self.shape, self.chunks = tuple(array.shape), tuple(array.chunks)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._ts[index].read().result())


def eeg_array(dataset: Any, key: Any) -> Any:
    """A run's EEG array for streaming: through tensorstore for a local store where it is
    installed, else the zarr array."""
    array = dataset.array(key, "eeg")
    if dataset.location.is_local:
        try:
            return _TensorStoreArray(dataset.location.path(key.subject, key.run, "eeg"), array)
        except Exception:  # not installed, or a store it cannot read: zarr reads it
            return array
    return array


class ChunkedRun:
    """One run's EEG [C, N] in the store, sliced ``[:, a:b]`` through the cache."""

    def __init__(self, array: Any, run: int, cache: ChunkCache, *, where: str):
        self.array, self.run, self.cache, self.where = array, run, cache, where
        self.shape = tuple(array.shape)
        self.chunk = int(array.chunks[1])
        self.nbytes = int(np.prod(self.shape)) * 4
        self._reading = threading.Lock()  # the trainer and the prefetcher: one decodes, the
        # other waits and finds the chunks cached

    def _read(self, k0: int, k1: int) -> np.ndarray:
        """Chunks ``k0`` to ``k1 - 1`` in one store read (the store decodes them together)."""
        lo, hi = k0 * self.chunk, min(k1 * self.chunk, self.shape[1])
        block = np.ascontiguousarray(self.array[:, lo:hi], dtype=np.float32)
        if not np.isfinite(block).all():
            raise DatasetError(
                f"{self.where}: eeg holds non-finite values in samples {lo}-{hi} (a missing or "
                "damaged chunk?); check the store with `eeg2bold inspect --verify`"
            )
        return block

    def chunks_of(self, start: int, stop: int) -> range:
        return range(start // self.chunk, (max(stop, start + 1) - 1) // self.chunk + 1)

    def ensure(self, starts: np.ndarray, n_window: int) -> None:
        """Decode the chunks the windows at ``starts`` need and the cache lacks: one store
        read per contiguous stretch of missing chunks (a block-ordered batch has few)."""
        need: set[int] = set()
        for s in np.unique(starts):
            need.update(self.chunks_of(int(s), int(s) + n_window))
        with self._reading:
            missing = sorted(k for k in need if not self.cache.has(self.run, k))
            i = 0
            while i < len(missing):
                j = i
                while j + 1 < len(missing) and missing[j + 1] == missing[j] + 1:
                    j += 1
                block = self._read(missing[i], missing[j] + 1)
                self.cache.put(self.run, missing[i], j - i + 1, block)
                i = j + 1

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, cols = index
        if rows != slice(None) or cols.step not in (None, 1):
            raise IndexError("a ChunkedRun takes [:, start:stop] only")
        start, stop = cols.start or 0, cols.stop if cols.stop is not None else self.shape[1]
        pieces: list[np.ndarray] = []
        k = start // self.chunk
        at = start
        while at < stop:
            found = self.cache.chunk(self.run, k)
            if found is None:
                self.ensure(np.array([at]), stop - at)
                found = self.cache.chunk(self.run, k)
            if found is None:  # a cache smaller than the window: read it directly
                return self._read(start // self.chunk, (stop - 1) // self.chunk + 1)[
                    :, start - (start // self.chunk) * self.chunk :
                ][:, : stop - start]
            k0, block = found
            end = min(stop, k0 * self.chunk + block.shape[1])
            pieces.append(block[:, at - k0 * self.chunk : end - k0 * self.chunk])
            at, k = end, end // self.chunk
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, a stretch of chunks [C, L]) over the run, read straight from the
        store (the cache is for batches, not for one pass of statistics)."""
        step = max(1, (16 * 1024 * 1024) // (4 * self.shape[0] * self.chunk))  # about 16 MB
        n_chunks = -(-self.shape[1] // self.chunk)
        for k in range(0, n_chunks, step):
            yield k * self.chunk, self._read(k, min(k + step, n_chunks))


class Prefetcher:
    """Decodes, in a background thread, the chunks of the next ``ahead`` batches (two blocks of
    the streaming order) while the current one trains, never further ahead: the cache stays
    small and hot."""

    def __init__(self, runs: dict[int, ChunkedRun], n_window: int, *, ahead: int = 8):
        self.runs, self.n_window, self.ahead = runs, n_window, ahead
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._turn = threading.Condition()
        self._consumed = 0

    def start(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """``batches``: (run index, start sample) arrays of the coming batches, in order."""
        self.stop()
        self._stop, self._consumed = threading.Event(), 0
        stop = self._stop

        def work() -> None:
            for i, (runs, starts) in enumerate(batches):

                def ready(i: int = i) -> bool:
                    return stop.is_set() or i < self._consumed + self.ahead

                with self._turn:
                    self._turn.wait_for(ready)
                if stop.is_set():
                    return
                ensure_batch(self.runs, runs, starts, self.n_window)

        self._thread = threading.Thread(target=work, name="eeg2bold-prefetch", daemon=True)
        self._thread.start()

    def consumed(self) -> None:
        """One planned batch was taken: the thread may read one further."""
        with self._turn:
            self._consumed += 1
            self._turn.notify_all()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            with self._turn:
                self._turn.notify_all()
            self._thread.join()
            self._thread = None


def ensure_batch(
    runs: dict[int, ChunkedRun], run_of: np.ndarray, starts: np.ndarray, n_window: int
) -> None:
    """Decode every chunk a batch needs (grouped reads per run)."""
    for r in np.unique(run_of):
        runs[int(r)].ensure(starts[run_of == r], n_window)


def block_order(train: np.ndarray, *, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A training order shuffled within blocks of contiguous spans: the time-sorted training
    samples cut into spans of ``SPAN_BATCHES`` batches, the spans in random order, each span
    shuffled inside. Consecutive batches then touch the same few store chunks."""
    ordered = torch.as_tensor(np.sort(train))
    span = max(1, SPAN_BATCHES * batch_size)
    spans = list(ordered.split(span))
    out = []
    for i in torch.randperm(len(spans), generator=generator).tolist():
        block = spans[i]
        out.append(block[torch.randperm(block.numel(), generator=generator)])
    return torch.cat(out) if out else ordered

"""Training from stores larger than memory: a run's EEG read chunk by chunk, as batches need it.

A :class:`ChunkedRun` stands in for a run's EEG array in :class:`~eeg2bold.training.data.
FoldData`: a batch's windows are gathered from the store chunks they cover, decoded through a
bounded LRU :class:`ChunkCache` shared by the fold's runs. A :class:`Prefetcher` decodes the
chunks of the coming blocks of batches in a background thread while the current one trains,
one store read per run and block. With the training order shuffled within blocks of
contiguous spans (:func:`block_order`), each chunk is decoded about once per epoch.

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
from eeg2bold.storage.store import DECODE_ERRORS, undecodable

DataPath = Literal["memory", "stream"]
DEFAULT_CACHE_MB = 256.0
MAX_CACHE_MB = 1024.0  # the most the cache grows to hold four blocks of large windows
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
    """Decoded stretches of runs' chunks, the least recently used stretch dropped past
    ``max_mb``. Per run an array maps each chunk to the first chunk of the stretch holding it
    (-1: not cached), so a batch's lookups are array operations, not one per window.
    ``decoded`` counts chunks decoded (twice if decoded twice)."""

    def __init__(self, max_mb: float = DEFAULT_CACHE_MB):
        self.max_bytes = int(max_mb * 1e6)
        self.bytes = 0
        self.decoded = 0
        # (run, first chunk) -> (number of chunks, block [C, samples])
        self._items: OrderedDict[tuple[int, int], tuple[int, np.ndarray]] = OrderedDict()
        self._owner: dict[int, np.ndarray] = {}  # run -> [n_chunks] first chunk of stretch | -1
        self._lock = threading.Lock()

    def register(self, run: int, n_chunks: int) -> None:
        with self._lock:
            self._owner.setdefault(run, np.full(n_chunks, -1, dtype=np.int64))

    def missing(self, run: int, need: np.ndarray) -> np.ndarray:
        """The chunks of the boolean mask ``need`` that are not cached."""
        with self._lock:
            return np.flatnonzero(need & (self._owner[run] < 0))

    def snapshot(self, run: int, chunks: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The owners of ``run``'s chunks and the blocks of the stretches among ``chunks``
        (held by reference: a stretch dropped meanwhile stays readable to the caller)."""
        with self._lock:
            owner = self._owner[run].copy()
            blocks = {}
            for k0 in np.unique(owner[chunks]).tolist():
                if k0 >= 0:
                    self._items.move_to_end((run, k0))
                    blocks[k0] = self._items[(run, k0)][1]
            return owner, blocks

    def put(self, run: int, k0: int, n_chunks: int, block: np.ndarray) -> None:
        with self._lock:
            key = (run, k0)
            if key in self._items:
                self._drop(key)
            self._items[key] = (n_chunks, block)
            self.bytes += block.nbytes
            self.decoded += n_chunks
            self._owner[run][k0 : k0 + n_chunks] = k0
            while self.bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[int, int]) -> None:
        n_chunks, block = self._items.pop(key)
        self.bytes -= block.nbytes
        owner = self._owner[key[0]][key[1] : key[1] + n_chunks]
        owner[owner == key[1]] = -1


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
    """A run's EEG array for streaming: through tensorstore for a local store (a dependency),
    else (a remote store, or one tensorstore cannot open) the zarr array."""
    array = dataset.array(key, "eeg")
    if dataset.location.is_local:
        try:
            return _TensorStoreArray(dataset.location.path(key.subject, key.run, "eeg"), array)
        except Exception:  # not installed, or a store it cannot read: zarr reads it
            return array
    return array


class ChunkedRun:
    """One run's EEG [C, N] in the store: windows gathered through the cache
    (:meth:`gather`), or sliced ``[:, a:b]``."""

    def __init__(self, array: Any, run: int, cache: ChunkCache, *, where: str):
        self.array, self.run, self.cache, self.where = array, run, cache, where
        self.shape = tuple(array.shape)
        self.chunk = int(array.chunks[1])
        self.n_chunks = -(-self.shape[1] // self.chunk)
        self.nbytes = int(np.prod(self.shape)) * 4
        self.chunk_bytes = self.shape[0] * self.chunk * 4
        cache.register(run, self.n_chunks)
        self._reading = threading.Lock()  # the trainer and the prefetcher: one decodes, the
        # other waits and finds the chunks cached

    def _read(self, k0: int, k1: int) -> np.ndarray:
        """Chunks ``k0`` to ``k1 - 1`` in one store read (the store decodes them together)."""
        lo, hi = k0 * self.chunk, min(k1 * self.chunk, self.shape[1])
        try:
            block = np.ascontiguousarray(self.array[:, lo:hi], dtype=np.float32)
        except DECODE_ERRORS as exc:
            raise undecodable(self.where, f"eeg samples {lo}-{hi}", exc) from None
        if not np.isfinite(block).all():
            raise DatasetError(
                f"{self.where}: eeg holds non-finite values in samples {lo}-{hi} (a missing or "
                "damaged chunk?); check the store with `eeg2bold inspect --verify`"
            )
        return block

    def chunks_of(self, start: int, stop: int) -> range:
        return range(start // self.chunk, (max(stop, start + 1) - 1) // self.chunk + 1)

    def needed(self, starts: np.ndarray, n_window: int) -> np.ndarray:
        """Boolean mask of the chunks under the windows at ``starts``."""
        first = np.asarray(starts, dtype=np.int64) // self.chunk
        last = (np.asarray(starts, dtype=np.int64) + max(n_window, 1) - 1) // self.chunk
        edges = np.bincount(first, minlength=self.n_chunks + 1)
        edges -= np.bincount(last + 1, minlength=self.n_chunks + 1)
        return np.cumsum(edges[: self.n_chunks]) > 0

    def ensure(self, starts: np.ndarray, n_window: int) -> np.ndarray:
        """Decode the chunks the windows at ``starts`` need and the cache lacks: one store
        read per contiguous stretch of missing chunks (a block-ordered batch has few).
        Returns the mask of chunks needed."""
        need = self.needed(starts, n_window)
        if not self.cache.missing(self.run, need).size:
            return need
        with self._reading:
            missing = self.cache.missing(self.run, need)
            for stretch in np.split(missing, np.flatnonzero(np.diff(missing) != 1) + 1):
                if stretch.size:
                    k0, k1 = int(stretch[0]), int(stretch[-1]) + 1
                    self.cache.put(self.run, k0, k1 - k0, self._read(k0, k1))
        return need

    def gather(
        self, starts: np.ndarray, n_window: int, out: np.ndarray, rows: Sequence[int] | None = None
    ) -> None:
        """``out[rows[j]] = eeg[:, starts[j] : starts[j] + n_window]`` (``rows``: default
        ``j``): one lookup of the cache per call, then a copy per window from the cached
        stretch that holds it."""
        need = self.ensure(starts, n_window)
        c, n = self.chunk, n_window
        first = np.asarray(starts, dtype=np.int64) // c
        last = (np.asarray(starts, dtype=np.int64) + n - 1) // c
        owner_of, blocks = self.cache.snapshot(self.run, np.flatnonzero(need))
        owner = owner_of.tolist()
        into = range(len(starts)) if rows is None else rows
        spans = zip(into, starts.tolist(), first.tolist(), last.tolist(), strict=True)
        for j, s, k0, k1 in spans:
            o = owner[k0]
            if o >= 0 and o == owner[k1]:  # one stretch holds the window: a view of it
                out[j] = blocks[o][:, s - o * c : s - o * c + n]
            elif min(owner[k0 : k1 + 1]) >= 0:  # across stretches: their pieces
                at = s
                while at < s + n:
                    o = owner[at // c]
                    block = blocks[o]
                    end = min(s + n, o * c + block.shape[1])
                    out[j, :, at - s : end - s] = block[:, at - o * c : end - o * c]
                    at = end
            else:  # dropped meanwhile by a cache smaller than the batch: read it
                out[j] = self._read(k0, k1 + 1)[:, s - k0 * c : s - k0 * c + n]

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, cols = index
        if rows != slice(None) or cols.step not in (None, 1):
            raise IndexError("a ChunkedRun takes [:, start:stop] only")
        start, stop = cols.start or 0, cols.stop if cols.stop is not None else self.shape[1]
        out = np.empty((1, self.shape[0], max(stop - start, 0)), dtype=np.float32)
        self.gather(np.array([start]), stop - start, out)
        return out[0]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, a stretch of chunks [C, L]) over the run, read straight from the
        store (the cache is for batches, not for one pass of statistics)."""
        step = max(1, (16 * 1024 * 1024) // (4 * self.shape[0] * self.chunk))  # about 16 MB
        for k in range(0, self.n_chunks, step):
            yield k * self.chunk, self._read(k, min(k + step, self.n_chunks))


class Prefetcher:
    """Decodes the chunks of the coming batches ``group`` at a time (one block of the
    streaming order, so one store read per run covers it): in a background thread while the
    current batch trains, at most ``ahead`` batches ahead and never more decoded ahead than
    half the cache (what is read ahead must still be there when used; the cache grows to four
    blocks, up to ``MAX_CACHE_MB``, where blocks are large). A trainer that catches
    up reads the whole group itself (:meth:`take`), never its batch's pieces of it."""

    def __init__(
        self,
        runs: dict[int, ChunkedRun],
        n_window: int,
        cache: ChunkCache,
        *,
        ahead: int = 2 * SPAN_BATCHES,
        group: int = SPAN_BATCHES,
    ):
        self.runs, self.n_window, self.cache = runs, n_window, cache
        self.ahead, self.group = ahead, group
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._turn = threading.Condition()
        self._consumed = 0
        self._batches: Sequence[tuple[np.ndarray, np.ndarray]] = ()
        self._groups: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    def _group(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Runs and starts of the group of batches that begins at ``i``, and its bytes."""
        if i not in self._groups:
            part = self._batches[i : i + self.group]
            runs = np.concatenate([r for r, _ in part])
            starts = np.concatenate([s for _, s in part])
            size = sum(
                int(self.runs[r].needed(starts[runs == r], self.n_window).sum())
                * self.runs[r].chunk_bytes
                for r in np.unique(runs).tolist()
            )
            self._groups[i] = (runs, starts, size)
        return self._groups[i]

    def start(
        self, batches: Sequence[tuple[np.ndarray, np.ndarray]], *, group: int = SPAN_BATCHES
    ) -> None:
        """``batches``: (run index, start sample) arrays of the coming batches, in order, read
        ``group`` at a time (1 for batches that are contiguous stretches already)."""
        self.stop()
        self._stop, self._consumed = threading.Event(), 0
        self._batches, self._groups, self.group = batches, {}, max(1, group)
        stop = self._stop
        groups = range(0, len(batches), self.group)
        largest = max((self._group(i)[2] for i in groups), default=0)  # the thread only reads
        # a block read ahead while the one before is in use: the cache holds four blocks
        # (high-density or high-rate EEG has blocks larger than the default cache's quarter)
        grown = min(4 * largest, int(MAX_CACHE_MB * 1e6))
        self.cache.max_bytes = max(self.cache.max_bytes, grown)
        room = self.cache.max_bytes / 2

        def work() -> None:
            ahead: list[tuple[int, int]] = []  # (end batch, bytes) of the groups read ahead
            for i in groups:
                runs, starts, size = self._groups[i]

                def ready(i: int = i, size: int = size) -> bool:
                    if stop.is_set() or i <= self._consumed:
                        return True
                    pending = sum(b for end, b in ahead if end > self._consumed)
                    return i < self._consumed + self.ahead and pending + size <= room

                with self._turn:
                    self._turn.wait_for(ready)
                if stop.is_set():
                    return
                ensure_batch(self.runs, runs, starts, self.n_window)
                ahead.append((min(i + self.group, len(batches)), size))

        self._thread = threading.Thread(target=work, name="eeg2bold-prefetch", daemon=True)
        self._thread.start()

    def take(self, runs: np.ndarray, starts: np.ndarray) -> None:
        """The trainer is about to cut this batch: if it is the next planned one, make sure
        its whole group is decoded (a no-op when the thread was ahead), and let the thread
        read one batch further."""
        i = self._consumed
        if i >= len(self._batches):
            return
        planned_runs, planned_starts = self._batches[i]
        if not (np.array_equal(planned_runs, runs) and np.array_equal(planned_starts, starts)):
            return  # not the plan (a batch asked out of order): the batch reads for itself
        g_runs, g_starts, _ = self._groups[i - i % self.group]
        ensure_batch(self.runs, g_runs, g_starts, self.n_window)
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
    shuffled inside. Consecutive batches then touch the same few store chunks. A shorter last
    span comes last, so every block of ``SPAN_BATCHES`` batches is one span (the prefetcher
    reads a block's chunks in one go)."""
    ordered = torch.as_tensor(np.sort(train))
    span = max(1, SPAN_BATCHES * batch_size)
    spans = list(ordered.split(span))
    full = [s for s in spans if s.numel() == span]
    out = []
    for i in torch.randperm(len(full), generator=generator).tolist():
        out.append(full[i][torch.randperm(span, generator=generator)])
    if len(full) < len(spans):
        rest = spans[-1]
        out.append(rest[torch.randperm(rest.numel(), generator=generator)])
    return torch.cat(out) if out else ordered

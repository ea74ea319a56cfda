"""EEG windows paired with BOLD targets, read from a dataset store.

A sample pairs the EEG window of ``window_s`` seconds that ends at ``t - delay_s`` with the BOLD
value at volume time ``t`` (seq2one, DESIGN.md "Samples"). Only volumes whose whole window lies
inside the recording are valid targets.

Each :class:`WindowReader` keeps an in-memory LRU cache of whole runs (one per worker process:
every worker builds its own reader). A run larger than the cache budget, or any run when
``lazy=True``, is read window by window from the store instead, so stores larger than memory work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from eeg2bold.errors import DatasetError
from eeg2bold.geometry import WindowGeometry
from eeg2bold.storage.schema import RunKey
from eeg2bold.storage.store import Dataset

DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class WindowBatch:
    """N samples of one run: ``eeg`` [N, C, T] float32, ``bold`` [N, R] float32."""

    key: RunKey
    volumes: np.ndarray
    times: np.ndarray
    eeg: np.ndarray
    bold: np.ndarray


@dataclass(frozen=True)
class _RunIndex:
    n_samples: int
    volume_times: np.ndarray
    bold: np.ndarray


class WindowReader:
    """Reads seq2one samples (EEG window → BOLD at one volume) from a dataset."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        window_s: float,
        delay_s: float = 0.0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        lazy: bool = False,
    ):
        sfreq = dataset.info.eeg.sfreq
        self.geometry = WindowGeometry(float(window_s), float(delay_s), sfreq)
        self.dataset = dataset
        self.window_s = float(window_s)
        self.delay_s = float(delay_s)
        self.sfreq = sfreq
        self.n_window = self.geometry.n_window
        self.lazy = lazy
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[RunKey, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._index: dict[RunKey, _RunIndex] = {}

    def _run_index(self, key: RunKey) -> _RunIndex:
        index = self._index.get(key)
        if index is None:
            attrs = self.dataset.run_attrs(key)
            eeg = self.dataset.array(key, "eeg")
            times = np.asarray(self.dataset.array(key, "volume_times")[...], dtype=np.float64)
            bold = np.asarray(self.dataset.array(key, "bold")[...], dtype=np.float32)
            n_samples = int(eeg.shape[1])
            if attrs.get("n_samples", n_samples) != n_samples:
                raise DatasetError(
                    f"{self.dataset.url}: run {key}: EEG length disagrees with attrs"
                )
            index = _RunIndex(n_samples=n_samples, volume_times=times, bold=bold)
            self._index[key] = index
        return index

    def _ends(self, key: RunKey, volumes: np.ndarray) -> np.ndarray:
        return self.geometry.ends(self._run_index(key).volume_times[volumes])

    def valid_volumes(self, key: RunKey) -> np.ndarray:
        """Indices of the volumes whose whole EEG window lies inside the recording."""
        index = self._run_index(key)
        return np.flatnonzero(self.geometry.valid(index.volume_times, index.n_samples))

    def _eeg(self, key: RunKey) -> np.ndarray | None:
        """Whole-run EEG from the cache (loading it), or None when the run is read lazily."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        if self.lazy:
            return None
        arr = self.dataset.array(key, "eeg")
        nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
        if nbytes > self.cache_bytes:
            return None
        while self._cache and self._cached_bytes + nbytes > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        data = np.ascontiguousarray(arr[...], dtype=np.float32)
        self._cache[key] = data
        self._cached_bytes += data.nbytes
        return data

    def read(self, key: RunKey, volumes: ArrayLike) -> WindowBatch:
        """Samples for the given volume indices of one run (all must be valid)."""
        vols = np.atleast_1d(np.asarray(volumes, dtype=np.int64))
        index = self._run_index(key)
        if vols.size and (vols.min() < 0 or vols.max() >= index.volume_times.size):
            raise IndexError(
                f"run {key}: volume index out of range 0..{index.volume_times.size - 1}"
            )
        starts = self._ends(key, vols) - self.n_window
        if vols.size and (starts.min() < 0 or starts.max() + self.n_window > index.n_samples):
            raise IndexError(f"run {key}: some requested volumes have no full EEG window")
        eeg = self._eeg(key)
        n = self.n_window
        if eeg is not None:
            if vols.size == 1:
                s = int(starts[0])
                windows = eeg[None, :, s : s + n].copy()
            else:
                view = np.lib.stride_tricks.sliding_window_view(eeg, n, axis=1)
                windows = np.ascontiguousarray(view[:, starts].transpose(1, 0, 2))
        else:
            lazy = self.dataset.array(key, "eeg")
            windows = np.empty((vols.size, lazy.shape[0], n), dtype=np.float32)
            for i, s in enumerate(starts):
                windows[i] = lazy[:, int(s) : int(s) + n]
        return WindowBatch(
            key=key,
            volumes=vols,
            times=index.volume_times[vols],
            eeg=windows,
            bold=np.ascontiguousarray(index.bold[:, vols].T),
        )

    def iter_batches(
        self,
        key: RunKey,
        *,
        batch_size: int = 64,
        volumes: Sequence[int] | np.ndarray | None = None,
    ) -> Iterator[WindowBatch]:
        """All (or the given) valid samples of a run, in order, ``batch_size`` at a time."""
        vols = self.valid_volumes(key) if volumes is None else np.asarray(volumes)
        for i in range(0, vols.size, batch_size):
            yield self.read(key, vols[i : i + batch_size])

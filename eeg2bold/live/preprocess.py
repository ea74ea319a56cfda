"""The training data's ingest preprocessing, applied causally to a live stream.

Offline, ``ingest`` and ``predict`` filter with MNE's zero-phase FIR filters and resample with
the whole recording at hand. Live, only the past exists, so the same steps run as causal
filters whose state is carried from chunk to chunk:

- notch at the mains frequency and its harmonics (the same frequencies): second-order IIR
  notches (quality factor 30) instead of FIR notches;
- band-pass at the same edges: 4th-order Butterworth sections instead of a zero-phase FIR;
- resampling by the same rational factor: a polyphase FIR low-pass (Kaiser window, 10 zero
  crossings per side, as ``scipy.signal.resample_poly``), whose linear-phase delay is taken
  off the output clock where it is a whole number of output samples (always when
  downsampling), so the output's sample k is the input's instant k / sfreq_out, as offline;
  the EEG is then that many samples late (:attr:`CausalPreprocessor.delay_s`);
- re-reference (average, or named channels among the model's) and microvolts: the same,
  sample by sample.

Filters run at the rate ingest ran them (the output rate when downsampling, else the input
rate). A gap in the stream resets every state (:meth:`CausalPreprocessor.reset`): the filters
start again from rest, as at the stream's start.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal

from eeg2bold.ingest.config import EEGConfig
from eeg2bold.ingest.preprocess import notch_frequencies

NOTCH_Q = 30.0
BANDPASS_ORDER = 4
HALF_TAPS_PER_FACTOR = 10  # resample_poly's default half length, per max(up, down)


class _SosFilter:
    """Second-order sections applied chunk by chunk to [C, n], state per channel."""

    def __init__(self, sos: np.ndarray, n_channels: int):
        self.sos = sos
        self.n_channels = n_channels
        self.reset()

    def reset(self) -> None:
        self.zi = np.zeros((self.sos.shape[0], self.n_channels, 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 0:  # a chunk the resampler kept whole for its next output
            return x
        y, self.zi = signal.sosfilt(self.sos, x, axis=1, zi=self.zi)
        return np.asarray(y)


class _PolyphaseResampler:
    """Rational resampling up/down with a causal FIR, chunk by chunk, exact across chunks."""

    def __init__(self, up: int, down: int, n_channels: int):
        self.up, self.down = up, down
        half = HALF_TAPS_PER_FACTOR * max(up, down)
        taps = signal.firwin(2 * half + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
        self.n_taps = -(-taps.size // up)  # input samples each output needs
        padded = np.zeros(self.n_taps * up)
        padded[: taps.size] = taps
        self.phases = padded.reshape(self.n_taps, up).T  # [up, n_taps]: phase p, tap t
        # the linear-phase delay in output samples, dropped where whole
        delay = half / down
        self.skip = int(delay) if float(delay).is_integer() else 0
        self.delay_out = delay - self.skip
        self.n_channels = n_channels
        self.reset()

    def reset(self) -> None:
        self.history = np.zeros((self.n_channels, 0))
        self.history_start = 0  # input index of history[:, 0]
        self.n_in = 0
        self.next_out = 0  # next output index (before the skip)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.history = np.concatenate([self.history, x], axis=1)
        self.n_in += x.shape[1]
        last = (self.n_in - 1) * self.up // self.down  # outputs whose inputs have all arrived
        ks = np.arange(self.next_out, last + 1)
        out = np.zeros((self.n_channels, 0))
        if ks.size:
            m = ks * self.down
            i0 = m // self.up
            taps = self.phases[m - i0 * self.up]  # [K, T]
            idx = i0[:, None] - np.arange(self.n_taps)[None]  # [K, T] input indices
            have = idx >= 0  # before the stream's start: zeros, as at rest
            local = np.where(have, idx - self.history_start, 0)
            values = self.history[:, local] * have[None]  # [C, K, T]
            out = np.einsum("ckt,kt->ck", values, taps)
            self.next_out = int(ks[-1]) + 1
        # the next output's newest input, and the taps before it
        keep_from = self.next_out * self.down // self.up - self.n_taps + 1
        drop = max(0, keep_from - self.history_start)
        self.history = self.history[:, drop:]
        self.history_start += drop
        first = max(0, self.skip - (self.next_out - out.shape[1]))
        return out[:, first:]


class CausalPreprocessor:
    """Volts [C, n] at ``sfreq_in`` → microvolts [C, m] at the training rate, causally."""

    def __init__(self, eeg: EEGConfig, *, channels: tuple[str, ...], sfreq_in: float):
        self.sfreq_in = float(sfreq_in)
        self.sfreq_out = float(eeg.sfreq) if eeg.sfreq is not None else self.sfreq_in
        n = len(channels)
        ratio = Fraction(self.sfreq_out / self.sfreq_in).limit_denominator(10_000)
        down = self.sfreq_out < self.sfreq_in
        rate = self.sfreq_out if down else self.sfreq_in
        filters: list[Any] = []
        notches = notch_frequencies(eeg.line_freq, sfreq_in=self.sfreq_in, sfreq_out=self.sfreq_out)
        for freq in notches:
            b, a = signal.iirnotch(freq, NOTCH_Q, fs=rate)
            filters.append(_SosFilter(signal.tf2sos(b, a), n))
        band = _band(eeg.l_freq, eeg.h_freq)
        if band is not None:
            kind, edges = band
            sos = signal.butter(BANDPASS_ORDER, edges, btype=kind, fs=rate, output="sos")
            filters.append(_SosFilter(sos, n))
        self.resampler = (
            None if ratio == 1 else _PolyphaseResampler(ratio.numerator, ratio.denominator, n)
        )
        stages = [self.resampler, *filters] if down else [*filters, self.resampler]
        self.stages: list[Any] = [s for s in stages if s is not None]
        self.reference = _reference_matrix(eeg, channels)
        self.steps: list[dict[str, Any]] = [
            {"step": "notch", "freqs": [float(f) for f in notches], "method": "iir",
             "phase": "causal", "q": NOTCH_Q},
            {"step": "bandpass", "l_freq": eeg.l_freq, "h_freq": eeg.h_freq, "method": "iir",
             "order": BANDPASS_ORDER, "phase": "causal"},
            {"step": "resample", "from_hz": self.sfreq_in, "to_hz": self.sfreq_out,
             "method": "polyphase fir", "phase": "causal", "delay_s": self.delay_s},
            {"step": "reference", "kind": eeg.reference},
            {"step": "units", "to": "uV"},
        ]  # fmt: skip

    @property
    def delay_s(self) -> float:
        """How late the output is behind the input's clock, seconds (the resampler's delay
        taken off the clock is the EEG's lateness; a fractional remainder shifts it)."""
        if self.resampler is None:
            return 0.0
        r = self.resampler
        return (r.skip + r.delay_out) / self.sfreq_out

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()

    def __call__(self, volts: np.ndarray) -> np.ndarray:
        x = np.asarray(volts, dtype=np.float64)
        for stage in self.stages:
            x = stage(x)
        if self.reference is not None:
            x = x - self.reference @ x
        return (x * 1e6).astype(np.float32)


def _band(l_freq: float | None, h_freq: float | None) -> tuple[str, Any] | None:
    if l_freq is not None and h_freq is not None:
        return "bandpass", [l_freq, h_freq]
    if l_freq is not None:
        return "highpass", l_freq
    if h_freq is not None:
        return "lowpass", h_freq
    return None


def _reference_matrix(eeg: EEGConfig, channels: tuple[str, ...]) -> np.ndarray | None:
    """[C, C]: each channel's reference as weights over the channels (None: as recorded)."""
    n = len(channels)
    if eeg.reference == "none":
        return None
    if eeg.reference == "average":
        return np.full((n, n), 1.0 / n)
    names = eeg.reference_channels()
    missing = [c for c in names if c not in channels]
    if missing:
        from eeg2bold.predict.models import PredictError

        raise PredictError(
            f"the training data were referenced to {list(names)}, and {missing} are not among "
            "the model's channels the live twin reads"
        )
    row = np.zeros(n)
    row[[channels.index(c) for c in names]] = 1.0 / len(names)
    return np.tile(row, (n, 1))


class LiveInput:
    """A stream's samples as the model's input: picked channels, scaled, preprocessed where
    the training data were, with the LSL timestamp of each output sample and one clock.

    The clock counts input samples from the stream's first, lost ones included; the model-rate
    clock is it times sfreq_out / sfreq_in, so after a gap the twin resumes at the instant the
    stream did (:meth:`gap` says how many model-rate samples to skip)."""

    def __init__(
        self,
        *,
        picks: np.ndarray,
        scale: float,
        sfreq_in: float,
        preprocessor: CausalPreprocessor | None = None,
    ):
        self.picks, self.scale = picks, scale
        self.pre = preprocessor
        self.sfreq_in = sfreq_in
        self.ratio = (preprocessor.sfreq_out if preprocessor else sfreq_in) / sfreq_in
        self.clock_in = 0  # input samples so far, lost ones included
        self.segment_in = 0  # input clock of this segment's first sample
        self.segment_stamp = float("nan")  # its LSL timestamp
        self.emitted = 0  # model-rate samples handed on in this segment

    def __call__(self, data: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stream samples [n, channels] with their timestamps → model input [C, m] (float32,
        the model's units) and the timestamps [m] of the instants they stand for."""
        if self.clock_in == self.segment_in:
            self.segment_stamp = float(stamps[0])
        self.clock_in += len(stamps)
        chunk = np.asarray(data, dtype=np.float64)[:, self.picks].T * self.scale
        if self.pre is None:
            self.emitted += chunk.shape[1]
            return chunk.astype(np.float32), np.asarray(stamps, dtype=np.float64)
        out = self.pre(chunk)
        index = self.emitted + np.arange(out.shape[1])  # model-rate samples of this segment
        self.emitted += out.shape[1]
        return out, self.segment_stamp + index / self.pre.sfreq_out

    def gap(self, lost_in: int) -> int:
        """``lost_in`` input samples were lost: a new segment starts after them; the
        model-rate samples between the last handed on and the new segment's first."""
        self.clock_in += lost_in
        before = round(self.segment_in * self.ratio) + self.emitted
        self.segment_in, self.emitted = self.clock_in, 0
        if self.pre is not None:
            self.pre.reset()
        return round(self.clock_in * self.ratio) - before

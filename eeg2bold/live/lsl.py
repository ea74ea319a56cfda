"""The live twin on the Lab Streaming Layer (through MNE-LSL): find the EEG stream, check it
against the model card as ``predict`` checks a file (channels, rate, units; the training
preprocessing, applied causally by :mod:`eeg2bold.live.preprocess`), and send every update out
as an LSL stream and to a file.

Every sample the inlet delivers is used (``pull_chunk``, not a ring buffer's latest window), so
the stream's clock is a sample count and an update is the offline prediction at that instant.
A stall (no sample for ``stall_s``) is told in one line; when the stream comes back (liblsl
reconnects an inlet to a source of the same id by itself) the samples it lost, counted from
the LSL timestamps, become a gap (:meth:`~eeg2bold.live.twin.LiveTwin.gap`: NaN rows, never a
silent hole); after ``timeout_s`` without a sample the command ends non-zero. A source of that
name and id that comes back with another rate, channel set or units is refused in one line
(:func:`check_replacement`).
"""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.live.options import StreamOptions
from eeg2bold.live.output import LiveWriter
from eeg2bold.live.preprocess import CausalPreprocessor, LiveInput
from eeg2bold.live.twin import LiveTwin, Update
from eeg2bold.predict.models import ModelSet
from eeg2bold.predict.recording import UNIT_FROM_VOLTS, case_matches, recorded_ingest_config

# LSL channel unit labels (XDF's meta-data convention and MNE-LSL's) → volts; a stream that
# names none is taken in volts, as MNE-LSL's player sends it
VOLTS_PER_UNIT = {
    "v": 1.0,
    "volt": 1.0,
    "volts": 1.0,
    "mv": 1e-3,
    "millivolt": 1e-3,
    "millivolts": 1e-3,
    "uv": 1e-6,
    "µv": 1e-6,
    "microvolt": 1e-6,
    "microvolts": 1e-6,
}


def volts_per_unit(label: str | None) -> float | None:
    """Volts per unit of an LSL channel's unit label: a name (``microvolts``, ``uV``), a power
    of ten of volts (MNE-LSL writes ``-6`` for microvolts, ``0`` for volts), none (volts); None
    when unknown."""
    text = (label or "volts").strip().lower()
    if text.lstrip("+-").isdigit():
        return float(10.0 ** int(text))
    return VOLTS_PER_UNIT.get(text)


class StreamError(Eeg2BoldError):
    """A live stream that cannot be used (not found, wrong channels, rate or units)."""


@dataclass(frozen=True)
class SourceLayout:
    """What a reconnected source must keep: its rate, channel names and units."""

    sfreq: float
    channels: tuple[str, ...]
    units: tuple[str, ...]

    @classmethod
    def of(cls, sinfo: Any) -> SourceLayout:
        names = tuple(sinfo.get_channel_names() or ())
        units = tuple(str(u) for u in (sinfo.get_channel_units() or [None] * len(names)))
        return cls(sfreq=float(sinfo.sfreq), channels=names, units=units)

    def change_from(self, before: SourceLayout) -> str | None:
        """How this layout differs from ``before`` (one phrase), or None."""
        if not math.isclose(self.sfreq, before.sfreq):
            return f"at {self.sfreq:g} Hz (was {before.sfreq:g} Hz)"
        if self.channels != before.channels:
            gone = [c for c in before.channels if c not in self.channels]
            new = [c for c in self.channels if c not in before.channels]
            what = (f"without {gone}" if gone else "") + (" " if gone and new else "")
            what += f"with new {new}" if new else ""
            return f"with other channels ({what or 'reordered'})"
        if self.units != before.units:
            return "with other channel units"
        return None


@dataclass
class SourcePlan:
    """How the stream's samples become the model's input (:class:`LiveInput`) and what was
    noted on the way."""

    name: str
    source_id: str
    uid: str
    layout: SourceLayout
    input: LiveInput
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_source(name: str | None, *, timeout_s: float) -> Any:
    """The LSL stream named ``name`` (else the first of type EEG), or a one-line error."""
    from mne_lsl.lsl import resolve_streams

    kw = {"name": name} if name else {"stype": "EEG"}
    found = resolve_streams(timeout=timeout_s, **kw)
    if not found and not name:  # LSL types are free text: MNE-LSL's player says "eeg"
        found = resolve_streams(timeout=timeout_s, stype="eeg")
    if not found:
        what = f"named {name!r}" if name else "of type EEG"
        raise StreamError(f"no LSL stream {what} found within {timeout_s:g} s")
    return found[0]


def plan_source(sinfo: Any, models: ModelSet, *, preprocess: bool = True) -> SourcePlan:
    """Check a stream against the model card: its channels by name (case ignored where
    unambiguous), its rate, its units and the training preprocessing; one line if not."""
    where = f"stream {sinfo.name!r}"
    names = list(sinfo.get_channel_names() or [])
    if not names or len(set(names)) != len(names):
        raise StreamError(f"{where} does not name its {sinfo.n_channels} channels uniquely")
    renames = case_matches(have=names, needed=models.channels)
    names = [renames.get(n, n) for n in names]
    missing = [c for c in models.channels if c not in names]
    if missing:
        raise StreamError(f"{where} lacks channels {missing} the model needs")
    sfreq = float(sinfo.sfreq)
    pre = _preprocessor(models, sfreq=sfreq, where=where) if preprocess else None
    rate = pre.sfreq_out if pre is not None else sfreq
    if not math.isclose(rate, models.sfreq):
        why = (
            "the training data recorded no resampling step"
            if pre is None and not models.preprocessing
            else "preprocessing is off"
            if pre is None
            else f"the recorded resampling goes to {rate:g} Hz"
        )
        raise StreamError(
            f"{where} sends {sfreq:g} Hz, the model was trained at {models.sfreq:g} Hz and {why}"
        )
    picks = np.asarray([names.index(c) for c in models.channels])
    units = sinfo.get_channel_units() or [None] * len(names)
    volts = set()
    for i in picks:
        factor = volts_per_unit(units[i])
        if factor is None:
            raise StreamError(f"{where}: channel {names[i]!r} is in unknown units {units[i]!r}")
        volts.add(factor)
    if len(volts) != 1:
        raise StreamError(f"{where}: the model's channels come in different units")
    if models.units not in UNIT_FROM_VOLTS:
        raise StreamError(f"{models.source}: trained on EEG in {models.units!r}")
    notes = [f"matched {len(renames)} channel name(s) ignoring case"] if renames else []
    extra = len(names) - len(picks)
    if extra:
        notes.append(f"{extra} channel(s) of the stream unused by the model")
    if pre is not None:
        notes.append(
            f"the training preprocessing, causally (IIR notch and band-pass, polyphase "
            f"resampling {sfreq:g} -> {pre.sfreq_out:g} Hz): the EEG is "
            f"{1e3 * pre.delay_s:.0f} ms late"
        )
    elif models.preprocessing:
        notes.append("preprocessing off: the stream must be preprocessed like the training data")
    # to volts, then (preprocessing: microvolts) or straight to the model's units
    scale = volts.pop() * (1.0 if pre is not None else UNIT_FROM_VOLTS[models.units])
    return SourcePlan(
        name=sinfo.name,
        source_id=sinfo.source_id,
        uid=sinfo.uid,
        layout=SourceLayout.of(sinfo),
        input=LiveInput(picks=picks, scale=scale, sfreq_in=sfreq, preprocessor=pre),
        steps=pre.steps if pre is not None else [],
        notes=notes,
    )


def check_replacement(plan: SourcePlan, *, timeout_s: float = 0.5) -> None:
    """Refuse, in one line, a source of the same name and id that came back (a new outlet,
    another uid) with another rate, channel set or units: liblsl reconnects an inlet to it when
    the channel count matches and would feed the model the wrong samples, and never does when
    it differs (the stream would only look silent)."""
    from mne_lsl.lsl import StreamInlet, resolve_streams

    kw = {"source_id": plan.source_id} if plan.source_id else {}
    for sinfo in resolve_streams(timeout=timeout_s, name=plan.name, **kw):
        if sinfo.uid == plan.uid:
            continue
        inlet = StreamInlet(sinfo)
        try:
            inlet.open_stream(timeout=timeout_s)
            layout = SourceLayout.of(inlet.get_sinfo(timeout=timeout_s))
        except Exception:  # gone again before it described itself: the next check sees it
            continue
        finally:
            inlet.close_stream()
        change = layout.change_from(plan.layout)
        if change is not None:
            raise StreamError(
                f"stream {plan.name!r} came back {change}: refused (start eeg2bold stream again "
                "to check it against the model)"
            )


def _preprocessor(models: ModelSet, *, sfreq: float, where: str) -> CausalPreprocessor | None:
    """The training data's ingest preprocessing, causally (None where none was recorded)."""
    record = models.preprocessing
    if not record:
        return None
    config = recorded_ingest_config(
        models, instead="preprocess the stream the same way and pass --no-preprocess"
    )
    if models.units != "uV":
        raise StreamError(f"{models.source}: ingested training data in {models.units!r}")
    for edge in (config.eeg.l_freq, config.eeg.h_freq):
        if edge is not None and edge >= sfreq / 2:
            raise StreamError(
                f"{where} sends {sfreq:g} Hz: the recorded {edge:g} Hz filter edge is not "
                "below its Nyquist frequency"
            )
    return CausalPreprocessor(config.eeg, channels=models.channels, sfreq_in=sfreq)


@contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the loop as Ctrl-C does, so the output file is closed whole."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _outlet(name: str, twin: LiveTwin, every_s: float) -> Any:
    from mne_lsl.lsl import StreamInfo, StreamOutlet

    info = StreamInfo(
        name, "BOLD", len(twin.outputs), 1.0 / every_s, "float32", f"eeg2bold-{uuid.uuid4().hex}"
    )
    info.set_channel_names(list(twin.outputs))
    return StreamOutlet(info)


def run_stream(
    models: ModelSet,
    options: StreamOptions | None = None,
    *,
    out: str | None = None,
    echo: Callable[[str], None] | None = None,
    timing: Callable[[Update, float, float], None] | None = None,
) -> int:
    """Predict BOLD from the live stream until it ends (``duration_s`` of stream time, Ctrl-C,
    SIGTERM: 0) or stays silent for ``timeout_s`` (1); ``out`` also writes the updates to a
    file. ``timing`` (benchmarks) is called after each update is sent with the LSL clock when
    its samples were pulled and when it was sent."""
    options = options or StreamOptions()
    source, preprocess, duration_s = options.source, options.preprocess, options.duration_s
    every_s, warmup_s = options.every_s, options.warmup_s
    timeout_s, stall_s = options.timeout_s, options.stall_s
    out_lsl = options.out_lsl if options.send_lsl else None
    from mne_lsl.lsl import StreamInlet, local_clock

    say = echo or (lambda _msg: None)
    twin = LiveTwin(models, every_s=every_s, warmup_s=warmup_s)
    inlet = StreamInlet(
        find_source(source, timeout_s=timeout_s), max_buffered=int(max(60, 4 * timeout_s))
    )
    try:  # the full description (channel names, units) comes with the open stream
        inlet.open_stream(timeout=timeout_s)
        plan = plan_source(inlet.get_sinfo(timeout=timeout_s), models, preprocess=preprocess)
    except TimeoutError:
        inlet.close_stream()
        raise StreamError(
            f"the LSL stream {inlet.name!r} did not open and describe itself within "
            f"{timeout_s:g} s (gone, or busy)"
        ) from None
    except BaseException:
        inlet.close_stream()
        raise
    for note in plan.notes:
        say(f"stream {plan.name!r}: {note}")
    _arm_reset_flag(inlet, timeout_s)
    outlet = _outlet(out_lsl, twin, every_s) if out_lsl else None
    writer = LiveWriter(out, twin.outputs, meta=_meta(models, plan, twin)) if out else None
    say(
        f"streaming {models.description} from {plan.name!r} "
        f"({len(plan.input.picks)} channels at {plan.input.sfreq_in:g} Hz): an update every "
        f"{every_s:g} s"
        + (f" after a {warmup_s:g} s warm-up" if twin.aligns else "")
        + (f" to LSL {out_lsl!r}" if out_lsl else "")
        + (f" and {out}" if out else "")
    )
    sfreq = plan.input.sfreq_in
    period = 1.0 / sfreq
    last_stamp: float | None = None
    last_data = last_check = time.monotonic()
    stalled = False
    code = 0

    pulled = 0.0

    def emit(updates: list[Update]) -> None:
        for u in updates:
            if writer is not None:
                writer.write(u)
            if outlet is not None:
                stamp = u.lsl_time if math.isfinite(u.lsl_time) else local_clock()
                outlet.push_sample(u.values.astype(np.float32), timestamp=stamp)
            if timing is not None:
                timing(u, pulled, local_clock())

    try:
        with _terminated_as_interrupt():
            while duration_s is None or twin.clock < duration_s * models.sfreq:
                data, stamps = inlet.pull_chunk(timeout=0.05, max_samples=4096)
                now = time.monotonic()
                if len(stamps) == 0:
                    silent = now - last_data
                    if not stalled and silent > stall_s:
                        stalled = True
                        say(f"stream {plan.name!r} stalled: no sample for {silent:.1f} s")
                    if stalled and now - last_check > stall_s:
                        check_replacement(plan)
                        last_check = time.monotonic()
                    if silent > timeout_s:
                        emit(twin.gap(plan.input.gap(int(round(silent * sfreq)))))
                        say(f"stream {plan.name!r} silent for {timeout_s:g} s: giving up")
                        code = 1
                        break
                    continue
                reconnected = inlet.was_clock_reset  # liblsl moved the inlet to a new outlet
                gap = last_stamp is not None and stamps[0] - last_stamp > max(0.5, 5 * period)
                if reconnected or gap:
                    check_replacement(plan)  # once, before its samples reach the model
                if reconnected:
                    _arm_reset_flag(inlet, timeout_s)
                if gap:
                    assert last_stamp is not None
                    lost = int(round((stamps[0] - last_stamp) * sfreq)) - 1
                    say(
                        f"stream {plan.name!r} back after {stamps[0] - last_stamp:.1f} s: "
                        f"{lost} samples lost, marked as missing updates"
                    )
                    emit(twin.gap(plan.input.gap(lost)))
                stalled, last_data, last_stamp = False, now, float(stamps[-1])
                pulled = local_clock()
                emit(twin.push(*plan.input(data, np.asarray(stamps))))
    except KeyboardInterrupt:
        say("stopped")
    finally:
        inlet.close_stream()
        if writer is not None:
            writer.close()
            say(f"wrote {writer.rows} update(s) to {out}")
    return code


def _arm_reset_flag(inlet: Any, timeout_s: float) -> None:
    """liblsl raises the inlet's ``was_clock_reset`` on a reconnection only once a clock offset
    was measured: measure one."""
    with suppress(Exception):  # a source that answers no time request: the stall checks remain
        inlet.time_correction(timeout=min(timeout_s, 2.0))


def _meta(models: ModelSet, plan: SourcePlan, twin: LiveTwin) -> dict[str, Any]:
    """What the output file's sidecar records (the causal differences said)."""
    return {
        "model": models.description,
        "source": models.source,
        "members": [m.describe() for m in models.members],
        "stream": {"name": plan.name, "source_id": plan.source_id, "sfreq": plan.input.sfreq_in},
        "preprocessing": plan.steps or "none (as the training data: none recorded, or off)",
        "every_s": twin.every / twin.sfreq,
        "window_s": models.sample.window_s,
        "delay_s": models.sample.delay_s,
        "time_s": "the stream's clock (its first sample received = 0 s) plus delay_s",
        "lsl_time": "LSL timestamp of the last EEG sample of the update's window (NaN: lost)",
        "alignment": "euclidean, from the stream's warm-up" if twin.aligns else None,
        "bold_units": f"as the training dataset's BOLD ({models.dataset_name or 'unnamed'})",
    }

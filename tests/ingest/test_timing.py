"""Volume timing: scanner markers or start + TR, explicit mismatch rules, the EEG clock."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from eeg2bold.ingest import EEGSource, IngestError, TimingConfig
from eeg2bold.ingest.readers import read_eeg
from eeg2bold.ingest.timing import crop_samples, find_markers, marker_matches, volume_timing

EEG, BOLD = Path("rec.vhdr"), Path("bold.nii.gz")


def _timing(n_volumes, markers=None, *, duration=500.0, layout_start=None, **cfg):
    return volume_timing(
        n_volumes=n_volumes,
        tr=2.0,
        config=TimingConfig(**cfg),
        eeg_path=EEG,
        bold_path=BOLD,
        eeg_duration_s=duration,
        markers=None if markers is None else np.asarray(markers, float),
        start_s=layout_start,
    )


def test_markers_are_found_in_brainvision_and_eeglab(tmp_path, make):
    onsets = make.onsets(10, first=3.0)
    vhdr = make.brainvision(tmp_path, "bv", make.eeg(seconds=30), markers=onsets)
    raw = read_eeg(EEGSource(path=vhdr, format="brainvision"))
    np.testing.assert_allclose(find_markers(raw, names=("R128",)), onsets)
    assert len(find_markers(raw, names=("R149",))) == 0
    eeglab = make.eeglab(tmp_path / "e.set", make.eeg(seconds=30), markers=onsets, marker="mri")
    raw = read_eeg(EEGSource(path=eeglab, format="eeglab"))
    np.testing.assert_allclose(find_markers(raw, names=("mri",)), onsets, atol=1 / 250)


def test_marker_times_are_relative_to_the_first_sample(tmp_path, make):
    """A FIF cropped before saving starts at first_samp > 0: onsets must still count from 0."""
    data = make.eeg(seconds=60)
    raw = mne.io.RawArray(data, mne.create_info(12, 250.0, "eeg"))
    raw.set_annotations(mne.Annotations([10.0, 12.0, 14.0], [0, 0, 0], ["R128"] * 3))
    raw.crop(4.0, None).save(tmp_path / "x_raw.fif")
    back = read_eeg(EEGSource(path=tmp_path / "x_raw.fif", format="fif"))
    assert back.first_samp == 1000
    np.testing.assert_allclose(find_markers(back, names=("R128",)), [6.0, 8.0, 10.0])


def test_marker_name_matching():
    assert marker_matches("Response/R128", ["R128"])
    assert marker_matches("R128", ["R128"])
    assert marker_matches(" mri ", ["mri"])
    assert not marker_matches("Response/R1280", ["R128"])
    assert not marker_matches("Stimulus/S  1", ["R128", "mri"])


def test_equal_counts_give_marker_times():
    onsets = 5 + 2.0 * np.arange(20)
    t = _timing(20, onsets)
    np.testing.assert_array_equal(t.times, onsets)
    assert (t.start, t.stop) == (0, 20)
    assert t.notes == ()


@pytest.mark.parametrize(("n_volumes", "word"), [(18, "fewer"), (22, "more")])
def test_count_mismatch_is_an_error_by_default(n_volumes, word):
    onsets = 5 + 2.0 * np.arange(20)
    with pytest.raises(IngestError) as err:
        _timing(n_volumes, onsets)
    msg = str(err.value)
    assert msg.startswith(f"{BOLD}: {n_volumes} volumes ({word} than the 20 'R128' markers")
    assert "--marker-mismatch first|last" in msg


def test_mismatch_rules_first_and_last_are_explicit_and_logged():
    onsets = 5 + 2.0 * np.arange(20)
    first = _timing(18, onsets, mismatch="first")
    np.testing.assert_array_equal(first.times, onsets[:18])
    assert (first.start, first.stop) == (0, 18)
    assert "dropped 2 marker(s) at the end" in first.notes[0]
    last = _timing(18, onsets, mismatch="last")
    np.testing.assert_array_equal(last.times, onsets[2:])
    assert last.record["dropped_markers"] == 2
    more_volumes = _timing(23, onsets, mismatch="last")
    assert (more_volumes.start, more_volumes.stop) == (3, 23)  # BOLD volumes 3..22 kept
    assert "dropped 3 volume(s) at the start" in more_volumes.notes[0]


def test_wrong_marker_spacing_or_missing_markers_are_refused():
    with pytest.raises(IngestError, match=r"0\.07 s apart.*one marker per slice"):
        _timing(40, 5 + 0.07 * np.arange(40))
    with pytest.raises(IngestError, match=r"rec\.vhdr: no 'R128' volume markers"):
        _timing(10, [])
    with pytest.raises(IngestError, match="two 'R128' markers at the same time"):
        _timing(3, [4.0, 6.0, 6.0])


def test_start_plus_tr_and_the_end_of_the_eeg():
    t = _timing(10, source="start", layout_start=1.5)  # e.g. NATVIEW's Tstart
    np.testing.assert_allclose(t.times, 1.5 + 2.0 * np.arange(10))
    t = _timing(10, source="start", start_s=3.0, layout_start=99.0)  # the config's start wins
    assert t.times[0] == 3.0
    with pytest.raises(IngestError, match="no onset for the first volume"):
        _timing(10, source="start")
    with pytest.raises(IngestError, match=r"EEG ends at 30.000 s but 4 volume\(s\) of bold"):
        _timing(20, source="start", start_s=0.0, duration=30.0)
    cut = _timing(20, source="start", start_s=0.0, duration=30.0, mismatch="first")
    assert (cut.start, cut.stop) == (0, 16)  # the volume at 30 s is inside
    assert "rule 'first' dropped them" in cut.notes[0]
    with pytest.raises(IngestError, match="fall after it"):
        _timing(20, 5 + 2.0 * np.arange(20), duration=30.0)


def test_crop_window_and_shift():
    t = _timing(10, 100 + 2.0 * np.arange(10))
    assert crop_samples(t, tr=2.0, margin_s=None, sfreq=100, n_samples=50_000) == (0, 50_000)
    start, stop = crop_samples(t, tr=2.0, margin_s=20.0, sfreq=100, n_samples=50_000)
    assert start == 8000
    assert stop == int(np.ceil((118 + 2 + 20) * 100)) + 1
    shifted = t.shifted(start / 100)
    np.testing.assert_allclose(shifted.times, 20 + 2.0 * np.arange(10))
    assert shifted.record["crop_offset_s"] == 80.0

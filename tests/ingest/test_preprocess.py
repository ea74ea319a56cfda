"""Channel rules and EEG preprocessing: typing, selection, notch, band-pass, resampling,
bad channels, re-referencing, units — on synthetic and real recordings."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from scipy.signal import welch

from eeg2bold.ingest import ChannelConfig, EEGConfig, EEGSource, IngestError
from eeg2bold.ingest.channels import classify, plan_channels
from eeg2bold.ingest.preprocess import notch_frequencies, preprocess_eeg
from eeg2bold.ingest.readers import read_eeg

AUX = ("EOG1", "HEOG", "ECG", "EKG2", "EMG1", "CWL1", "CW3", "Trigger")


def _raw(names, *, sfreq=250.0, seconds=20.0, types=None, seed=0):
    rng = np.random.default_rng(seed)
    info = mne.create_info(list(names), sfreq, types or "eeg")
    return mne.io.RawArray(rng.normal(size=(len(names), int(sfreq * seconds))) * 1e-5, info)


def _run(raw, path, *, eeg=None, channels=None, group_size=16, **channel_kw):
    channel_config = ChannelConfig(**channel_kw)
    eeg = eeg or EEGConfig()
    plan = plan_channels(raw, config=channel_config, path=path, reference=eeg.reference_channels())
    return plan, preprocess_eeg(
        raw,
        plan=plan,
        channels=channels or plan.keep,
        eeg=eeg,
        channel_config=channel_config,
        path=path,
        group_size=group_size,
    )


def test_channel_types_by_file_and_by_name_rule(tmp_path):
    names = ("Fz", "Cz", *AUX)
    types = ["eeg"] * 9 + ["stim"]
    raw = _raw(names, types=types)
    kinds = classify(raw, patterns=ChannelConfig().type_patterns)
    assert kinds == {
        "Fz": "eeg",
        "Cz": "eeg",
        "EOG1": "eog",
        "HEOG": "eog",
        "ECG": "ecg",
        "EKG2": "ecg",
        "EMG1": "emg",
        "CWL1": "cwl",
        "CW3": "cwl",
        "Trigger": "stim",
    }
    plan = plan_channels(raw, config=ChannelConfig(), path=tmp_path / "x.vhdr")
    assert plan.keep == ("Fz", "Cz")
    assert plan.dropped["CWL1"] == "type cwl"
    plan = plan_channels(raw, config=ChannelConfig(keep_types=("eog", "cwl")), path=tmp_path)
    assert plan.keep == ("Fz", "Cz", "EOG1", "HEOG", "CWL1", "CW3")
    plan = plan_channels(raw, config=ChannelConfig(include=("Cz", "ECG", "Fz")), path=tmp_path)
    assert plan.keep == ("Cz", "ECG", "Fz")  # explicit list: kept in the order given


def test_unknown_channel_names_are_refused_with_a_hint(tmp_path):
    raw = _raw(("Fp1", "Fz", "Cz", "Pz", "O1"))
    path = tmp_path / "rec.vhdr"
    with pytest.raises(IngestError) as err:
        plan_channels(raw, config=ChannelConfig(bad_channels=("O2x", "Pz")), path=path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: unknown channel(s) in bad_channels: 'O2x'")
    assert "'Pz'" not in msg.split("; the recording has")[0]  # only the unknown one is named
    assert "\n" not in msg
    with pytest.raises(IngestError, match=r"unknown channel.*in include: 'Oz'"):
        plan_channels(raw, config=ChannelConfig(include=("Fz", "Oz")), path=path)
    with pytest.raises(IngestError, match="in reference: 'TP9'"):
        plan_channels(raw, config=ChannelConfig(), path=path, reference=("TP9",))
    plan = plan_channels(raw, config=ChannelConfig(bad_channels=("Pz",), bads="drop"), path=path)
    assert "Pz" not in plan.keep
    assert plan.dropped["Pz"] == "bad"


def test_notch_bandpass_resample_reference_on_synthetic_eeg(tmp_path, make):
    names = ("Fp1", "Fz", "Cz", "Pz", "O1", "O2", "EOG1")
    data = make.eeg(names, seconds=40, sfreq=1000.0, line_hz=50.0)
    raw = mne.io.RawArray(data, mne.create_info(list(names), 1000.0, "eeg"))
    eeg = EEGConfig(sfreq=250, l_freq=1.0, h_freq=100.0, line_freq=50)
    _, out = _run(raw, tmp_path / "syn.fif", eeg=eeg, keep_types=("eog",))
    assert out.sfreq == 250
    assert out.data.dtype == np.float32
    assert out.data.shape == (7, 40 * 250)
    assert out.channels == names
    f, p_out = welch(out.data, fs=250, nperseg=1000)
    f_in, p_in = welch(data * 1e6, fs=1000, nperseg=4000)
    at50 = np.argmin(np.abs(f - 50))
    in50 = np.argmin(np.abs(f_in - 50))
    assert p_out[1, at50] < 1e-3 * p_in[1, in50]  # mains notched (>30 dB)
    alpha = np.argmin(np.abs(f - 10))
    o1 = names.index("O1")
    assert p_out[o1, alpha] > 20 * np.median(p_out[o1])  # alpha kept
    eeg_rows = [i for i, n in enumerate(names) if n != "EOG1"]
    mean = out.data[eeg_rows].mean(axis=0)
    assert np.abs(mean).max() < 1e-4 * out.data[eeg_rows].std()  # average reference
    assert np.abs(out.data[names.index("EOG1")].mean()) < 1.0  # kept, and high-passed too
    steps = [s["step"] for s in out.steps]
    # downsampling: resample first, then filter at the (4x lower) output rate
    assert steps == ["pick", "resample", "notch", "bandpass", "montage", "reference", "units"]
    assert out.steps[2]["freqs"] == [50.0, 100.0]
    assert out.steps[2]["at_hz"] == 250


def test_channel_groups_do_not_change_the_result(tmp_path, make):
    names = ("Fp1", "Fz", "Cz", "Pz", "O1", "O2", "C3", "C4")
    raw = mne.io.RawArray(make.eeg(names, seconds=20), mne.create_info(list(names), 250.0, "eeg"))
    eeg = EEGConfig(sfreq=100)
    _, whole = _run(raw, tmp_path / "a", eeg=eeg, group_size=100)
    _, grouped = _run(raw, tmp_path / "a", eeg=eeg, group_size=3)
    np.testing.assert_array_equal(whole.data, grouped.data)


def test_bad_channels_flag_interpolate_drop(tmp_path, make):
    names = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz", "Pz")
    data = make.eeg(names, seconds=20)
    data[names.index("P4")] = 1e-3  # a dead, flat-offset electrode
    raw = mne.io.RawArray(data, mne.create_info(list(names), 250.0, "eeg"))
    eeg = EEGConfig(sfreq=None, l_freq=1.0, line_freq=None)
    _, flagged = _run(raw, tmp_path / "r", eeg=eeg, bad_channels=("P4",), bads="flag")
    assert flagged.bad_channels == ["P4"]
    p4 = names.index("P4")
    good = [i for i in range(len(names)) if i != p4]
    mean_good = flagged.data[good].mean(axis=0)
    assert np.abs(mean_good).max() < 1e-3  # the reference ignores the bad channel
    _, fixed = _run(raw, tmp_path / "r", eeg=eeg, bad_channels=("P4",), bads="interpolate")
    assert fixed.bad_channels == ["P4"]
    neighbours = fixed.data[[names.index("P3"), names.index("O2"), names.index("Pz")]]
    assert np.corrcoef(fixed.data[p4], neighbours.mean(axis=0))[0, 1] > 0.5
    assert any(s["step"] == "bads" and s["mode"] == "interpolate" for s in fixed.steps)
    _, dropped = _run(raw, tmp_path / "r", eeg=eeg, bad_channels=("P4",), bads="drop")
    assert "P4" not in dropped.channels
    assert dropped.bad_channels == []


def test_interpolation_without_positions_is_refused(tmp_path, make):
    names = ("E1", "E2", "E3", "E4")
    raw = mne.io.RawArray(make.eeg(names, seconds=12), mne.create_info(list(names), 250.0, "eeg"))
    with pytest.raises(IngestError, match=r"cannot interpolate bad channel\(s\) \['E2'\]"):
        _run(raw, tmp_path / "rec.set", eeg=EEGConfig(sfreq=None), bad_channels=("E2",))


def test_notch_frequencies_stop_below_nyquist():
    assert notch_frequencies(50, sfreq_in=1000, sfreq_out=250) == [50, 100]
    assert notch_frequencies(60, sfreq_in=1000, sfreq_out=1000) == [60 * k for k in range(1, 9)]
    assert notch_frequencies(None, sfreq_in=1000, sfreq_out=250) == []


def test_real_edf_keeps_its_alpha_and_gets_the_requested_rate(real_data):
    path = real_data / "eeg" / "eyes-closed-1.edf"
    raw = read_eeg(EEGSource(path=path, format="edf"))
    _, out = _run(raw, path, eeg=EEGConfig(sfreq=250))
    assert out.sfreq == 250
    assert out.data.shape == (31, 50 * 250)
    f, p = welch(out.data, fs=250, nperseg=1000)
    occipital = [out.channels.index(c) for c in ("O1", "Oz", "O2")]
    spectrum = p[occipital].mean(axis=0)
    band = (f >= 4) & (f <= 14)
    peak = f[band][np.argmax(spectrum[band])]
    assert 7.0 <= peak <= 10.0, peak  # eyes-closed alpha, ~8 Hz in this recording
    alpha = spectrum[(f >= 7) & (f <= 10)].mean()
    beta = spectrum[(f >= 15) & (f <= 25)].mean()
    assert alpha > 5 * beta
    assert np.abs(out.data.mean(axis=0)).max() < 1e-4 * out.data.std()  # average reference
    assert 2 < np.median(out.data.std(axis=1)) < 200  # microvolts, not volts


def test_filtering_after_downsampling_matches_filtering_before(make):
    """The cheap order (resample, then filter at the output rate) gives the textbook result."""
    from eeg2bold.ingest.preprocess import filter_operations

    x = make.eeg(("O1", "Cz"), seconds=60, sfreq=1000.0)
    eeg = EEGConfig(sfreq=250, l_freq=0.5, h_freq=40.0, line_freq=50)
    ops = filter_operations(eeg, sfreq_in=1000, sfreq_out=250)
    assert [op.record["step"] for op in ops] == ["resample", "notch", "bandpass"]
    fast = x.copy()
    for op in ops:
        fast = op.apply(fast)
    slow = mne.filter.notch_filter(x.copy(), 1000, [50.0, 100.0])
    slow = mne.filter.filter_data(slow, 1000, 0.5, 40.0)
    slow = mne.filter.resample(slow, down=4, npad="auto")
    middle = slice(250 * 10, 250 * 50)  # away from the edges
    error = np.std(fast[:, middle] - slow[:, middle]) / np.std(slow[:, middle])
    assert error < 0.005, error
    up = filter_operations(eeg.model_copy(update={"sfreq": 250}), sfreq_in=125, sfreq_out=250)
    assert [op.record["step"] for op in up][-1] == "resample"  # upsampling: filters first

"""The simulator: determinism, the store contract, and the physics it claims (checked on data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import signal

import eeg2bold
from eeg2bold.simulate import (
    SimulationConfig,
    channel_names,
    dataset_info,
    envelope_names,
    roi_names,
    simulate_run,
    simulate_runs,
    subject_parameters,
)
from eeg2bold.storage.schema import validate_run

SMALL = {"minutes": 2.0, "channels": 19, "rois": 4, "n_sources": 4}


def _arrays(run) -> dict[str, np.ndarray]:
    out = {"eeg": run.eeg, "bold": run.bold, "volume_times": run.volume_times}
    out.update({f"truth/{k}": v for k, v in run.truth.arrays.items()})
    return out


def _assert_runs_identical(a, b) -> None:
    assert (a.subject, a.run) == (b.subject, b.run)
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        assert arrays_a[name].dtype == arrays_b[name].dtype, name
        assert np.array_equal(arrays_a[name], arrays_b[name]), name
    assert a.truth.attrs == b.truth.attrs


def _psd(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    return signal.welch(x.astype(np.float64), fs=sfreq, nperseg=int(4 * sfreq), axis=-1)


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_bit_identical_runs():
    config = SimulationConfig(subjects=2, runs=2, seed=7, **SMALL)
    first, second = list(simulate_runs(config=config)), list(simulate_runs(config=config))
    assert [r.key for r in first] == [
        ("sub-01", "run-1"),
        ("sub-01", "run-2"),
        ("sub-02", "run-1"),
        ("sub-02", "run-2"),
    ]
    for a, b in zip(first, second, strict=True):
        _assert_runs_identical(a, b)


def test_other_seed_gives_other_data():
    a = simulate_run(
        config=SimulationConfig(subjects=1, seed=0, **SMALL), subject_index=0, run_index=0
    )
    b = simulate_run(
        config=SimulationConfig(subjects=1, seed=1, **SMALL), subject_index=0, run_index=0
    )
    for name, arr in _arrays(a).items():
        if name in ("volume_times",):
            continue
        other = _arrays(b)[name]
        assert arr.shape != other.shape or not np.array_equal(arr, other), name


def test_subject_does_not_depend_on_number_of_subjects():
    two = list(simulate_runs(config=SimulationConfig(subjects=2, seed=3, **SMALL)))
    three = list(simulate_runs(config=SimulationConfig(subjects=3, seed=3, **SMALL)))
    _assert_runs_identical(two[1], three[1])
    single = simulate_run(
        config=SimulationConfig(subjects=3, seed=3, **SMALL), subject_index=1, run_index=0
    )
    _assert_runs_identical(single, three[1])


def test_runs_of_a_subject_share_its_parameters_but_not_its_noise():
    run1, run2 = simulate_runs(config=SimulationConfig(subjects=1, runs=2, **SMALL))
    t1, t2 = run1.truth, run2.truth
    assert np.array_equal(t1.arrays["coupling"], t2.arrays["coupling"])
    assert np.array_equal(t1.arrays["leadfield"], t2.arrays["leadfield"])
    assert t1.attrs["hrf_peak_s"] == t2.attrs["hrf_peak_s"]
    assert t1.attrs["alpha_peak_hz"] == t2.attrs["alpha_peak_hz"]
    assert not np.array_equal(run1.eeg, run2.eeg)
    assert not np.array_equal(t1.arrays["envelopes"], t2.arrays["envelopes"])


def test_session_effects_change_gain_and_cap_per_run_and_nothing_else():
    """Per-run channel gains scale the whole recording (a known answer: the same streams
    without them, times the gains); a cap shift rotates the electrodes, so each run's lead
    field is the one computed on the rotated sensors, and BOLD is untouched by both."""
    from eeg2bold.simulate.subjects import leadfield

    plain = list(simulate_runs(config=SimulationConfig(subjects=1, runs=2, **SMALL)))
    gains = list(
        simulate_runs(config=SimulationConfig(subjects=1, runs=2, session_gain_sd=0.3, **SMALL))
    )
    for a, b in zip(plain, gains, strict=True):
        g = np.asarray(b.truth.attrs["channel_gain"])
        assert 0.3 < g.min() < 1 < g.max() < 3
        np.testing.assert_allclose(
            b.eeg, a.eeg * g[:, None].astype(np.float32), rtol=1e-5, atol=1e-4
        )
        np.testing.assert_array_equal(a.bold, b.bold)
        assert "channel_gain" not in a.truth.attrs  # default datasets are unchanged
    assert gains[0].truth.attrs["channel_gain"] != gains[1].truth.attrs["channel_gain"]

    shifted = list(
        simulate_runs(config=SimulationConfig(subjects=1, runs=2, session_shift_deg=8, **SMALL))
    )
    params = subject_parameters(config=SimulationConfig(subjects=1, **SMALL), subject_index=0)
    rotations = []
    for a, b in zip(plain, shifted, strict=True):
        rot = np.asarray(b.truth.attrs["cap_rotation"])
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        angle = np.degrees(np.arccos((np.trace(rot) - 1) / 2))
        assert 0 < angle < 40
        expected = leadfield(
            n_channels=19,
            positions=params.source_positions,
            moments=params.source_moments,
            rotation=rot,
        )
        np.testing.assert_allclose(b.truth.arrays["leadfield"], expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(b.truth.arrays["leadfield"], a.truth.arrays["leadfield"], atol=1e-3)
        np.testing.assert_array_equal(a.bold, b.bold)
        rotations.append(rot)
    assert not np.allclose(rotations[0], rotations[1])


def test_session_coupling_changes_each_runs_eeg_bold_relation_and_only_that():
    base = SimulationConfig(subjects=1, runs=2, **SMALL)
    plain = list(simulate_runs(config=base))
    varied = list(simulate_runs(config=base.model_copy(update={"session_coupling_jitter": 0.8})))
    c_plain = [r.truth.arrays["coupling"] for r in plain]
    c1, c2 = (r.truth.arrays["coupling"] for r in varied)
    np.testing.assert_array_equal(c_plain[0], c_plain[1])  # without it, one coupling per subject
    assert not np.allclose(c1, c2, atol=1e-3)
    for c in (c1, c2):  # rows keep their norm (the drive variance, hence the SNR)
        np.testing.assert_allclose(
            np.linalg.norm(c, axis=1), np.linalg.norm(c_plain[0], axis=1), rtol=1e-5
        )
        r = np.corrcoef(c.ravel(), c_plain[0].ravel())[0, 1]
        assert 0.3 < r < 0.95  # a deviation of the subject's relation, not a new one
    for a, b in zip(plain, varied, strict=True):
        np.testing.assert_array_equal(a.eeg, b.eeg)
        assert not np.allclose(a.bold, b.bold)


def test_subject_effects_are_shared_by_its_runs_and_sites_are_recorded():
    config = SimulationConfig(
        subjects=3, runs=2, subject_gain_sd=0.3, subject_shift_deg=5, sites=2, **SMALL
    )
    runs = list(simulate_runs(config=config))
    by_subject = [runs[0:2], runs[2:4], runs[4:6]]
    for first, second in by_subject:
        assert first.truth.attrs["channel_gain"] == second.truth.attrs["channel_gain"]
        assert first.truth.attrs["cap_rotation"] == second.truth.attrs["cap_rotation"]
    assert (
        by_subject[0][0].truth.attrs["channel_gain"] != by_subject[1][0].truth.attrs["channel_gain"]
    )
    assert [r.provenance["site"] for r in runs] == ["site-1"] * 2 + ["site-2"] * 2 + ["site-1"] * 2
    assert (
        "site"
        not in simulate_run(
            config=SimulationConfig(**SMALL), subject_index=0, run_index=0
        ).provenance
    )


def test_subjects_differ_around_a_shared_population():
    config = SimulationConfig(subjects=4)
    n_pop = 2 * config.n_sources
    params = [subject_parameters(config=config, subject_index=k) for k in range(4)]
    couplings = np.array([p.coupling[:, :n_pop].ravel() for p in params])
    r = np.corrcoef(couplings)[np.triu_indices(4, 1)]
    assert (r > 0.25).all() and r.mean() > 0.35, r  # a shared population: LOSO is possible
    assert (r < 0.99).all(), r  # but subjects differ: LOSO is harder than within
    # and a private part no other subject shares, of the configured share of the drive
    private = np.array([p.coupling[:, n_pop:].ravel() for p in params])
    assert private.shape[1] == config.rois * 2 * config.private_sources
    assert np.abs(np.corrcoef(private)[np.triu_indices(4, 1)]).max() < 0.5
    for p in params:
        share = (p.coupling[:, n_pop:] ** 2).sum(axis=1)
        np.testing.assert_allclose(share, config.private_coupling)
    assert len({p.hrf_peak_s for p in params}) == 4
    same = SimulationConfig(subjects=2, subject_variability=0.0)  # no private part either
    p0, p1 = (subject_parameters(config=same, subject_index=k) for k in range(2))
    assert np.allclose(p0.coupling, p1.coupling)
    assert (p0.hrf_peak_s, p0.alpha_peak_hz) == (p1.hrf_peak_s, p1.alpha_peak_hz)


def test_run_indices_are_checked():
    config = SimulationConfig(subjects=2, **SMALL)
    with pytest.raises(ValueError, match="subject_index"):
        simulate_run(config=config, subject_index=2, run_index=0)
    with pytest.raises(ValueError, match="run_index"):
        simulate_run(config=config, subject_index=0, run_index=1)


# --------------------------------------------------------------------------- contract


def test_every_run_passes_the_store_contract():
    config = SimulationConfig(subjects=2, runs=2, minutes=1.5, channels=32, rois=16, seed=2)
    info = dataset_info(config=config)
    assert info.source == "eeg2bold.simulate"
    assert info.eeg.units == "uV"
    assert info.eeg.montage == "spherical_1005"
    assert info.eeg.channels == channel_names(32)
    assert info.bold.rois == roi_names(16)
    assert info.provenance["config"] == config.model_dump(mode="json")
    assert info.provenance["versions"]["eeg2bold"] == eeg2bold.__version__
    json.dumps(info.to_attrs())
    n_env = 2 * (config.n_sources + config.private_sources)
    for run in simulate_runs(config=config):
        checked = validate_run(run, info)
        assert checked.task == "rest"
        n_samples = int(round(config.minutes * 60 * config.sfreq))
        assert run.eeg.dtype == np.float32
        assert run.eeg.shape == (32, n_samples)
        assert run.bold.dtype == np.float32
        times = run.volume_times
        assert times.dtype == np.float64
        duration = n_samples / config.sfreq
        assert times[0] >= 0
        assert times[-1] <= duration
        assert np.allclose(np.diff(times), config.tr)
        assert times[-1] + config.tr > duration - 1 / config.sfreq  # as many volumes as fit
        arrays, attrs = run.truth.arrays, run.truth.attrs
        assert arrays["bold_clean"].shape == run.bold.shape
        assert arrays["bold_clean"].dtype == np.float32
        assert arrays["coupling"].shape == (16, n_env)
        assert arrays["envelopes"].shape[0] == n_env
        assert arrays["envelopes"].shape[1] >= duration * attrs["env_sfreq"]
        assert arrays["leadfield"].shape == (32, config.n_sources)
        names = envelope_names(config.n_sources, config.private_sources)
        assert attrs["envelope_names"] == list(names) and names[-1] == "private1_beta"
        assert attrs["envelope_names"][3] == "src1_beta"
        assert len(attrs["oracle_r"]) == 16
        for key in ("hrf_peak_s", "env_sfreq", "alpha_peak_hz", "snr"):
            assert isinstance(attrs[key], float), key
        json.dumps(attrs)


def test_channel_and_roi_names():
    classic = ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz")
    classic += ("C4", "T8", "P7", "P3", "Pz", "P4", "P8", "O1", "O2")
    assert channel_names(19) == classic
    cap = channel_names(32)
    assert {"Oz", "FC1", "CP6", "TP9", "TP10", "PO9", "PO10"} <= set(cap)
    assert len(set(channel_names(64))) == 64
    assert roi_names(3) == ("Thalamus_L", "Thalamus_R", "Caudate_L")
    assert roi_names(16)[-3:] == ("Accumbens_R", "parcel-L-015", "parcel-R-016")
    with pytest.raises(ValueError, match="between 1 and 64"):
        channel_names(65)


# --------------------------------------------------------------------------- EEG physics


def test_alpha_peak_at_the_subjects_frequency_above_the_aperiodic_background():
    config = SimulationConfig(subjects=3, minutes=3.0, channels=32, alpha_peak_hz=10.0, seed=0)
    info = dataset_info(config=config)
    occipital = [info.eeg.channels.index(c) for c in ("O1", "O2", "Oz")]
    found = []
    for run in simulate_runs(config=config):
        freqs, psd = _psd(run.eeg[occipital], config.sfreq)
        psd = psd.mean(axis=0)
        target = run.truth.attrs["alpha_peak_hz"]
        near = (freqs >= target - 1) & (freqs <= target + 1)
        i = np.flatnonzero(near)[np.argmax(psd[near])]
        assert psd[i] > psd[i - 1]  # a local maximum ...
        assert psd[i] > psd[i + 1]
        # aperiodic fit on peak-free ranges (below theta, above beta, below the line)
        fit = ((freqs >= 2) & (freqs <= 5)) | ((freqs >= 35) & (freqs <= 45))
        slope, icpt = np.polyfit(np.log(freqs[fit]), np.log(psd[fit]), 1)
        background = np.exp(icpt + slope * np.log(freqs[i]))
        assert psd[i] > 10 * background, (psd[i], background)
        assert abs(freqs[i] - target) <= 0.5  # 0.25 Hz bins; the 1/f tilt pulls slightly down
        assert -3.0 < slope < -0.5  # a 1/f background
        found.append((target, freqs[i]))
    targets = [t for t, _ in found]
    assert max(targets) - min(targets) > 1.0  # subjects differ, and the peak follows them


def test_line_noise_at_line_frequency():
    for line in (50.0, 60.0):
        config = SimulationConfig(subjects=1, line_freq=line, **SMALL)
        run = simulate_run(config=config, subject_index=0, run_index=0)
        freqs, psd = _psd(run.eeg, config.sfreq)
        psd = psd.mean(axis=0)
        at = np.argmin(np.abs(freqs - line))
        side = (np.abs(freqs - line) > 2) & (np.abs(freqs - line) < 6)
        assert psd[at] > 20 * np.median(psd[side])
    quiet = simulate_run(
        config=SimulationConfig(subjects=1, line_noise_uv=0.0, **SMALL),
        subject_index=0,
        run_index=0,
    )
    freqs, psd = _psd(quiet.eeg, 250.0)
    at, side = np.argmin(np.abs(freqs - 50)), (np.abs(freqs - 50) > 2) & (np.abs(freqs - 50) < 6)
    assert psd.mean(axis=0)[at] < 3 * np.median(psd.mean(axis=0)[side])


def test_blinks_are_frontal():
    config = SimulationConfig(subjects=1, minutes=2.0, channels=32, blink_rate_per_min=30.0)
    run = simulate_run(config=config, subject_index=0, run_index=0)
    blinks = np.asarray(run.truth.attrs["blink_times_s"])
    assert 30 < blinks.size < 90
    names = dataset_info(config=config).eeg.channels
    peaks = np.round(blinks * config.sfreq).astype(int)
    base = np.clip(peaks - int(0.8 * config.sfreq), 0, None)
    evoked = (run.eeg[:, peaks] - run.eeg[:, base]).mean(axis=1)
    frontal = np.abs(evoked[[names.index(c) for c in ("Fp1", "Fp2")]]).min()
    posterior = np.abs(evoked[[names.index(c) for c in ("O1", "O2", "Oz", "Pz")]]).max()
    assert frontal > 40  # microvolts
    # with the FCz reference, posterior channels carry a small inverted copy of the blink
    assert frontal > 3 * posterior
    assert np.argmax(np.abs(evoked)) in [names.index(c) for c in ("Fp1", "Fp2")]
    no_blinks = simulate_run(
        config=config.model_copy(update={"blink_rate_per_min": 0.0}), subject_index=0, run_index=0
    )
    assert no_blinks.truth.attrs["blink_times_s"] == []
    fp1 = names.index("Fp1")
    assert run.eeg[fp1].std() > 1.5 * no_blinks.eeg[fp1].std()


# --------------------------------------------------------------------------- BOLD physics


def _driver_lag(run, *, max_lag_s: float = 15.0) -> float:
    """Lag (s) maximising the correlation between the drivers and bold_clean, summed over ROIs."""
    truth = run.truth
    fs = truth.attrs["env_sfreq"]
    env = truth.arrays["envelopes"].astype(np.float64)
    drivers = (env - truth.attrs["envelope_mean"]) / truth.attrs["envelope_std"]
    drive = truth.arrays["coupling"].astype(np.float64) @ drivers
    t_env = np.arange(env.shape[1]) / fs
    keep = run.volume_times >= max_lag_s
    times = run.volume_times[keep]
    clean = truth.arrays["bold_clean"].astype(np.float64)[:, keep]
    lags = np.arange(0.0, max_lag_s + 1e-9, 0.1)
    score = [
        sum(
            np.corrcoef(np.interp(times - lag, t_env, d), c)[0, 1]
            for d, c in zip(drive, clean, strict=True)
        )
        for lag in lags
    ]
    return float(lags[int(np.argmax(score))])


def test_bold_lags_its_drivers_by_the_hrf_delay():
    config = SimulationConfig(
        subjects=5, minutes=15.0, channels=1, n_sources=4, hrf_peak_sd_s=1.0, seed=1
    )
    peaks, lags = [], []
    for run in simulate_runs(config=config):
        peak, lag = run.truth.attrs["hrf_peak_s"], _driver_lag(run)
        # the cross-correlation is the HRF smeared by the drivers' autocorrelation, which
        # moves its maximum slightly later than the HRF peak; one TR is the resolution of BOLD
        assert abs(lag - peak) <= config.tr, (peak, lag)
        peaks.append(peak)
        lags.append(lag)
    early, late = int(np.argmin(peaks)), int(np.argmax(peaks))
    assert peaks[late] - peaks[early] > 0.8
    assert lags[late] > lags[early]


def test_oracle_r_is_the_correlation_of_clean_and_noisy_bold():
    config = SimulationConfig(subjects=1, minutes=60.0, channels=1, n_sources=2, rois=12)
    run = simulate_run(config=config, subject_index=0, run_index=0)
    clean, bold = run.truth.arrays["bold_clean"], run.bold
    direct = [np.corrcoef(clean[r], bold[r])[0, 1] for r in range(config.rois)]
    np.testing.assert_allclose(run.truth.attrs["oracle_r"], direct, atol=1e-6)
    noise_var = (bold.astype(np.float64) - clean).var(axis=1)
    np.testing.assert_allclose(clean.astype(np.float64).var(axis=1) / noise_var, 1.0, rtol=1e-3)
    expected = np.sqrt(config.snr / (1 + config.snr))
    assert abs(np.mean(direct) - expected) < 0.04
    assert np.all(np.abs(np.asarray(direct) - expected) < 0.1)


def test_higher_snr_gives_higher_oracle_r():
    means = []
    for snr in (0.25, 1.0, 4.0):
        config = SimulationConfig(subjects=1, snr=snr, minutes=20.0, channels=1, n_sources=2)
        run = simulate_run(config=config, subject_index=0, run_index=0)
        oracle = np.mean(run.truth.attrs["oracle_r"])
        assert abs(oracle - np.sqrt(snr / (1 + snr))) < 0.08
        means.append(oracle)
    assert means[0] < means[1] < means[2]


def test_common_mode_is_shared_across_rois():
    def mean_corr(x: np.ndarray) -> float:
        c = np.corrcoef(x)
        return float(c[np.triu_indices_from(c, 1)].mean())

    shared, private = (
        simulate_run(
            config=SimulationConfig(subjects=1, common_mode=k, minutes=20.0, channels=1),
            subject_index=0,
            run_index=0,
        )
        for k in (0.8, 0.0)
    )
    assert mean_corr(shared.bold) > mean_corr(private.bold) + 0.2


# --------------------------------------------------------------------------- config


def test_config_rejects_unknown_keys_with_a_suggestion():
    with pytest.raises(ValidationError, match="did you mean 'minutes'"):
        SimulationConfig(minuts=5)


@pytest.mark.parametrize(
    "bad",
    [
        {"minutes": -1.0},
        {"minutes": 0.0},
        {"minutes": 0.1},  # shorter than one window
        {"subjects": 0},
        {"channels": 65},
        {"snr": 0.0},
        {"seed": -1},
    ],
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValidationError):
        SimulationConfig(**bad)


def test_no_line_noise_at_or_above_nyquist():
    """A 100 Hz recording cannot hold 50 Hz mains: the anti-alias filter removed it."""
    quiet = SimulationConfig(subjects=1, minutes=1, sfreq=100, line_freq=50, line_noise_uv=0.0)
    default = SimulationConfig(subjects=1, minutes=1, sfreq=100, line_freq=50)
    a = simulate_run(config=quiet, subject_index=0, run_index=0)
    b = simulate_run(config=default, subject_index=0, run_index=0)
    np.testing.assert_allclose(a.eeg, b.eeg, atol=1e-4)


def test_config_is_frozen_and_round_trips():
    config = SimulationConfig(subjects=3, seed=5)
    with pytest.raises(ValidationError):
        config.seed = 6  # type: ignore[misc]
    assert SimulationConfig.model_validate(config.model_dump(mode="json")) == config

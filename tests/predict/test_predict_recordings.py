"""Recordings that do not fit the model are refused with one line naming the file and the
difference: missing channels, sampling rate, units, length, format. And the one recording
written in every other format the readers take (EEGLAB, FIF, MATLAB v5 and v7.3, BDF) is
predicted end to end as its BrainVision file is, up to that format's quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eeg2bold.cli import main
from eeg2bold.errors import Eeg2BoldError
from eeg2bold.ingest.specs import MatOptions
from eeg2bold.predict import PredictError, PredictOptions, predict, read_tsv


def _one_line(err, path) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert path.name in text
    return text


def test_missing_channels(sim, write, tmp_path):
    keep = [i for i, c in enumerate(sim.channels) if c not in sim.channels[-2:]]
    names = [sim.channels[i] for i in keep]
    vhdr = write.brainvision(tmp_path, "few", sim.volts[keep], names=names, sfreq=100.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    text = _one_line(err, vhdr)
    assert text == (f"recording {vhdr} lacks channels {list(sim.channels[-2:])} the model needs")


def test_near_channel_names_are_suggested(sim, write, tmp_path):
    names = [c + "x" if i == 0 else c for i, c in enumerate(sim.channels)]
    vhdr = write.brainvision(tmp_path, "near", sim.volts, names=names, sfreq=100.0)
    with pytest.raises(PredictError, match=rf"nearest in the recording: '{sim.channels[0]}'"):
        predict(str(sim.model), vhdr)


def test_channel_names_match_ignoring_case(sim, write, tmp_path):
    """FZ is Fz (issue 26, item 11): every name upper-cased predicts what the original does,
    and says so."""
    upper = write.brainvision(
        tmp_path, "upper", sim.volts, names=[c.upper() for c in sim.channels], sfreq=100.0
    )
    same = predict(str(sim.model), sim.vhdr)
    cased = predict(str(sim.model), upper)
    np.testing.assert_array_equal(cased.values, same.values)
    assert any("ignoring case" in n for n in cased.notes)
    from eeg2bold.predict.recording import case_matches

    # 10-05 names with lower-case letters; a name that is needed as written is never taken
    assert case_matches(have=["FFC1H", "AFZ", "Cz"], needed=["FFC1h", "AFz", "Cz"]) == {
        "FFC1H": "FFC1h",
        "AFZ": "AFz",
    }
    assert case_matches(have=["FZ", "fz"], needed=["Fz"]) == {}  # two candidates: refused


def test_wrong_sampling_rate(sim, write, tmp_path):
    vhdr = write.brainvision(tmp_path, "fast", sim.volts, names=sim.channels, sfreq=200.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    assert _one_line(err, vhdr).endswith(
        "fast.vhdr: 200 Hz but the model was trained at 100 Hz and the training data recorded "
        "no resampling step"
    )


def test_wrong_units(sim, write, tmp_path):
    # microvolt numbers written as volts: a million times too large
    vhdr = write.brainvision(tmp_path, "units", sim.volts * 1e6, names=sim.channels, sfreq=100.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    assert "EEG amplitude is 1e+06 x that of the training data" in _one_line(err, vhdr)
    # the check can be skipped (and then the prediction is what it is)
    assert np.isfinite(
        predict(str(sim.model), vhdr, PredictOptions(check_amplitude=False)).values
    ).all()


def test_units_the_recording_cannot_be_converted_to(sim, tmp_path):
    card = torch.load(sim.model, weights_only=True)
    card["units"] = "a.u."
    path = tmp_path / "au.pt"
    torch.save(card, path)
    with pytest.raises(PredictError, match=r"trained on EEG in 'a.u.', which a recording"):
        predict(str(path), sim.vhdr)


def test_too_short_and_unknown_format(sim, write, tmp_path):
    vhdr = write.brainvision(
        tmp_path, "short", sim.volts[:, :1000], names=sim.channels, sfreq=100.0
    )
    with pytest.raises(
        PredictError, match=r"too short for one window \(window_s 12 s \+ delay_s 2"
    ):
        predict(str(sim.model), vhdr)
    other = tmp_path / "rec.xyz"
    other.write_text("x")
    with pytest.raises(PredictError, match=r"rec\.xyz: unknown EEG format"):
        predict(str(sim.model), other)
    with pytest.raises(Eeg2BoldError, match="no such file"):
        predict(str(sim.model), tmp_path / "none.vhdr")


def test_bad_channels_need_a_preprocessing_record(sim):
    with pytest.raises(PredictError, match="bad channels cannot be repaired"):
        predict(str(sim.model), sim.vhdr, PredictOptions(bad_channels=(sim.channels[0],)))
    with pytest.raises(PredictError, match=r"bad channel\(s\) \['Nope'\] are not channels"):
        predict(str(sim.model), sim.vhdr, PredictOptions(bad_channels=("Nope",)))


# -- the same recording in the other formats -------------------------------------------------
#
# The reference is the BrainVision file (float32 microvolts: the stored float32 run up to one
# rounding). Agreement is judged per output as max |difference| over the line / its SD:
# - float formats (EEGLAB float32 uV, FIF float32 V, MATLAB float64) hold the same samples up
#   to one float32 rounding (2^-24 relative); measured <= 8e-7 SD, as for the in-memory run
#   (apply_models on the stored array), so 1e-5 leaves >10x margin. (A one-sample shift
#   gives 4e-2 SD, a 0.1% gain error 5e-3 SD.)
# - BDF stores 24-bit integers over the data's range (-61..195 uV here): a step of 1.5e-5 uV,
#   noise 7e-7 of the quietest channel's SD (6.4 uV); measured <= 2.1e-6 SD, so 2e-5. The
#   16-bit EDF of the same signal (256x coarser steps) differs by 4.4-4.9e-4 SD: 22x over it.
FLOAT_REL = 1e-5
BDF_REL = 2e-5


def _raw(sim):
    import mne

    info = mne.create_info(list(sim.channels), 100.0, "eeg")
    return mne.io.RawArray(sim.volts, info, verbose="error")


def _write_eeglab(sim, folder: Path) -> Path:
    """EEGLAB via MNE's exporter (eeglabio): float32 microvolts inside the .set."""
    import mne

    path = folder / "sub01.set"
    mne.export.export_raw(path, _raw(sim), fmt="eeglab", verbose="error")
    return path


def _write_eeglab_fdt(sim, folder: Path) -> Path:
    """EEGLAB's own layout: the .set names a .fdt of float32 samples, channels varying
    fastest (MATLAB's column-major [nbchan x pnts])."""
    import scipy.io

    exported = scipy.io.loadmat(_write_eeglab(sim, folder))
    fields = {k: v for k, v in exported.items() if not k.startswith("__")}
    data = fields.pop("data")
    assert data.dtype == np.float32 and data.shape == sim.volts.shape
    data.T.astype("<f4").tofile(folder / "split.fdt")
    path = folder / "split.set"
    scipy.io.savemat(path, {**fields, "data": "split.fdt"})
    return path


def _write_fif(sim, folder: Path) -> Path:
    """FIF via ``RawArray.save`` (float32 volts)."""
    path = folder / "sub01_eeg.fif"
    _raw(sim).save(path, verbose="error")
    return path


def _write_mat_v5(sim, folder: Path) -> tuple[Path, MatOptions]:
    """MATLAB v5 (scipy.io.savemat): a struct ``EEG`` whose ``data`` is [channels x samples]
    in millivolts, float64."""
    import scipy.io

    path = folder / "sub01.mat"
    scipy.io.savemat(path, {"EEG": {"data": sim.volts * 1e3, "srate": 100.0}})
    options = MatOptions(variable="EEG.data", sfreq=100.0, units="mV", channels=sim.channels)
    return path, options


def _write_mat_v73(sim, folder: Path) -> tuple[Path, MatOptions]:
    """MATLAB v7.3 (HDF5 behind MATLAB's 512-byte header): ``eeg`` [samples x channels] in
    microvolts, float64. HDF5 holds MATLAB arrays transposed."""
    import h5py

    path = folder / "sub01_v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("eeg", data=sim.volts * 1e6)  # (channels, samples) in HDF5
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, written by the eeg2bold tests".ljust(116))
    options = MatOptions(variable="eeg", sfreq=100.0, units="uV", channels=sim.channels)
    return path, options


def _write_bdf(sim, folder: Path) -> Path:
    """BDF via MNE's exporter (edfio): 24-bit samples over the data's own range."""
    import mne

    path = folder / "sub01.bdf"
    mne.export.export_raw(path, _raw(sim), fmt="bdf", verbose="error")
    return path


@pytest.fixture(scope="module")
def reference(sim):
    return predict(str(sim.model), sim.vhdr)


def _relative_difference(prediction, reference) -> np.ndarray:
    """Per output: max |prediction - reference| / SD of the reference line (same times)."""
    assert np.array_equal(prediction.times, reference.times)
    assert prediction.outputs == reference.outputs
    assert np.isfinite(prediction.values).all()
    diff = np.abs(prediction.values - reference.values).max(axis=1)
    return diff / reference.values.std(axis=1)


WRITERS = {
    "eeglab": _write_eeglab,
    "eeglab-fdt": _write_eeglab_fdt,
    "fif": _write_fif,
    "mat-v5": _write_mat_v5,
    "mat-v7.3": _write_mat_v73,
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_float_formats_predict_as_the_brainvision_file(sim, reference, tmp_path, fmt):
    written = WRITERS[fmt](sim, tmp_path)
    path, mat = written if isinstance(written, tuple) else (written, None)
    prediction = predict(str(sim.model), path, mat=mat)
    assert prediction.info["recording"] == str(path)
    relative = _relative_difference(prediction, reference)
    assert (relative <= FLOAT_REL).all(), relative


def test_bdf_24_bit_predicts_as_the_brainvision_file(sim, reference, tmp_path):
    path = _write_bdf(sim, tmp_path)
    assert path.read_bytes()[:8] == b"\xffBIOSEMI"  # BDF, not EDF
    relative = _relative_difference(predict(str(sim.model), path), reference)
    assert (relative <= BDF_REL).all(), relative
    # the tolerance tells 24 from 16 bits: the EDF of the same signal misses it
    edf = _relative_difference(predict(str(sim.model), sim.edf), reference)
    assert (edf > 5 * BDF_REL).all(), edf


def test_cli_predicts_a_matlab_file_with_its_options(sim, reference, tmp_path, capsys):
    path, _ = _write_mat_v5(sim, tmp_path)
    out = tmp_path / "bold.tsv"
    args = ["predict", str(sim.model), str(path), "-o", str(out), "--no-plot", "-q"]
    mat = ["--mat-variable", "EEG.data", "--mat-sfreq", "100", "--mat-units", "mV"]
    channels = ["--mat-channels", ",".join(sim.channels)]
    assert main([*args, *mat, *channels]) == 0, capsys.readouterr().err
    times, columns = read_tsv(out)
    assert list(columns) == list(reference.outputs)
    assert np.allclose(times, reference.times, rtol=0, atol=1e-6)  # written with 6 decimals
    # 7 significant digits in the table
    assert np.allclose(np.stack(list(columns.values())), reference.values, rtol=1e-6, atol=1e-5)
    # the same file read in the wrong units is refused by the amplitude check (1000x)
    assert main([*args, *mat[:4], "--mat-units", "uV", *channels]) == 1
    assert "EEG amplitude is 0.001 x that of the training data" in capsys.readouterr().err

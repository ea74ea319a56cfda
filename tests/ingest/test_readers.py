"""EEG readers: MNE formats, MATLAB arrays (v5 and v7.3/HDF5), truncated files refused."""

from __future__ import annotations

import shutil

import h5py
import mne
import numpy as np
import pytest
import scipy.io

from eeg2bold.ingest import EEGSource, IngestError, MatOptions
from eeg2bold.ingest.readers import companion_files, read_eeg


def test_real_eeglab_and_edf_are_read(real_data):
    raw = read_eeg(EEGSource(path=real_data / "eeg" / "eeglab_data.set", format="eeglab"))
    assert len(raw.ch_names) == 32
    assert raw.info["sfreq"] == 128.0
    assert raw.n_times / raw.info["sfreq"] == pytest.approx(238.3, abs=0.1)
    assert len(raw.annotations) == 154
    edf = read_eeg(EEGSource(path=real_data / "eeg" / "eyes-closed-1.edf", format="edf"))
    assert len(edf.ch_names) == 31
    assert edf.info["sfreq"] == 1000.0
    assert edf.n_times == 50_000


def test_eeglab_v73_hdf5_round_trip(real_data, tmp_path):
    """The real EEGLAB recording converted to a MATLAB v7.3 (HDF5) .set reads back equal."""
    from eeglabio.raw import export_set

    src = mne.io.read_raw_eeglab(real_data / "eeg" / "eeglab_data.set", preload=True)
    out = tmp_path / "eeglab_v73.set"
    ann = [src.annotations.description, src.annotations.onset, src.annotations.duration]
    export_set(
        str(out), src.get_data(), src.info["sfreq"], src.ch_names, annotations=ann, fmt="v7.3"
    )
    assert h5py.is_hdf5(out)
    raw = read_eeg(EEGSource(path=out, format="eeglab"))
    assert raw.ch_names == src.ch_names
    np.testing.assert_allclose(raw.get_data(), src.get_data(), rtol=1e-5, atol=1e-9)
    assert len(raw.annotations) == len(src.annotations)


def _save_v73(path, name, array):
    """A MATLAB v7.3 file the way MATLAB writes it: HDF5, arrays stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset(name, data=np.asarray(array).T)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset("srate", data=np.array([[1000.0]]))


def test_matlab_arrays_v5_and_v73(tmp_path):
    rng = np.random.default_rng(0)
    data_uv = rng.normal(scale=20, size=(5, 3000))  # [channels x samples], microvolts
    names = ("Fz", "Cz", "Pz", "O1", "O2")
    opts = MatOptions(variable="data_reref", sfreq=1000, units="uV", channels=names)
    scipy.io.savemat(tmp_path / "v5.mat", {"data_reref": data_uv})
    _save_v73(tmp_path / "v73.mat", "data_reref", data_uv)
    for name in ("v5.mat", "v73.mat"):
        raw = read_eeg(EEGSource(path=tmp_path / name, format="mat", mat=opts))
        assert raw.ch_names == list(names)
        assert raw.info["sfreq"] == 1000
        np.testing.assert_allclose(raw.get_data(), data_uv * 1e-6)  # stored in volts
    # samples x channels, a struct field, other units, default names
    scipy.io.savemat(tmp_path / "struct.mat", {"EEG": {"data": data_uv.T * 1e-3}})
    raw = read_eeg(
        EEGSource(
            path=tmp_path / "struct.mat",
            format="mat",
            mat=MatOptions(variable="EEG.data", sfreq=500, units="mV"),
        )
    )
    assert raw.ch_names[:2] == ["EEG001", "EEG002"]
    np.testing.assert_allclose(raw.get_data(), data_uv * 1e-6)


def test_matlab_errors_name_the_file_and_the_problem(tmp_path):
    scipy.io.savemat(tmp_path / "v5.mat", {"data": np.zeros((3, 100)), "events": np.ones(3)})
    _save_v73(tmp_path / "v73.mat", "data", np.zeros((3, 100)))
    opts = MatOptions(variable="EEG", sfreq=100)
    for name in ("v5.mat", "v73.mat"):
        with pytest.raises(IngestError, match=rf"{name}: no variable 'EEG'.*variables: data"):
            read_eeg(EEGSource(path=tmp_path / name, format="mat", mat=opts))
    bad = MatOptions(variable="data", sfreq=100, channels=("A", "B"))
    with pytest.raises(IngestError, match="2 channel names given but variable 'data' has shape"):
        read_eeg(EEGSource(path=tmp_path / "v5.mat", format="mat", mat=bad))
    (tmp_path / "junk.mat").write_bytes(b"not matlab at all")
    with pytest.raises(IngestError, match=r"junk\.mat: not a MATLAB file"):
        read_eeg(EEGSource(path=tmp_path / "junk.mat", format="mat", mat=opts))


def test_truncated_files_are_refused(real_data, tmp_path, make):
    edf = tmp_path / "cut.edf"
    blob = (real_data / "eeg" / "eyes-closed-1.edf").read_bytes()
    edf.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IngestError, match=r"cut\.edf: truncated EDF file"):
        read_eeg(EEGSource(path=edf, format="edf"))

    shutil.copy(real_data / "eeg" / "eeglab_data.set", tmp_path / "cut.set")
    fdt = (real_data / "eeg" / "eeglab_data.fdt").read_bytes()
    (tmp_path / "cut.fdt").write_bytes(fdt[: len(fdt) // 3])
    with pytest.raises(IngestError, match=r"cut\.fdt: truncated EEGLAB data file"):
        read_eeg(EEGSource(path=tmp_path / "cut.set", format="eeglab"))

    vhdr = make.brainvision(tmp_path, "cut", make.eeg(seconds=5))
    eeg = tmp_path / "cut.eeg"
    eeg.write_bytes(eeg.read_bytes()[:-3])
    with pytest.raises(IngestError, match=r"cut\.eeg: truncated BrainVision data"):
        read_eeg(EEGSource(path=vhdr, format="brainvision"))

    # cut at a sample boundary: a whole number of samples, but the markers run past the end
    vhdr = make.brainvision(tmp_path, "short", make.eeg(seconds=60), markers=make.onsets(25))
    eeg = tmp_path / "short.eeg"
    whole = eeg.read_bytes()
    frame = len(whole) // (60 * _sfreq(vhdr))
    eeg.write_bytes(whole[: frame * 30 * _sfreq(vhdr)])  # the first 30 s of 60
    with pytest.raises(IngestError) as err:
        read_eeg(EEGSource(path=vhdr, format="brainvision"))
    assert str(err.value).startswith(f"{eeg}: truncated BrainVision data: it ends at sample ")
    assert "short.vmrk has markers up to sample" in str(err.value)

    (tmp_path / "garbage.vhdr").write_text("this is no header")
    with pytest.raises(IngestError, match=r"garbage\.vhdr: cannot read BrainVision file"):
        read_eeg(EEGSource(path=tmp_path / "garbage.vhdr", format="brainvision"))
    with pytest.raises(IngestError, match=r"nothing\.edf: no such file"):
        read_eeg(EEGSource(path=tmp_path / "nothing.edf", format="edf"))


def test_companion_files_are_hashed_with_the_recording(real_data, tmp_path, make):
    files = companion_files(EEGSource(path=real_data / "eeg" / "eeglab_data.set", format="eeglab"))
    assert [f.suffix for f in files] == [".set", ".fdt"]
    vhdr = make.brainvision(tmp_path, "rec", make.eeg(seconds=5), markers=[1.0])
    names = sorted(f.name for f in companion_files(EEGSource(path=vhdr, format="brainvision")))
    assert names == ["rec.eeg", "rec.vhdr", "rec.vmrk"]


def _sfreq(vhdr) -> int:
    """Samples per second from a .vhdr's SamplingInterval (µs)."""
    import re

    interval = re.search(r"^SamplingInterval=(\S+)", vhdr.read_text(), flags=re.MULTILINE)
    return round(1e6 / float(interval.group(1)))

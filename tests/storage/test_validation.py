"""Every refusal of the schema: a clear error naming the run, and the store left intact."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2bold.errors import DatasetError, RunValidationError
from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo, RunKey, create_dataset


def _nan_at(arr, index):
    out = np.array(arr, dtype=np.float64)
    out[index] = np.nan
    return out


# (case id, changes to the run, expected message fragment)
CASES = [
    ("channels-missing", lambda r: {"channels": ("E0", "E1", "E2")}, r"missing \['E3'\]"),
    (
        "channels-reordered",
        lambda r: {"channels": ("E1", "E0", "E2", "E3")},
        "same names in a different order",
    ),
    ("rois-extra", lambda r: {"rois": ("roi0", "roi1", "roi2", "x")}, r"unexpected \['x'\]"),
    ("eeg-nan", lambda r: {"eeg": _nan_at(r.eeg, (1, 7))}, r"eeg has 1 non-finite.*\[1, 7\]"),
    ("bold-inf", lambda r: {"bold": np.full_like(r.bold, np.inf)}, "bold has .* non-finite"),
    (
        "times-nan",
        lambda r: {"volume_times": _nan_at(r.volume_times, 3)},
        "volume_times has 1 non-finite",
    ),
    (
        "times-not-increasing",
        lambda r: {"volume_times": np.r_[r.volume_times[:5], r.volume_times[4:-1]]},
        "not strictly increasing",
    ),
    (
        "times-after-recording",
        lambda r: {"volume_times": r.volume_times + 30.0},
        "fall outside the EEG recording",
    ),
    (
        "times-negative",
        lambda r: {"volume_times": r.volume_times - 5.0},
        "fall outside the EEG recording",
    ),
    ("eeg-too-short", lambda r: {"eeg": r.eeg[:, :500]}, "shorter than one window"),
    ("eeg-int-dtype", lambda r: {"eeg": r.eeg.astype(np.int16)}, "eeg has dtype int16"),
    ("bold-complex", lambda r: {"bold": r.bold.astype(complex)}, "bold has dtype complex128"),
    ("eeg-1d", lambda r: {"eeg": r.eeg[0]}, r"eeg has shape \(6000,\), expected \(4 channels"),
    ("eeg-channels", lambda r: {"eeg": r.eeg[:3]}, r"expected \(4 channels"),
    ("bold-rois", lambda r: {"bold": r.bold[:2]}, r"expected \(3 ROIs"),
    ("times-length", lambda r: {"volume_times": r.volume_times[:-1]}, "to match the BOLD volumes"),
    (
        "bold-one-volume",
        lambda r: {"bold": r.bold[:, :1], "volume_times": r.volume_times[:1]},
        "need at least 2",
    ),
    ("subject-path", lambda r: {"subject": "../evil"}, "invalid subject name"),
    ("run-slash", lambda r: {"run": "a/b"}, "invalid run name"),
    ("bad-channel-unknown", lambda r: {"bad_channels": ["Cz"]}, r"not in the channel list"),
]


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusal_is_clear_and_leaves_the_store_intact(
    tmp_path, make_info, make_run, change, message
):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    good = make_run(info, subject="sub-01")
    ds.write_run(good)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())

    bad = make_run(info, subject="sub-02")
    for name, value in change(bad).items():
        setattr(bad, name, value)
    with pytest.raises(RunValidationError, match=message) as err:
        ds.write_run(bad)
    text = str(err.value)
    assert "\n" not in text
    if not text.startswith("invalid"):
        assert f"run {bad.subject}/{bad.run}" in text

    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert after == before
    assert ds.runs() == [RunKey("sub-01", "run-1")]
    assert ds.verify(RunKey("sub-01", "run-1")) == []


def test_float64_input_is_stored_as_float32(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    run = make_run(info)
    run.eeg = run.eeg.astype(np.float64)
    ds.write_run(run)
    assert ds.read_run(run.key).eeg.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eeg": EEGInfo(sfreq=0.0, channels=("a",))}, "sampling rate must be positive"),
        ({"bold": BOLDInfo(tr=-2.0, rois=("r",))}, "TR must be positive"),
        ({"eeg": EEGInfo(sfreq=100.0, channels=("a", "a"))}, r"duplicate channel names \['a'\]"),
        ({"bold": BOLDInfo(tr=2.0, rois=())}, "the ROI list is empty"),
    ],
)
def test_dataset_info_refuses_bad_metadata(kwargs, message):
    base = {
        "name": "x",
        "eeg": EEGInfo(sfreq=100.0, channels=("a",)),
        "bold": BOLDInfo(tr=2.0, rois=("r",)),
    }
    with pytest.raises(DatasetError, match=message):
        DatasetInfo(**{**base, **kwargs})

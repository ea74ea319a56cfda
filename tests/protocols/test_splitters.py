"""Splitters: disjoint sets, guard gaps, and no held-out subject in LOSO training."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.protocols import (
    SampleTable,
    build_sample_table,
    get_protocol,
    guard_gap,
    protocol_names,
)
from eeg2bold.storage import RunKey, create_dataset
from eeg2bold.storage.windows import WindowReader


def make_table(durations: list[list[float]], *, window_s=10.0, delay_s=5.0, tr=2.0, sfreq=100.0):
    """A sample table for subjects whose runs last the given seconds (volumes every TR)."""
    runs, run_subject, run_duration = [], [], []
    cols = {"run": [], "volume": [], "time": []}
    for s, subject_runs in enumerate(durations):
        for r, duration in enumerate(subject_runs):
            i = len(runs)
            runs.append(RunKey(f"sub-{s + 1:02d}", f"run-{r + 1}"))
            run_subject.append(s)
            run_duration.append(duration)
            times = np.arange(0.0, duration, tr)
            ok = (times - delay_s - window_s >= 0) & (times - delay_s <= duration)
            cols["run"].append(np.full(ok.sum(), i))
            cols["volume"].append(np.flatnonzero(ok))
            cols["time"].append(times[ok])
    return SampleTable(
        window_s=window_s,
        delay_s=delay_s,
        sfreq=sfreq,
        runs=tuple(runs),
        subjects=tuple(f"sub-{s + 1:02d}" for s in range(len(durations))),
        run_duration=np.asarray(run_duration),
        run_subject=np.asarray(run_subject),
        run=np.concatenate(cols["run"]),
        volume=np.concatenate(cols["volume"]),
        time=np.concatenate(cols["time"]),
    )


TABLES = {
    "one-run": make_table([[600.0], [480.0], [720.0]]),
    "multi-run": make_table([[300.0, 420.0], [600.0], [200.0, 200.0, 260.0]]),
    "long-window": make_table([[900.0], [900.0]], window_s=30.0, delay_s=6.0),
}


def _separated(samples: SampleTable, a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Every footprint in ``a`` is at least ``gap`` seconds from every one in ``b`` (same run)."""
    for run in np.intersect1d(samples.run[a], samples.run[b]):
        ia, ib = a[samples.run[a] == run], b[samples.run[b] == run]
        a_lo, a_hi = samples.start[ia], samples.time[ia]
        b_lo, b_hi = samples.start[ib], samples.time[ib]
        apart = (a_hi[:, None] + gap <= b_lo[None]) | (b_hi[None] + gap <= a_lo[:, None])
        if not apart.all():
            return False
    return True


# every registered protocol, plus the calibration curve's points (loso_calibrated by amount)
CASES = [(p, {}) for p in protocol_names()]
CASES += [("loso_calibrated", {"calibration_s": 0.0}), ("loso_calibrated", {"calibration_s": 90.0})]


@pytest.mark.parametrize(("protocol", "options"), CASES, ids=[f"{p}{o}" for p, o in CASES])
@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_splits_are_disjoint_and_separated_by_the_guard_gap(protocol, options, table):
    samples = TABLES[table]
    splitter = get_protocol(protocol, **options)
    gap = guard_gap(samples)
    assert gap == max(20.0, samples.window_s + samples.delay_s)
    folds = splitter.folds(samples)
    assert [f.subject for f in folds] == list(samples.subjects)
    for fold in folds:
        for x, y in itertools.combinations(("train", "val", "test"), 2):
            a, b = fold.split(x), fold.split(y)
            assert np.intersect1d(a, b).size == 0, (fold.name, x, y)
            assert _separated(samples, a, b, gap), (fold.name, x, y)
        for split in ("train", "val", "test"):
            idx = fold.split(split)
            assert np.all(np.diff(idx) > 0)  # sorted, unique


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_within_blocks_are_in_time_order_of_one_subject(table):
    samples = TABLES[table]
    for fold in get_protocol("within").folds(samples):
        s = samples.subjects.index(fold.subject)
        for split in ("train", "val", "test"):
            assert np.all(samples.subject[fold.split(split)] == s)
        offsets = np.zeros(len(samples.runs))
        total = 0.0
        for r in np.flatnonzero(samples.run_subject == s):
            offsets[r] = total
            total += samples.run_duration[r]
        t = offsets[samples.run] + samples.time
        assert t[fold.train].max() < t[fold.val].min()
        assert t[fold.val].max() < t[fold.test].min()
        # the test block is about the last 20% of the subject's time line
        # (its first target follows the cut by half a gap plus one footprint, within one TR)
        first = 0.8 * total + guard_gap(samples) / 2 + samples.window_s + samples.delay_s
        assert first <= t[fold.test].min() <= first + 2.0


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_loso_never_trains_or_selects_on_the_held_out_subject(table):
    samples = TABLES[table]
    for fold in get_protocol("loso").folds(samples):
        s = samples.subjects.index(fold.subject)
        assert not np.any(samples.subject[fold.train] == s)
        assert not np.any(samples.subject[fold.val] == s)
        np.testing.assert_array_equal(fold.test, samples.of_subject(fold.subject))
        # every other subject contributes to both train and val
        others = set(range(len(samples.subjects))) - {s}
        assert set(samples.subject[fold.train]) == others
        assert set(samples.subject[fold.val]) == others


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_loso_calibrated_uses_only_a_first_block_of_the_new_subject(table):
    samples = TABLES[table]
    within = {f.subject: f for f in get_protocol("within").folds(samples)}
    for fold in get_protocol("loso_calibrated").folds(samples):
        s = samples.subjects.index(fold.subject)
        mine = fold.train[samples.subject[fold.train] == s]
        assert mine.size > 0
        assert np.all(samples.subject[fold.val] == s)
        assert np.all(samples.subject[fold.test] == s)
        others = np.flatnonzero(samples.subject != s)
        assert np.isin(others, fold.train).all()
        assert np.max(mine) < np.min(fold.val) < np.min(fold.test)
        assert within[fold.subject].test.size < fold.test.size  # 60% vs 20% of the time line


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_calibration_curve_points_share_one_test_block_and_grow_the_calibration(table):
    """By amount: the held-out subject's test block is the same for every amount, its train
    samples are the first `amount` seconds of its time line (none at 0), and selection (val)
    never sees it."""
    samples = TABLES[table]
    amounts = [0.0, 30.0, 60.0, 120.0]
    curves = {a: get_protocol("loso_calibrated", calibration_s=a).folds(samples) for a in amounts}
    for k, subject in enumerate(samples.subjects):
        s = samples.subjects.index(subject)
        folds = [curves[a][k] for a in amounts]
        for fold in folds[1:]:
            np.testing.assert_array_equal(fold.test, folds[0].test)
        offsets = np.zeros(len(samples.runs))
        total = 0.0
        for r in np.flatnonzero(samples.run_subject == s):
            offsets[r] = total
            total += samples.run_duration[r]
        mine_counts = []
        for amount, fold in zip(amounts, folds, strict=True):
            assert not np.any(samples.subject[fold.val] == s)
            assert np.all(samples.subject[fold.test] == s)
            mine = fold.train[samples.subject[fold.train] == s]
            assert np.all(offsets[samples.run[mine]] + samples.time[mine] <= amount)
            mine_counts.append(mine.size)
            others = fold.train[samples.subject[fold.train] != s]
            np.testing.assert_array_equal(others, folds[0].train)  # the same other subjects
        assert mine_counts[0] == 0 and mine_counts == sorted(mine_counts) and mine_counts[-1] > 0
    with pytest.raises(ConfigError, match="fewer than calibration_s=10000"):
        get_protocol("loso_calibrated", calibration_s=10_000).folds(samples)


def test_protocol_labels_carry_the_calibration_amount():
    from eeg2bold.protocols import label_amount_s, protocol_label

    assert protocol_label("loso") == "loso"
    assert protocol_label("loso_calibrated", {"calibration_fraction": 0.2}) == "loso_calibrated"
    label = protocol_label("loso_calibrated", {"calibration_s": 90.0})
    assert label == "loso_calibrated@1.5min" and label_amount_s(label) == 90.0
    assert label_amount_s("loso") is None


def test_options_and_errors():
    samples = TABLES["one-run"]
    with pytest.raises(ConfigError, match=r"unknown protocol 'loos' \(did you mean 'loso'\?\)"):
        get_protocol("loos")
    with pytest.raises(ConfigError, match="must be in"):
        get_protocol("within", val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ConfigError, match="needs at least 2 subjects"):
        get_protocol("loso").folds(make_table([[600.0]]))
    with pytest.raises(ConfigError, match="has no val samples"):
        get_protocol("within").folds(make_table([[90.0]]))
    wide = get_protocol("within", min_gap_s=60.0)
    assert wide.options()["min_gap_s"] == 60.0
    fold = wide.folds(samples)[0]
    assert _separated(samples, fold.train, fold.val, 60.0)


def test_sample_table_matches_the_window_reader(tmp_path, make_info, make_run):
    info = make_info(sfreq=50.0)
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info, seconds=120))
    ds.write_run(make_run(info, subject="sub-02", seconds=90))
    table = build_sample_table(ds, window_s=12.0, delay_s=3.0)
    reader = WindowReader(ds, window_s=12.0, delay_s=3.0)
    for i, key in enumerate(table.runs):
        np.testing.assert_array_equal(table.volume[table.run == i], reader.valid_volumes(key))
        batch = reader.read(key, table.volume[table.run == i][:3])
        starts = table.start_sample[table.run == i][:3]
        eeg = ds.read_run(key).eeg
        for j, s in enumerate(starts):
            np.testing.assert_array_equal(batch.eeg[j], eeg[:, s : s + reader.n_window])
    assert table.subjects == ("sub-01", "sub-02")
    np.testing.assert_allclose(table.run_duration, [120.0, 90.0])
    with pytest.raises(ConfigError, match=r"no run .* is long enough"):
        build_sample_table(ds, window_s=200.0)

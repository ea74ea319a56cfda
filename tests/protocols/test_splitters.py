"""Splitters: disjoint sets, guard gaps, no held-out subject in LOSO training, no held-out run
in leave_one_run_out training, and whole groups held out by grouped LOSO."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import numpy as np
import pytest

from eeg2bold.errors import ConfigError, Eeg2BoldWarning
from eeg2bold.protocols import (
    SampleTable,
    build_sample_table,
    get_protocol,
    guard_gap,
    protocol_label,
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
    if protocol == "leave_one_run_out":
        runs = np.bincount(samples.run_subject)
        if runs.max() < 2:
            with pytest.raises(ConfigError, match="at least 2 different run values"):
                splitter.folds(samples)
            return
        with pytest.warns(Eeg2BoldWarning) if runs.min() < 2 else contextlib.nullcontext():
            folds = splitter.folds(samples)
        expected = [
            s for s, n in zip(samples.subjects, runs, strict=True) if n > 1 for _ in range(n)
        ]
        assert [f.subject for f in folds] == expected
    else:
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


def _timeline(samples: SampleTable, subject: int) -> tuple[np.ndarray, float]:
    """Every sample's time on its subject's runs laid end to end, and that time line's length."""
    offsets = np.zeros(len(samples.runs))
    total = 0.0
    for r in np.flatnonzero(samples.run_subject == subject):
        offsets[r] = total
        total += samples.run_duration[r]
    return offsets[samples.run] + samples.time, total


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_within_blocks_are_in_time_order_of_one_subject(table):
    samples = TABLES[table]
    for fold in get_protocol("within").folds(samples):
        s = samples.subjects.index(fold.subject)
        for split in ("train", "val", "test"):
            assert np.all(samples.subject[fold.split(split)] == s)
        t, total = _timeline(samples, s)
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


def test_loso_can_select_on_whole_subjects_it_neither_trains_nor_tests_on():
    samples = TABLES["one-run"]  # 3 subjects
    folds = get_protocol("loso", val_subjects=1).folds(samples)
    n = len(samples.subjects)
    for fold in folds:
        s = samples.subjects.index(fold.subject)
        v = (s + 1) % n  # the next subject selects, on all its data
        np.testing.assert_array_equal(fold.val, samples.of_subject(samples.subjects[v]))
        np.testing.assert_array_equal(fold.test, samples.of_subject(fold.subject))
        rest = [o for o in range(n) if o not in (s, v)]
        np.testing.assert_array_equal(
            fold.train, np.flatnonzero(np.isin(samples.subject, rest))
        )  # the others train on all their data: no time block left out
    assert get_protocol("loso", val_subjects=1).options()["val_subjects"] == 1
    assert "val_subjects" not in get_protocol("loso").options()
    with pytest.raises(ConfigError, match="leaves no subject to train on"):
        get_protocol("loso", val_subjects=2).folds(samples)
    with pytest.raises(ConfigError, match="whole number"):
        get_protocol("loso", val_subjects=-1)


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


@pytest.mark.parametrize("protocol", ["within", "loso", "loso_calibrated"])
def test_a_common_footprint_keeps_the_same_volumes_whatever_the_window_and_delay(
    tmp_path, make_info, make_run, protocol
):
    """What a sweep relies on to rank configurations: under one footprint, every window and
    delay gets the same volumes in every split; without it, they do not."""
    info = make_info(sfreq=50.0)
    ds = create_dataset(tmp_path / "d.zarr", info)
    for s, seconds in enumerate([600, 520, 560]):
        ds.write_run(make_run(info, subject=f"sub-{s + 1:02d}", seconds=seconds, seed=s))
    settings = [(10.0, 0.0), (15.0, 4.0), (20.0, 6.0)]

    def volumes(footprint_s):
        out = []
        for window_s, delay_s in settings:
            table = build_sample_table(
                ds, window_s=window_s, delay_s=delay_s, footprint_s=footprint_s
            )
            folds = get_protocol(protocol).folds(table)
            keys = table.run * 10_000 + table.volume
            out.append([tuple(keys[f.split(n)]) for f in folds for n in ("train", "val", "test")])
        return out

    common = volumes(26.0)
    assert common[0] == common[1] == common[2]
    own = volumes(None)
    assert own[0] != own[2]
    with pytest.raises(ConfigError, match="shorter than window_s"):
        build_sample_table(ds, window_s=20.0, delay_s=6.0, footprint_s=25.0)


def _with_attrs(samples, **per_run):
    """The table with run attributes (one value per run for each keyword)."""
    attrs = [
        {"session": None, "provenance": {k: v[i] for k, v in per_run.items()}}
        for i in range(len(samples.runs))
    ]
    return dataclasses.replace(samples, run_attrs=tuple(attrs))


MULTI = make_table([[300.0, 420.0, 360.0], [600.0, 500.0], [700.0]])


def test_leave_one_run_out_tests_on_a_whole_run_it_never_trains_or_selects_on():
    with pytest.warns(Eeg2BoldWarning, match="1 subject.*single run have no fold: sub-03"):
        folds = get_protocol("leave_one_run_out").folds(MULTI)
    assert [(f.subject, f.held_out) for f in folds] == [
        ("sub-01", "run-1"),
        ("sub-01", "run-2"),
        ("sub-01", "run-3"),
        ("sub-02", "run-1"),
        ("sub-02", "run-2"),
    ]
    assert [f.index for f in folds] == list(range(5))
    assert folds[1].name == "leave_one_run_out/sub-01~run-2"
    for fold in folds:
        held = MULTI.runs.index((fold.subject, fold.held_out))
        np.testing.assert_array_equal(fold.test, np.flatnonzero(MULTI.run == held))
        s = MULTI.subjects.index(fold.subject)
        for split in ("train", "val"):
            idx = fold.split(split)
            assert not np.any(MULTI.run[idx] == held)
            assert np.all(MULTI.subject[idx] == s)  # within the subject
        # every other run of the subject trains; selection is the end of the last other run
        others = set(np.flatnonzero(MULTI.run_subject == s)) - {held}
        assert set(MULTI.run[fold.train]) == others
        last = max(others)
        assert set(MULTI.run[fold.val]) == {last}
        assert (
            MULTI.time[fold.val].min() > MULTI.time[fold.train[MULTI.run[fold.train] == last]].max()
        )


def test_leave_one_run_out_by_session_holds_out_every_run_of_a_session():
    samples = make_table([[300.0, 300.0, 300.0, 300.0], [400.0, 400.0]])
    samples = _with_attrs(samples, visit=["a", "a", "b", "b", "a", "b"])
    folds = get_protocol("leave_one_run_out", by="visit").folds(samples)
    assert [(f.subject, f.held_out) for f in folds] == [
        ("sub-01", "a"),
        ("sub-01", "b"),
        ("sub-02", "a"),
        ("sub-02", "b"),
    ]
    first = folds[0]
    assert set(samples.run[first.test]) == {0, 1}
    assert set(samples.run[first.train]) | set(samples.run[first.val]) == {2, 3}
    assert protocol_label("leave_one_run_out", {"by": "visit"}) == "leave_one_run_out@visit"
    assert protocol_label("leave_one_run_out", {"by": "run"}) == "leave_one_run_out"
    with pytest.raises(ConfigError, match=r"run sub-01/run-1 has no attribute 'session'"):
        get_protocol("leave_one_run_out", by="session").folds(samples)


@pytest.mark.parametrize("table", list(TABLES), ids=list(TABLES))
def test_within_val_position_first_selects_before_training_and_tests_the_same_block(table):
    """``val_position: first`` lays out val | train | test: val lies before training, as far
    from it (one guard gap) as test; the test block is the default layout's."""
    samples = TABLES[table]
    gap = guard_gap(samples)
    middle = {f.subject: f for f in get_protocol("within").folds(samples)}
    first = get_protocol("within", val_position="first").folds(samples)
    for fold in first:
        s = samples.subjects.index(fold.subject)
        t, _ = _timeline(samples, s)
        assert t[fold.val].max() < t[fold.train].min()
        assert t[fold.train].max() < t[fold.test].min()
        np.testing.assert_array_equal(fold.test, middle[fold.subject].test)
        # one inner boundary instead of two: val loses half a gap less
        assert fold.val.size >= middle[fold.subject].val.size
        assert _separated(samples, fold.val, fold.train, gap)
        assert _separated(samples, fold.train, fold.test, gap)
    folds = get_protocol("within_run", val_position="first").folds(MULTI)
    for fold in folds:
        for r in set(MULTI.run[fold.test]):
            val, train, test = (
                fold.split(x)[MULTI.run[fold.split(x)] == r] for x in ("val", "train", "test")
            )
            assert MULTI.time[val].max() < MULTI.time[train].min() < MULTI.time[test].min()
    # the default stays out of labels (and so out of config hashes); the other value is in
    assert "val_position" not in get_protocol("within").options()
    assert get_protocol("within", val_position="first").options()["val_position"] == "first"
    with pytest.raises(ConfigError, match="val_position must be one of middle, first"):
        get_protocol("within", val_position="last")


def test_within_run_cuts_every_split_from_inside_each_run():
    folds = get_protocol("within_run").folds(MULTI)
    gap = guard_gap(MULTI)
    assert [f.subject for f in folds] == list(MULTI.subjects)
    for fold in folds:
        s = MULTI.subjects.index(fold.subject)
        runs = set(np.flatnonzero(MULTI.run_subject == s))
        for split in ("train", "val", "test"):
            assert set(MULTI.run[fold.split(split)]) == runs  # every run in every split
        for r in runs:
            train, val, test = (
                fold.split(x)[MULTI.run[fold.split(x)] == r] for x in ("train", "val", "test")
            )
            assert MULTI.time[train].max() < MULTI.time[val].min() < MULTI.time[test].min()
            # the test block is the run's last 20 %
            first = 0.8 * MULTI.run_duration[r] + gap / 2 + MULTI.window_s + MULTI.delay_s
            assert first <= MULTI.time[test].min() <= first + 2.0
        assert _separated(MULTI, fold.train, fold.test, gap)


def test_grouped_loso_holds_out_whole_sites():
    samples = make_table([[300.0], [300.0, 300.0], [300.0], [300.0], [300.0]])
    sites = ["site-1", "site-2", "site-2", "site-1", "site-3", "site-1"]
    samples = _with_attrs(samples, site=sites)
    splitter = get_protocol("loso", group_by="site")
    folds = splitter.folds(samples)
    assert [f.subject for f in folds] == ["site-1", "site-2", "site-3"]
    assert splitter.options()["group_by"] == "site"
    assert protocol_label("loso", splitter.options()) == "loso@site"
    members = {"site-1": {0, 2, 4}, "site-2": {1}, "site-3": {3}}
    for fold in folds:
        assert set(samples.subject[fold.test]) == members[fold.subject]
        np.testing.assert_array_equal(
            fold.test, np.flatnonzero(np.isin(samples.subject, list(members[fold.subject])))
        )
        for split in ("train", "val"):
            assert not set(samples.subject[fold.split(split)]) & members[fold.subject]
        assert set(samples.subject[fold.train]) == set(range(5)) - members[fold.subject]


def test_grouped_loso_refuses_a_subject_in_two_groups_and_a_single_group():
    samples = make_table([[300.0, 300.0], [300.0]])
    with pytest.raises(ConfigError, match="sub-01 have runs in several groups"):
        get_protocol("loso", group_by="site").folds(_with_attrs(samples, site=["a", "b", "a"]))
    with pytest.raises(ConfigError, match="at least 2 values of 'site', the dataset has 1"):
        get_protocol("loso", group_by="site").folds(_with_attrs(samples, site=["a", "a", "a"]))
    with pytest.raises(ConfigError, match="no attribute 'scanner'"):
        get_protocol("loso", group_by="scanner").folds(_with_attrs(samples, site=["a", "a", "a"]))

"""Where a search starts and how it samples: the defaults first, warm starts, a TPE scaled to
the budget, one owner for the epoch budget, ASHA that never cuts the reference or a finished
trial. No Ray cluster: the searcher and the scheduler are driven directly."""

from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.launch.config import parse_study_config, validate_study
from eeg2bold.launch.search import make_sampler, start_points, startup_trials
from eeg2bold.search_spaces import default_point, define_space, space_function

optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- the sampler -------------------------------------------------------------------------------
def test_startup_trials_scale_with_the_budget():
    assert [startup_trials(n) for n in (1, 8, 16, 40, 64, 500)] == [3, 3, 4, 10, 10, 10]


def _suggestions(seed: int, n: int = 8) -> list[dict]:
    sampler = make_sampler(num_samples=n, seed=seed, concurrent=1)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    out = []
    for _ in range(n):
        trial = study.ask()
        define_space(trial, model="beira")
        out.append(dict(trial.params))
        study.tell(trial, -abs(trial.params["train.lr"] - 1e-3))  # a smooth made-up score
    return out


def test_equal_seeds_give_equal_suggestions_and_others_differ():
    first, again, other = _suggestions(3), _suggestions(3), _suggestions(4)
    assert first == again
    assert first != other


def test_the_sampler_models_after_its_startup_and_lies_for_concurrent_trials():
    sampler = make_sampler(num_samples=8, seed=0, concurrent=4)
    assert sampler._n_startup_trials == 3
    assert sampler._multivariate and sampler._group and sampler._constant_liar
    assert not make_sampler(num_samples=8, seed=0, concurrent=1)._constant_liar


# -- the epoch budget --------------------------------------------------------------------------
def _config(**overrides):
    return parse_study_config({"name": "b", "dataset": "/nowhere.zarr", **overrides})


def test_the_epoch_budget_has_one_owner_and_asha_rungs_follow_it():
    budget = _config().epoch_budget()
    assert (budget.max_epochs, budget.grace_period, budget.rungs) == (30, 4, (4, 12))
    assert budget.source == "train.epochs default"
    assert _config().train_settings()["epochs"] == 30
    fixed = _config(search={"train.epochs": 12}).epoch_budget()
    assert (fixed.max_epochs, fixed.grace_period, fixed.rungs) == (12, 4, (4,))  # 12: the end
    assert fixed.source == "search.train.epochs"
    # a long warm-up pushes the first rung back; a long budget spreads the rungs
    late = _config(search={"train.warmup_epochs": 5}).epoch_budget()
    assert late.grace_period == 8
    long = _config(scheduler={"max_epochs": 200}).epoch_budget()
    assert long.grace_period == 23 and long.rungs == (23, 69)
    assert _config(scheduler={"type": "fifo"}).epoch_budget().rungs == ()
    explicit = _config(scheduler={"grace_period": 2, "max_epochs": 20}).epoch_budget()
    assert explicit.rungs == (2, 6, 18)


def test_two_owners_of_the_epoch_budget_are_refused():
    with pytest.raises(ConfigError, match=r"scheduler.max_epochs \(20\) and search.train.epochs"):
        _config(scheduler={"max_epochs": 20}, search={"train.epochs": 30})
    with pytest.raises(ConfigError, match="the epoch budget is not searched"):
        _config(search={"train.epochs": [10, 20]})
    assert _config(scheduler={"max_epochs": 10}, search={"train.epochs": 10}).epoch_budget()


# -- the searcher: defaults first, then warm starts, once ------------------------------------
def _searcher(storage, name, start):
    from eeg2bold.launch.tune.arms import _OptunaSearch

    searcher = _OptunaSearch(
        space=space_function(model="ridge"),
        metric="val_r",
        mode="max",
        sampler=make_sampler(num_samples=8, seed=0, concurrent=1),
        storage=storage,
        study_name=name,
        results="/nowhere",
        study_attrs={},
        start=[(p.params, p.user_attrs()) for p in start],
    )
    return searcher


def test_the_defaults_are_trial_0_then_warm_starts_and_a_resume_adds_none(tmp_path):
    from eeg2bold.search_spaces import project_point

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    warm = project_point({"model.lag_s": 8.0, "model.bin_s": 1.0}, model="ridge", source="w")
    start = [default_point("ridge"), warm]
    searcher = _searcher(storage, "arm", start)
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    study = optuna.load_study(study_name="arm", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert [c["origin"] for c in configs] == ["defaults", "warm_start", "sampled"]
    assert trials[0].params == start[0].params and trials[0].user_attrs["origin"] == "defaults"
    assert trials[1].params == warm.params and trials[1].user_attrs["origin_source"] == "w"
    assert configs[0]["sample"]["model_params"]["lag_s"] == 20.0  # ridge's default
    # a resumed sweep whose Tuner state is gone makes a new searcher on the same study:
    # the defaults are not queued twice
    again = _searcher(storage, "arm", start)
    again.suggest("t9")
    origins = [t.user_attrs.get("origin") for t in study.get_trials(deepcopy=False)]
    assert origins.count("defaults") == 1 and origins.count("warm_start") == 1


def test_a_restored_searcher_adopts_the_trial_left_running_and_a_live_one_stops_looking(
    tmp_path, monkeypatch
):
    """A trial asked after Tune's last checkpoint is RUNNING in the study but unknown to the
    restored searcher: its next suggestion adopts it (the same Optuna trial and identity, no
    extra trial). A searcher that has looked once and found none reads no more for it."""
    import pickle

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    searcher = _searcher(storage, "arm", [default_point("ridge")])
    looks = []
    get_trials = optuna.study.Study.get_trials

    def counted(self, *args, **kwargs):
        if kwargs.get("states") == (optuna.trial.TrialState.RUNNING,):
            looks.append(1)
        return get_trials(self, *args, **kwargs)

    monkeypatch.setattr(optuna.study.Study, "get_trials", counted)
    searcher.suggest("t0")
    checkpoint = pickle.dumps(searcher)  # Tune saves its state here
    searcher.suggest("t1")  # asked after the checkpoint; then the driver is killed
    searcher.suggest("t2")
    assert len(looks) == 1  # the first suggestion looked, found none; the next two did not
    searcher.on_trial_complete("t2", {"val_r": 0.1, "epoch": 1, "finished": True})
    restored = pickle.loads(checkpoint)
    assert restored.suggest("t7")["trial"] == "t1"  # t1 adopted, and t2 (finished) is not
    trials = optuna.load_study(study_name="arm", storage=storage).get_trials(deepcopy=False)
    assert [t.user_attrs["trial_id"] for t in trials] == ["t0", "t1", "t2"]


def _earlier_sweep(tmp_path, values):
    """A sweep folder as `eeg2bold sweep` leaves it: sweep.json and an Optuna study."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    config = {"name": "earlier", "dataset": "/nowhere.zarr", "storage": {"results": str(folder)}}
    arm = {"protocol": "within", "model": "ridge", "study_name": "earlier.within.ridge.x"}
    (folder / "sweep.json").write_text(
        json.dumps({"config": config, "plan": {"arms": [arm], "sweep_id": "x"}})
    )
    study = optuna.create_study(
        study_name=arm["study_name"],
        storage=f"sqlite:///{folder / 'optuna.db'}",
        direction="maximize",
    )
    for i, (lag, value, finished) in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"model.lag_s": lag},
                distributions={"model.lag_s": optuna.distributions.FloatDistribution(4.0, 20.0)},
                value=value,
                user_attrs={"finished": finished, "trial_id": f"old{i}"},
            )
        )
    return folder


def test_a_warm_start_enqueues_the_earlier_arms_best(tmp_path):
    folder = _earlier_sweep(
        tmp_path,
        # lag, val r, ran to the end: those that ran to the end rank first (as `best` ranks)
        [(6.0, 0.30, True), (9.0, 0.90, False), (12.0, 0.50, True), (15.0, 0.10, True)],
    )
    config = _config(warm_start={"sweep": str(folder), "top_k": 3})
    said: list[str] = []
    points = start_points(
        model="ridge",
        protocol_label="within",
        constraints={"model.lag_s": {"low": 7.0, "high": 20.0}},
        warm_start=config.warm_start,
        echo=said.append,
    )
    assert [p.origin for p in points] == ["defaults", *["warm_start"] * 3]
    assert [p.params["model.lag_s"] for p in points] == [20.0, 12.0, 7.0, 15.0]
    assert ["old2" in points[1].source, "old0" in points[2].source] == [True, True]
    assert any("model.lag_s 6.0 -> 7.0" in line for line in said)  # clipped, and said
    # a configuration equal to one already queued is queued once
    same = start_points(
        model="ridge",
        protocol_label="within",
        constraints={"model.lag_s": {"low": 4.0, "high": 12.0}},
        warm_start=config.warm_start,
    )
    assert [p.params["model.lag_s"] for p in same] == [12.0, 6.0]  # old2, old3 became 12
    # an arm the earlier sweep did not have: the defaults only
    other = start_points(
        model="ridge", protocol_label="loso", constraints={}, warm_start=config.warm_start
    )
    assert len(other) == 1


def test_a_warm_start_from_nowhere_fails_before_anything_runs(tmp_path):
    config = _config(warm_start={"sweep": str(tmp_path / "none")}, models=["ridge"])
    with pytest.raises(ConfigError, match=r"warm_start.sweep: .*none: not a run folder"):
        validate_study(config)
    assert _config().with_warm_start(str(tmp_path), top_k=5).warm_start.top_k == 5


# -- ASHA: the reference is never cut, a finished trial stays in later rungs ------------------
def _asha():
    from eeg2bold.launch.tune.arms import _ArmASHA

    return _ArmASHA(
        time_attr="epoch",
        metric="val_r",
        mode="max",
        max_t=9,
        grace_period=1,
        reduction_factor=3,
        stop_last_trials=False,
    )


def _trial(tid, origin="sampled"):
    return SimpleNamespace(trial_id=tid, config={"origin": origin})


def test_asha_never_stops_the_defaults_trial():
    asha = _asha()
    good, defaults = _trial("good"), _trial("defaults", "defaults")
    for t in (good, defaults):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, {"epoch": 1, "val_r": 0.5}) == asha.CONTINUE
    assert asha.on_trial_result(None, defaults, {"epoch": 1, "val_r": 0.1}) == asha.CONTINUE
    bad = _trial("bad")
    asha.on_trial_add(None, bad)
    assert asha.on_trial_result(None, bad, {"epoch": 1, "val_r": 0.1}) == asha.STOP


def test_a_trial_finished_by_patience_is_compared_at_every_later_rung():
    """Trial a's folds all stopped by patience after epoch 2 at val r 0.6 (its best epoch's):
    at the rung of epoch 3, trial b's 0.4 is compared with a's 0.6 (and c's), not left alone."""
    asha = _asha()
    a, b, c = _trial("a"), _trial("b"), _trial("c")
    for t in (a, b, c):
        asha.on_trial_add(None, t)
    for t, v in ((a, 0.5), (b, 0.3), (c, 0.45)):
        asha.on_trial_result(None, t, {"epoch": 1, "val_r": v})
    asha.on_trial_complete(None, a, {"epoch": 2, "val_r": 0.6, "finished": True})
    rung3 = dict(asha._brackets[0]._rungs)[3]
    assert rung3 == {"a": 0.6}
    assert asha.on_trial_result(None, c, {"epoch": 3, "val_r": 0.7}) == asha.CONTINUE
    assert asha.on_trial_result(None, b, {"epoch": 3, "val_r": 0.4}) == asha.STOP
    # a trial stopped by the scheduler (no "finished") is not carried forward
    asha.on_trial_complete(None, b, {"epoch": 3, "val_r": 0.4})
    assert "b" not in dict(asha._brackets[0]._rungs)[9]


def test_asha_never_cuts_a_trial_at_its_last_epoch():
    """Ray places a rung at max_t: a trial stopped there has run every epoch and would lose
    its final (test) scores."""
    asha = _asha()
    a, b = _trial("a"), _trial("b")
    for t in (a, b):
        asha.on_trial_add(None, t)
    asha.on_trial_result(None, a, {"epoch": 9, "val_r": 0.9})
    assert asha.on_trial_result(None, b, {"epoch": 9, "val_r": 0.1}) == asha.CONTINUE


def _arm_trial(tid, arm):
    return SimpleNamespace(trial_id=tid, config={"origin": "sampled", "arm": arm})


def test_asha_never_compares_trials_of_different_arms():
    """One Tuner runs every arm, each arm with its own rungs: a beira trial at 0.1 is cut
    only by other beira trials, never by a ridge trial's 0.5 (a shared ASHA would cut it)."""
    from eeg2bold.launch.tune.arms import _ArmsScheduler

    both = _ArmsScheduler({"within/ridge": _asha(), "within/beira": _asha()})
    both.set_search_properties("val_r", "max")
    shared = _asha()
    ridge, beira = _arm_trial("r", "within/ridge"), _arm_trial("b", "within/beira")
    for scheduler in (both, shared):
        for t in (ridge, beira):
            scheduler.on_trial_add(None, t)
        assert scheduler.on_trial_result(None, ridge, {"epoch": 1, "val_r": 0.5}) == "CONTINUE"
    assert shared.on_trial_result(None, beira, {"epoch": 1, "val_r": 0.1}) == "STOP"
    assert both.on_trial_result(None, beira, {"epoch": 1, "val_r": 0.1}) == "CONTINUE"
    second = _arm_trial("b2", "within/beira")
    both.on_trial_add(None, second)
    assert both.on_trial_result(None, second, {"epoch": 1, "val_r": 0.05}) == "STOP"


def test_the_sweep_searcher_gives_each_arm_exactly_its_trials_side_by_side(tmp_path):
    """Each arm keeps its own study and count; with room for two trials, the two arms run
    one each (the arm with fewer in flight goes next); then FINISHED."""
    from ray.tune.search import Searcher

    from eeg2bold.launch.tune.arms import _ArmsSearch

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    arms = {k: _searcher(storage, k, [default_point("ridge")]) for k in ("a", "b")}
    search = _ArmsSearch(arms, {"a": 3, "b": 2})
    first = [search.suggest(f"t{i}") for i in range(2)]
    assert [c["arm"] for c in first] == ["a", "b"]  # side by side, not a after b
    assert [c["origin"] for c in first] == ["defaults", "defaults"]
    search.on_trial_complete("t1", {"val_r": 0.2, "epoch": 1, "finished": True})
    rest = [search.suggest(f"t{i}") for i in range(2, 5)]
    assert [c["arm"] for c in rest] == ["b", "a", "a"]
    assert search.suggest("t5") == Searcher.FINISHED
    counts = {k: len(optuna.load_study(study_name=k, storage=storage).trials) for k in arms}
    assert counts == {"a": 3, "b": 2}
    # its state survives Tune's save and restore (a resumed sweep)
    search.save(str(tmp_path / "state.pkl"))
    again = _ArmsSearch({}, {})
    again.restore(str(tmp_path / "state.pkl"))
    assert again.left == {"a": 0, "b": 0} and again.owner["t4"] == "a"


def test_progress_lines_say_undefined_not_minus_one():
    """Before any fold has a defined val r the metric is tanh(-inf) = -1: say so in words."""
    from eeg2bold.launch.tune.progress import _Progress

    said: list[str] = []
    progress = _Progress("arm", 2, said.append, "/nowhere")
    trial = SimpleNamespace(trial_id="t1", config={"trial": "t1"}, last_result={})
    progress.on_trial_result(0, [], trial, {"val_r": -1.0, "epoch": 1})
    progress.on_trial_result(0, [], trial, {"val_r": 0.25, "epoch": 2})
    trial.last_result = {"val_r": float("nan"), "finished": True}
    progress.on_trial_complete(0, [], trial)
    assert "epoch 1: val r undefined" in said[0] and "epoch 2: val r 0.250" in said[1]
    assert "val r undefined" in said[2] and "-1.000" not in "".join(said)

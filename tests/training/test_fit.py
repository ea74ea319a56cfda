"""The fit loop: exact resume, NaN handling, early stopping, safe checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from eeg2bold.errors import ConfigError
from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.storage import open_dataset
from eeg2bold.training.checkpoint import load, save_atomic
from eeg2bold.training.data import FoldData, SampleConfig
from eeg2bold.training.fit import FoldTrainer, NonFiniteLossError, TrainConfig


@pytest.fixture(scope="module")
def fold_data(sim_store):
    store = open_dataset(sim_store)
    cfg = SampleConfig(window_s=8.0, delay_s=2.0)
    samples = build_sample_table(store, window_s=8.0, delay_s=2.0)
    fold = get_protocol("within").folds(samples)[0]
    return FoldData(store, samples, fold, config=cfg)


def _trainer(data, model, **train):
    defaults = {"epochs": 4, "batch_size": 16, "lr": 1e-2, "patience": 0, "seed": 3}
    return FoldTrainer(data=data, model_name=model, config=TrainConfig(**{**defaults, **train}))


def test_resume_is_exact(fold_data, tiny_model, tmp_path):
    straight = _trainer(fold_data, tiny_model)
    for _ in range(4):
        straight.step()

    first = _trainer(fold_data, tiny_model)
    first.step()
    first.step()
    path = save_atomic(first.state_dict(), tmp_path / "state.pt")
    torch.manual_seed(12345)  # disturb the global stream: resume must restore it
    resumed = _trainer(fold_data, tiny_model)
    resumed.load_state_dict(load(path))
    resumed.step()
    resumed.step()

    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [h["val_mean"] for h in straight.history] == [h["val_mean"] for h in resumed.history]
    assert resumed.done and resumed.epoch == 4


def test_checkpoints_load_with_weights_only(fold_data, tiny_model, tmp_path):
    trainer = _trainer(fold_data, tiny_model)
    trainer.step()
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # raises if anything needs unpickling
    assert state["epoch"] == 1
    (tmp_path / "evil.pt").write_bytes(b"not a checkpoint")
    from eeg2bold.errors import Eeg2BoldError

    with pytest.raises(Eeg2BoldError, match=r"evil\.pt: not a readable eeg2bold checkpoint"):
        load(tmp_path / "evil.pt")
    # a pickle with code in it is refused in one line that never suggests the unsafe path
    # (PyTorch's own message advises weights_only=False: issue 26, item 12)
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "payload": io.BytesIO}, buffer)
    (tmp_path / "pickled.pt").write_bytes(buffer.getvalue())
    with pytest.raises(Eeg2BoldError) as err:
        load(tmp_path / "pickled.pt")
    text = str(err.value)
    assert "\n" not in text and "weights_only" not in text and "never unpickles" in text
    assert "_io.BytesIO" in text


def test_nan_loss_stops_with_a_clear_error(fold_data, tiny_model):
    trainer = FoldTrainer(
        data=fold_data,
        model_name=tiny_model,
        model_params={"explode_after": 3},
        config=TrainConfig(epochs=2, batch_size=16),
    )
    with pytest.raises(
        NonFiniteLossError, match=r"within/sub-01: non-finite training loss \(nan\)"
    ):
        trainer.step()
    assert trainer.best_score == -np.inf  # nothing was scored


def test_early_stopping_on_val_r(fold_data, tiny_model):
    trainer = _trainer(fold_data, tiny_model, epochs=50, lr=1e-9, patience=2, warmup_epochs=0)
    reports = []
    while not trainer.done:
        reports.append(trainer.step())
    assert len(reports) == 3  # best at epoch 1, then two epochs without gain
    assert reports[0].improved and not reports[1].improved and reports[-1].stop
    final = trainer.finish()
    assert final["val"].mean == pytest.approx(reports[0].val.mean, abs=1e-6)


def test_learning_improves_held_out_test_r(fold_data, tiny_model):
    """Scored on test, the split nothing selected on (val picked the epoch)."""
    trainer = _trainer(fold_data, tiny_model, epochs=15, lr=3e-2)
    trainer.step()
    first = trainer.evaluate("test").mean
    while not trainer.done:
        trainer.step()
    final = trainer.finish()
    assert final["test"].mean > max(first + 0.15, 0.15)  # measured: -0.03 -> 0.24
    assert final["test"].n == fold_data.fold.test.size
    assert np.isfinite(final["test"].r).all()


def test_finish_scores_and_the_prediction_files_share_one_pass_over_val_and_test(
    fold_data, tiny_model, monkeypatch
):
    from eeg2bold.training.outputs import prediction_arrays

    trainer = _trainer(fold_data, tiny_model, epochs=2)
    while not trainer.done:
        trainer.step()
    calls: list[int] = []
    predict = trainer.predict
    monkeypatch.setattr(trainer, "predict", lambda idx: calls.append(len(idx)) or predict(idx))
    final = trainer.finish()
    arrays = prediction_arrays(trainer)
    # one inference per contiguous stretch of val and of test, however many readers
    stretches = [fold_data.segments(fold_data.fold.split(s)) for s in ("val", "test")]
    assert sorted(calls) == sorted(seg.size for segs in stretches for seg in segs)
    # what was kept is what a fresh pass over the best weights gives
    trainer._final_lines = {}
    fresh = trainer.predictions("test")
    np.testing.assert_array_equal(arrays["test_pred"], fresh["pred"])
    assert final["test"].n == arrays["test_truth"].shape[1]


@pytest.mark.parametrize(("amp", "expected"), [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_bf16_autocast_runs_the_model_in_bf16_and_keeps_scores_in_float32(
    fold_data, tiny_model, amp, expected
):
    """The autocast path of CUDA runs on the CPU too (amp=bf16): the model's layers compute in
    bf16, weights, loss and scores stay float32, and learning still works."""
    trainer = _trainer(fold_data, tiny_model, epochs=15, lr=3e-2, amp=amp, device="cpu")
    seen: list[torch.dtype] = []
    trainer.model.spatial.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    first = trainer.step()
    first_test = trainer.evaluate("test").mean
    assert set(seen) == {expected}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert np.isfinite(first.train_loss)
    while not trainer.done:
        trainer.step()
    final = trainer.finish()
    assert np.isfinite(final["test"].r).all()
    assert final["test"].mean > max(first_test + 0.15, 0.15)  # held out: learning, not selection


def test_auto_precision_is_float32_on_the_cpu(fold_data, tiny_model):
    trainer = _trainer(fold_data, tiny_model, epochs=1, device="cpu")
    assert trainer.config.amp == "auto" and not trainer.autocast


@pytest.mark.parametrize("text", ["off", "bf16", "auto"])
def test_every_amp_setting_is_accepted_as_typed(text):
    """YAML reads a bare `off` as false: `--set amp=off` and `amp: off` in a study config must
    still mean float32, not a refused setting."""
    from eeg2bold.training.config import build_config

    assert build_config(model="beira", sets={"amp": text}).train.amp == text
    with pytest.raises(ConfigError, match="amp"):
        build_config(model="beira", sets={"amp": "on"})


def test_a_constant_prediction_scores_nan_with_a_warning(fold_data, tiny_model, monkeypatch):
    """An undefined r is NaN, said in a warning, and makes the split's mean NaN: it can never
    win early stopping or rank (it was 0.000 before)."""
    from eeg2bold.training.fit import UndefinedScoreWarning

    trainer = _trainer(fold_data, tiny_model)
    real = trainer.predict
    monkeypatch.setattr(trainer, "predict", lambda seg: np.zeros_like(real(seg)))
    with pytest.warns(UndefinedScoreWarning, match="r is undefined on val for"):
        score = trainer.evaluate("val")
    assert np.isnan(score.r).all() and np.isnan(score.mean)
    assert score.undefined == list(range(len(fold_data.outputs)))
    with pytest.warns(UndefinedScoreWarning):
        report = trainer.step()
    assert not report.improved and trainer.best_score == -np.inf

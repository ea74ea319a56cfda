"""The contract every registered model passes; adding a model needs no new test code here."""

from __future__ import annotations

import io
import pkgutil

import numpy as np
import optuna
import pytest
import torch

import eeg2bold.models as models_pkg
from eeg2bold.errors import ConfigError
from eeg2bold.models import (
    BoldModel,
    DataSpec,
    TrainingBatch,
    build_model,
    get_model_class,
    make_params,
    model_names,
)
from eeg2bold.training.seed import seed_everything

# Subjects that differ little (no subject-private sources, the earlier coupling jitter):
# these tests are about learning, not about generalisation to unseen subjects.
EASY = {"private_sources": 0, "coupling_jitter": 0.5}

SPECS = [
    DataSpec(n_channels=8, n_rois=3, sfreq=100.0, window_s=8.0, n_out=1),
    DataSpec(n_channels=32, n_rois=8, sfreq=250.0, window_s=10.0, n_out=1),
    DataSpec(n_channels=5, n_rois=1, sfreq=128.0, window_s=20.0, n_out=10),
]
SMALL = DataSpec(n_channels=6, n_rois=2, sfreq=100.0, window_s=8.0, n_out=1)


def _eeg(spec: DataSpec, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.n_channels, spec.n_times, generator=g)


def _fit_if_closed_form(model: BoldModel, spec: DataSpec) -> None:
    if model.closed_form:
        g = torch.Generator().manual_seed(1)
        batches = [
            TrainingBatch(
                eeg=torch.randn(16, spec.n_channels, spec.n_times, generator=g),
                bold=torch.randn(16, spec.n_rois, spec.n_out, generator=g),
                segment=torch.full((16,), i),
            )
            for i in range(3)
        ]
        model.fit_closed_form(batches)


def test_registry_is_complete():
    """Every model class defined in a module of ``eeg2bold.models`` is registered (a module
    missing from the package's imports, or a class without ``@register_model``, fails here),
    read from the modules themselves rather than from a list kept beside the registry."""
    import importlib
    import inspect

    modules = {m.name for m in pkgutil.iter_modules(models_pkg.__path__)}
    defined = set()
    for module_name in modules - {"base"}:
        module = importlib.import_module(f"{models_pkg.__name__}.{module_name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BoldModel) and cls.__module__ == module.__name__:
                defined.add(cls)
    assert defined and {get_model_class(n) for n in model_names()} == defined
    for name in model_names():
        cls = get_model_class(name)
        assert issubclass(cls, BoldModel)
        assert cls.name == name
        assert cls.__module__.rsplit(".", 1)[-1] in modules  # one module per model
        assert cls.__doc__, f"{name} needs a docstring saying why it exists"


def test_unknown_model_and_hyperparameter_errors():
    with pytest.raises(ConfigError, match=r"unknown model 'biera' \(did you mean 'beira'\?\)"):
        get_model_class("biera")
    name = model_names()[0]
    with pytest.raises(ConfigError, match="has no hyperparameter 'not_a_param'"):
        make_params(name, {"not_a_param": 1})


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"C{s.n_channels}R{s.n_rois}o{s.n_out}")
def test_output_shape(name, spec):
    seed_everything(0)
    model = build_model(name, spec)
    _fit_if_closed_form(model, spec)
    model.eval()
    with torch.no_grad():
        out = model(_eeg(spec))
    assert out.shape == (3, spec.n_rois, spec.n_out)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", model_names())
def test_gradients_reach_every_trainable_parameter(name):
    seed_everything(0)
    model = build_model(name, SMALL)
    if model.closed_form:
        pytest.skip("closed-form model: fitted without gradients (see test_closed_form_fit)")
    model.train()
    bold = torch.randn(3, SMALL.n_rois, SMALL.n_out)
    out = model.training_outputs(_eeg(SMALL), bold)
    loss = out.pred.square().mean()
    for emb in (out.eeg_embedding, out.bold_embedding):
        if emb is not None:
            loss = loss + emb.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    for n, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", model_names())
def test_same_seed_same_model_other_seed_different(name):
    def outputs(seed: int) -> torch.Tensor:
        seed_everything(seed)
        model = build_model(name, SMALL)
        _fit_if_closed_form(model, SMALL)
        model.eval()
        with torch.no_grad():
            return model(_eeg(SMALL))

    a, b = outputs(0), outputs(0)
    assert torch.equal(a, b)
    if not get_model_class(name).closed_form:  # ridge is deterministic by construction
        assert not torch.equal(a, outputs(1))


@pytest.mark.parametrize("name", model_names())
def test_save_load_round_trip(name):
    seed_everything(0)
    model = build_model(name, SMALL)
    _fit_if_closed_form(model, SMALL)
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    seed_everything(99)
    fresh = build_model(name, SMALL)
    fresh.load_state_dict(state)
    fresh.eval()
    x = _eeg(SMALL)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_input_gives_finite_output(name, value):
    seed_everything(0)
    model = build_model(name, SMALL)
    _fit_if_closed_form(model, SMALL)
    eeg = torch.full((2, SMALL.n_channels, SMALL.n_times), value)
    model.train()
    out = model.training_outputs(eeg, torch.zeros(2, SMALL.n_rois, SMALL.n_out))
    assert torch.isfinite(out.pred).all()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(eeg)).all()


@pytest.mark.parametrize("name", model_names())
def test_search_space_samples_build(name):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        params = get_model_class(name).search_space(trial)
        model = build_model(name, SMALL, params)
        _fit_if_closed_form(model, SMALL)
        model.eval()
        with torch.no_grad():
            assert model(_eeg(SMALL)).shape == (3, SMALL.n_rois, SMALL.n_out)
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name", [n for n in model_names() if get_model_class(n).closed_form])
def test_closed_form_fit_recovers_a_linear_band_power_target(name):
    """A target that is a known function of band power must be predicted well."""
    seed_everything(0)
    spec = SMALL
    rng = np.random.default_rng(0)
    n = 120
    t = np.arange(spec.n_times) / spec.sfreq
    amp = rng.uniform(0.2, 3.0, size=n)
    alpha = amp[:, None] * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6.28, size=(n, 1)))
    eeg = rng.normal(size=(n, spec.n_channels, spec.n_times)) * 0.3
    eeg[:, 0] += alpha
    target = np.log(amp**2)[:, None, None].repeat(spec.n_rois, axis=1)
    batches = [
        TrainingBatch(
            eeg=torch.tensor(eeg[i : i + 40], dtype=torch.float32),
            bold=torch.tensor(target[i : i + 40], dtype=torch.float32),
            segment=torch.full((40,), i // 40),
        )
        for i in range(0, 80, 40)
    ]
    model = build_model(name, spec)
    model.fit_closed_form(batches)
    model.eval()
    with torch.no_grad():
        pred = model(torch.tensor(eeg[80:], dtype=torch.float32)).numpy()
    r = np.corrcoef(pred[:, 0, 0], target[80:, 0, 0])[0, 1]
    assert r > 0.8


@pytest.fixture(scope="module")
def pairing_store(tmp_path_factory):
    """4 simulated subjects × 8 min, 8 channels at 100 Hz, 3 ROIs."""
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store
    from eeg2bold.storage import open_dataset

    out = tmp_path_factory.mktemp("pairing") / "sim.zarr"
    config = SimulationConfig(subjects=4, minutes=8, channels=8, sfreq=100, rois=3, seed=3, **EASY)
    simulate_to_store(out, config, progress=False)
    return open_dataset(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", model_names())
def test_time_shuffled_pairs_stay_at_chance_and_true_pairs_beat_them(name, pairing_store):
    """The shuffled-pairs control, for every model: trained (and epoch-selected) on EEG/BOLD
    pairs shuffled in time, a model's held-out test r is near chance (mean of 2 LOSO folds ×
    2 shuffles, so a random sign averages out); the same budget on the true pairs beats it."""
    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.training.config import build_config
    from eeg2bold.training.data import FoldData
    from eeg2bold.training.fit import FoldTrainer
    from eeg2bold.training.metrics import fisher_mean

    sets = {"window_s": "10"}
    if not get_model_class(name).closed_form:
        sets |= {"epochs": "6", "steps_per_epoch": "15", "lr": "5e-3", "patience": "0"}
    config = build_config(model=name, protocol="loso", sets=sets)
    samples = build_sample_table(pairing_store, window_s=10.0, delay_s=0.0)
    scores: dict[str, list[np.ndarray]] = {"true": [], "shuffled": []}
    for f, fold in enumerate(get_protocol("loso").folds(samples)[:2]):
        data = FoldData(pairing_store, samples, fold, config=config.data)
        true = data.targets.clone()
        for kind, seed in (("true", 0), ("shuffled", 1), ("shuffled", 2)):
            data.targets[:] = true
            if kind == "shuffled":  # train and val lose their pairing; test keeps it
                rng = np.random.default_rng(seed + 10 * f)
                for split in (fold.train, fold.val):
                    idx = torch.as_tensor(split)
                    data.targets[idx] = true[idx[torch.as_tensor(rng.permutation(split.size))]]
            trainer = FoldTrainer(
                data=data, model_name=name, model_params=config.model_params, config=config.train
            )
            while not trainer.done:
                trainer.step()
            scores[kind].append(trainer.finish()["test"].r)
    shuffled = float(fisher_mean(np.asarray(scores["shuffled"])))
    true_r = float(fisher_mean(np.asarray(scores["true"])))
    assert abs(shuffled) < 0.2, f"{name}: shuffled pairs give test r {shuffled:.3f}"
    assert true_r > shuffled + 0.2, f"{name}: true {true_r:.3f} vs shuffled {shuffled:.3f}"

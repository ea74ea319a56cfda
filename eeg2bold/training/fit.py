"""The fit loop of one fold, stepped one epoch at a time (so a sweep scheduler can stop it).

AdamW with warm-up + cosine (or constant) learning rate, gradient clipping, bf16 autocast on
CUDA, early stopping on the validation r, and exact resume: the state (model, optimiser,
epoch, best weights, random streams) round-trips through ``torch.save`` /
``torch.load(weights_only=True)``. A non-finite loss stops the fit with
:class:`NonFiniteLossError`; no NaN ever becomes a score.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from eeg2bold.errors import Eeg2BoldError, Eeg2BoldWarning
from eeg2bold.models import BoldModel, TrainingBatch, build_model
from eeg2bold.models.base import ClosedFormModel
from eeg2bold.strict_config import StrictConfig
from eeg2bold.training.data import FoldData
from eeg2bold.training.losses import LossWeights, total_loss
from eeg2bold.training.metrics import combine_segments, fisher_mean, pearson_r, stitch
from eeg2bold.training.seed import seed_everything
from eeg2bold.training.streaming import block_order


class NonFiniteLossError(Eeg2BoldError):
    """The training loss became NaN or infinite; the fit cannot produce a meaningful score."""


class TrainConfig(StrictConfig):
    """Optimisation settings of one fit (searchable: lr, weight_decay, batch_size, loss)."""

    epochs: int = Field(30, ge=1, le=10_000, description="Maximum number of epochs.")
    batch_size: int = Field(32, ge=2, le=4096, description="Training windows per step.")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(1e-2, ge=0, le=1.0, description="AdamW weight decay.")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    patience: int = Field(
        8, ge=0, description="Stop after this many epochs without a better val r (0: never)."
    )
    min_delta: float = Field(1e-4, ge=0, description="Smallest val r gain that counts.")
    grad_clip: float = Field(1.0, ge=0, description="Max gradient norm (0: no clipping).")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Steps per epoch (default: one pass over the training windows)."
    )
    eval_batch_size: int = Field(256, ge=1, description="Windows per evaluation batch.")
    loss: LossWeights = Field(default_factory=LossWeights, description="Loss weights.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Training device.")
    amp: Literal["auto", "bf16", "off"] = Field(
        "auto",
        description="Mixed precision: auto = bf16 autocast on CUDA, none elsewhere; bf16 = "
        "bf16 autocast on any device (CPU too); off = float32.",
    )
    seed: int = Field(0, ge=0, description="Seed of initial weights and data order.")
    shuffle: Literal["auto", "global", "blocks"] = Field(
        "auto",
        description="Training order: global = a random permutation of the training windows; "
        "blocks = random spans of contiguous windows, each shuffled (the streaming path "
        "then decodes each store chunk about once per epoch); auto = global in memory, "
        "blocks when the fold streams from the store.",
    )

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` (``--set amp=off``, ``amp: off``) as false."""
        return "off" if value is False else value


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if present, else Apple MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise Eeg2BoldError("device 'cuda' requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise Eeg2BoldError(f"device {name!r}: expected cpu, cuda, cuda:N, mps or auto") from None


class UndefinedScoreWarning(Eeg2BoldWarning):
    """An output's r could not be computed on a split (recorded as NaN)."""


@dataclass
class SplitScore:
    """Per-output r on one split; an undefined r is NaN (listed in ``undefined``), and then
    ``mean`` is NaN too: such a score never ranks or selects."""

    r: np.ndarray
    n: int
    undefined: list[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(fisher_mean(self.r))


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    loss_parts: dict[str, float]
    val: SplitScore
    improved: bool
    stop: bool
    seconds: float
    data_seconds: float
    lr: float


class FoldTrainer:
    """Fits one model on one fold; call :meth:`step` until ``stop``, then :meth:`finish`."""

    def __init__(
        self,
        *,
        data: FoldData,
        model_name: str,
        model_params: dict[str, Any] | None = None,
        config: TrainConfig | None = None,
    ):
        self.data = data
        self.config = config or TrainConfig()
        self.model_name = model_name
        self.generator = seed_everything(self.config.seed)
        self.device = data.device
        self.model: BoldModel = build_model(model_name, data.spec, model_params).to(self.device)
        self.model_params = self.model.params.model_dump()
        self.epoch = 0
        self.step_count = 0
        self.best_score = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.done = False
        # the best weights' val and test lines once finish() has made them (see finish)
        self._final_lines: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        train = data.fold.train
        self.steps_per_epoch = self.config.steps_per_epoch or max(
            1, train.size // self.config.batch_size
        )
        self.optimizer: torch.optim.Optimizer | None = None
        if not self.model.closed_form:
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
            )
        amp = self.config.amp
        self.autocast = amp == "bf16" or (amp == "auto" and self.device.type == "cuda")

    # -- learning rate ----------------------------------------------------------------
    def _lr(self) -> float:
        warm = self.config.warmup_epochs * self.steps_per_epoch
        total = max(1, self.config.epochs * self.steps_per_epoch)
        s = self.step_count
        if warm > 0 and s < warm:
            return self.config.lr * (s + 1) / warm
        if self.config.schedule == "constant":
            return self.config.lr
        progress = min(1.0, (s - warm) / max(1.0, total - warm))
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * progress))

    # -- one epoch --------------------------------------------------------------------
    def step(self) -> EpochReport:
        """Train one epoch (or fit a closed-form model once) and score the val split."""
        if self.done:
            raise RuntimeError("the fit has finished; call finish()")
        t0 = time.perf_counter()
        data_s = 0.0
        parts_sum: dict[str, float] = {}
        loss_sum, n_steps = 0.0, 0
        self.model.train()
        if self.model.closed_form:
            t_data = time.perf_counter()
            batches = list(self._closed_form_batches())
            data_s += time.perf_counter() - t_data
            assert isinstance(self.model, ClosedFormModel)
            self.model.fit_closed_form(batches)
        else:
            assert self.optimizer is not None
            bs = self.config.batch_size
            order = self._order(bs)
            steps = [
                order[(i * bs) % max(1, order.numel() - bs + 1) :][:bs]
                for i in range(self.steps_per_epoch)
            ]
            self.data.will_read(steps)
            for i, idx in enumerate(steps):
                t_data = time.perf_counter()
                eeg, target = self.data.batch(idx)
                data_s += time.perf_counter() - t_data
                lr = self._lr()
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    out = self.model.training_outputs(eeg, target)
                loss, parts = total_loss(out, target, self.config.loss)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"{self.data.fold.name}: non-finite training loss "
                        f"({float(loss.detach())}) at epoch {self.epoch + 1}, step {i + 1} "
                        f"(model {self.model_name}, lr {lr:.2g})"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.step_count += 1
                loss_sum += float(loss.detach())
                n_steps += 1
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v
        self.epoch += 1
        val = self.evaluate("val")
        improved = val.mean > self.best_score + self.config.min_delta
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = val.mean, self.epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_epochs += 1
        patience = self.config.patience
        self.done = (
            self.model.closed_form
            or self.epoch >= self.config.epochs
            or (patience > 0 and self.bad_epochs >= patience)
        )
        report = EpochReport(
            epoch=self.epoch,
            train_loss=loss_sum / max(1, n_steps),
            loss_parts={k: v / max(1, n_steps) for k, v in parts_sum.items()},
            val=val,
            improved=improved,
            stop=self.done,
            seconds=time.perf_counter() - t0,
            data_seconds=data_s,
            lr=self._lr() if self.optimizer is not None else 0.0,
        )
        self.history.append(
            {
                "epoch": report.epoch,
                "train_loss": report.train_loss,
                "val_r": val.r.tolist(),
                "val_mean": val.mean,
                "seconds": report.seconds,
                "data_seconds": report.data_seconds,
            }
        )
        return report

    def _order(self, batch_size: int) -> torch.Tensor:
        """This epoch's training order (see ``TrainConfig.shuffle``)."""
        blocks = self.config.shuffle == "blocks" or (
            self.config.shuffle == "auto" and getattr(self.data, "path", "memory") == "stream"
        )
        if blocks:
            return block_order(
                self.data.fold.train, batch_size=batch_size, generator=self.generator
            )
        train = torch.as_tensor(self.data.fold.train)
        return train[torch.randperm(train.numel(), generator=self.generator)]

    def _closed_form_batches(self):
        train = np.sort(self.data.fold.train)
        size = self.config.eval_batch_size
        plan = [
            (seg_id, seg[lo : lo + size])
            for seg_id, seg in enumerate(self.data.segments(train))
            for lo in range(0, seg.size, size)
        ]
        self.data.will_read([idx for _, idx in plan], group=1)
        for seg_id, idx in plan:
            eeg, target = self.data.batch(idx)
            yield TrainingBatch(
                eeg=eeg, bold=target, segment=torch.full((idx.size,), seg_id, device=eeg.device)
            )

    # -- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, idx: np.ndarray) -> np.ndarray:
        """Normalised predictions [n, R, n_out] for sample indices ``idx``."""
        self.model.eval()
        out = []
        size = self.config.eval_batch_size
        batches = [idx[lo : lo + size] for lo in range(0, len(idx), size)]
        self.data.will_read(batches, group=1)
        for batch in batches:
            eeg, _ = self.data.batch(batch)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                pred = self.model(eeg)
            out.append(pred.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.data.outputs), 1))

    def segment_lines(self, split: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per contiguous segment of ``split``: (volume times, truth [R, V], prediction [R, V]),
        normalised, predictions stitched and sampled at the volume times."""
        if split in self._final_lines:
            return self._final_lines[split]
        out = []
        for seg in self.data.segments(self.data.fold.split(split)):
            pred = self.predict(seg)
            if not np.isfinite(pred).all():
                raise NonFiniteLossError(
                    f"{self.data.fold.name}: the model predicts non-finite values on {split}"
                )
            truth = self.data.targets[torch.as_tensor(seg, device=self.device), :, -1]
            times = self.data.samples.time[seg]
            line = stitch(pred, self.data.target_times[seg], times)
            out.append((times, truth.cpu().numpy().T.astype(np.float64), line))
        return out

    def evaluate(self, split: str) -> SplitScore:
        """The metric on a split: r per output over each contiguous segment, combined."""
        lines = self.segment_lines(split)
        if not lines:
            raise Eeg2BoldError(f"{self.data.fold.name}: no {split} samples to score")
        stacked = np.asarray([pearson_r(truth, pred) for _, truth, pred in lines])
        ns = [times.size for times, _, _ in lines]
        r = np.atleast_1d(combine_segments(list(stacked), ns))
        undefined = [int(j) for j in np.flatnonzero(~np.isfinite(r))]
        if undefined:
            names = ", ".join(self.data.outputs[j] for j in undefined)
            warnings.warn(
                f"{self.data.fold.name}: r is undefined on {split} for {names} (a constant "
                "prediction or truth): recorded as NaN, never ranked",
                UndefinedScoreWarning,
                stacklevel=2,
            )
        return SplitScore(r=r, n=int(sum(ns)), undefined=undefined)

    def predictions(self, split: str) -> dict[str, np.ndarray]:
        """Stitched predictions and truth of ``split`` in BOLD units, for reports and chance
        levels: ``times`` [V], ``truth``/``pred`` [R, V], ``segment`` [V] (contiguous stretch
        id), ``run`` [V] (index into the sample table's runs)."""
        lines = self.segment_lines(split)
        norm = self.data.normaliser
        scale, mean = norm.target_scale[:, None], norm.target_mean[:, None]
        idx = self.data.segments(self.data.fold.split(split))
        return {
            "times": np.concatenate([t for t, _, _ in lines]),
            "truth": np.concatenate([y for _, y, _ in lines], axis=1) * scale + mean,
            "pred": np.concatenate([p for _, _, p in lines], axis=1) * scale + mean,
            "segment": np.concatenate([np.full(t.size, k) for k, (t, _, _) in enumerate(lines)]),
            "run": np.concatenate([self.data.samples.run[seg] for seg in idx]),
        }

    def finish(self) -> dict[str, SplitScore]:
        """Restore the best-val weights and score val and test with them.

        Their lines are kept: the scores, the prediction files and a report's figures all come
        from this one pass over val and test (a second pass cost up to a tenth of a short
        fold's time, test being a whole subject under LOSO)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.done = True
        self._final_lines = {}
        self._final_lines = {split: self.segment_lines(split) for split in ("val", "test")}
        return {"val": self.evaluate("val"), "test": self.evaluate("test")}

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (loads with ``weights_only=True``)."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "epoch": self.epoch,
            "step_count": self.step_count,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state or {},
            "history": copy.deepcopy(self.history),
            "done": self.done,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and state["optimizer"]:
            self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.step_count = int(state["step_count"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state["best_state"] or None
        self._final_lines = {}
        self.history = list(state["history"])
        self.done = bool(state["done"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

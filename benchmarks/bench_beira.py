"""BEIRA as published vs eeg2bold's ``beira``: CPU training speed, and val r on simulated data.

(a) Speed at the published configuration (30 channels, 2048-sample windows at 100 Hz,
8 ROIs, 16 front-end branches, batch 16): training windows/s on one CPU thread (forward,
backward, AdamW step), both forms measured side by side in one run (interleaved repeats,
median). Target: ours >= 25 windows/s.
(b) Accuracy: both forms trained the same way (same data, steps, batch, optimiser, loss
1 - Pearson r + MSE) on simulated subjects (30 channels, 100 Hz, 8 ROIs) with a
within-subject split (first 60% train, a guard gap, the rest val); val r per ROI at the
volume times, Fisher-z averaged, next to the ridge baseline and the simulator's oracle r.

The published form is rebuilt here from the paper's description and configuration
(Kovalev et al. 2022): one full autoencoder per ROI, each with its own interpretable block
(1x1 unmixing, BatchNorm, 51-tap depthwise band-pass, BatchNorm, ReLU, 51-tap depthwise
low-pass, all at the EEG rate), a full-rate conv to 128 channels, conv blocks (LayerNorm,
GELU, dropout 0.3) with max-pooling 8, 8, 4 after full-resolution convs, and a decoder that
upsamples back to the EEG rate. It predicted whole sequences; here both forms are seq2one
(last output step = the target volume), as the package's samples are.

    python benchmarks/bench_beira.py [--part all|speed|accuracy] [--steps 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eeg2bold.models import BoldModel, DataSpec, TrainingBatch, build_model
from eeg2bold.models.base import resample_time
from eeg2bold.simulate import SimulationConfig, simulate_run
from eeg2bold.training.seed import seed_everything

N_CHANNELS, SFREQ, N_ROIS, N_TIMES, BATCH = 30, 100.0, 8, 2048, 16
SPEC = DataSpec(n_channels=N_CHANNELS, n_rois=N_ROIS, sfreq=SFREQ, window_s=N_TIMES / SFREQ)
TARGET_WINDOWS_PER_S = 25.0


# ----------------------------------------------------------------------- the published form


class _ChannelLayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _PublishedConvBlock(nn.Module):
    """Full-resolution conv ('same') → LayerNorm over channels → GELU → dropout → max-pool."""

    def __init__(self, n_in: int, n_out: int, kernel: int, pool: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel, padding="same", bias=False)
        self.norm = _ChannelLayerNorm(n_out)
        self.drop = nn.Dropout(0.3)
        self.pool = nn.MaxPool1d(pool, pool) if pool > 1 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.drop(F.gelu(self.norm(self.conv(x)))))


class _PublishedHead(nn.Module):
    """One ROI's complete model: interpretable block + encoder + decoder at the EEG rate."""

    def __init__(self, n_channels: int, *, branches: int = 16, taps: int = 51):
        super().__init__()
        channels, kernels, pools, decoder_reduce = (128, 128, 128, 128), (5, 5, 3), (8, 8, 4), 4
        self.unmix = nn.Conv1d(n_channels, branches, 1)
        self.unmix_norm = nn.BatchNorm1d(branches, affine=False)
        self.bandpass = nn.Conv1d(
            branches, branches, taps, groups=branches, padding="same", bias=False
        )
        self.band_norm = nn.BatchNorm1d(branches, affine=False)
        self.lowpass = nn.Conv1d(branches, branches, taps, groups=branches, padding="same")
        self.reduce = _PublishedConvBlock(branches, channels[0], 3)
        self.down = nn.ModuleList(
            _PublishedConvBlock(channels[i], channels[i + 1], kernels[i], pools[i])
            for i in range(len(kernels))
        )
        dec = [c // decoder_reduce for c in channels[:-1]] + [channels[-1]]
        self.up = nn.ModuleList(
            _PublishedConvBlock(dec[i + 1], dec[i], kernels[i])
            for i in reversed(range(len(kernels)))
        )
        self.scales = [pools[i] for i in reversed(range(len(kernels)))]
        self.out = nn.Conv1d(dec[0], 1, 1)

    def forward(self, eeg: Tensor) -> Tensor:
        x = self.band_norm(self.bandpass(self.unmix_norm(self.unmix(eeg))))
        x = self.reduce(self.lowpass(F.relu(x)))
        for block in self.down:
            x = block(x)
        for block, scale in zip(self.up, self.scales, strict=True):
            x = F.interpolate(block(x), scale_factor=scale, mode="linear", align_corners=False)
        return self.out(x)


class PublishedBeira(nn.Module):
    """BEIRA as published: R independent heads, outputs at the EEG rate; last step = target."""

    def __init__(self, spec: DataSpec):
        super().__init__()
        self.n_out = spec.n_out
        self.heads = nn.ModuleList(_PublishedHead(spec.n_channels) for _ in range(spec.n_rois))

    def forward(self, eeg: Tensor) -> Tensor:
        return resample_time(torch.cat([head(eeg) for head in self.heads], dim=1), self.n_out)


# ----------------------------------------------------------------------------- training


def loss_fn(pred: Tensor, target: Tensor) -> Tensor:
    """1 - Pearson r (per ROI, across the batch) + MSE; seq2one [B, R, 1]."""
    p, y = pred[..., 0], target[..., 0]
    r = F.cosine_similarity(p - p.mean(0), y - y.mean(0), dim=0, eps=1e-8)
    return (1 - r).mean() + F.mse_loss(p, y)


def train_step(model: nn.Module, optimiser: torch.optim.Optimizer, x: Tensor, y: Tensor) -> float:
    optimiser.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def make_models(seed: int) -> dict[str, nn.Module]:
    seed_everything(seed, deterministic=False)
    ours: BoldModel = build_model("beira", SPEC)
    seed_everything(seed, deterministic=False)
    return {"ours": ours, "published": PublishedBeira(SPEC)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ (a) speed


def measure_speed(*, repeats: int, seconds: float) -> dict[str, Any]:
    torch.set_num_threads(1)
    models = make_models(0)
    optimisers = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, N_CHANNELS, N_TIMES, generator=g)
    y = torch.randn(BATCH, N_ROIS, 1, generator=g)
    for name, model in models.items():  # warm-up (allocator, kernel selection)
        model.train()
        train_step(model, optimisers[name], x, y)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():  # interleaved: machine noise hits both alike
            done, start = 0, time.perf_counter()
            while done < 2 or time.perf_counter() - start < seconds:
                train_step(model, optimisers[name], x, y)
                done += 1
            rates[name].append(done * BATCH / (time.perf_counter() - start))
    median = {name: statistics.median(v) for name, v in rates.items()}
    return {
        "threads": 1,
        "batch": BATCH,
        "windows_per_s": median,
        "windows_per_s_all_repeats": rates,
        "ratio_ours_over_published": median["ours"] / median["published"],
        "target_ours_windows_per_s": TARGET_WINDOWS_PER_S,
        "meets_target": median["ours"] >= TARGET_WINDOWS_PER_S,
        "parameters": {name: n_params(m) for name, m in models.items()},
        "peak_rss_mb_after": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- (b) accuracy


def simulate_split(
    *, subjects: int, minutes: float, delay_s: float, seed: int
) -> list[dict[str, Any]]:
    """Per subject: normalised train/val windows (seq2one) and the oracle r of the run."""
    # At 100 Hz mains (50 Hz) sits at Nyquist, as if filtered out before downsampling.
    config = SimulationConfig(
        subjects=subjects,
        minutes=minutes,
        channels=N_CHANNELS,
        sfreq=SFREQ,
        rois=N_ROIS,
        line_freq=45.0,
        line_noise_uv=0.0,
        seed=seed,
    )
    window_s = N_TIMES / SFREQ
    gap_s = max(20.0, window_s + delay_s)  # no val window or target reaches training time
    out = []
    for s in range(subjects):
        run = simulate_run(config=config, subject_index=s, run_index=0)
        eeg, bold, times = run.eeg, run.bold, run.volume_times
        split_s = 0.6 * eeg.shape[1] / SFREQ
        ends = np.round((times - delay_s) * SFREQ).astype(int)
        usable = ends >= N_TIMES
        train, val = usable & (times <= split_s), usable & (times >= split_s + gap_s)
        n_split = int(round(split_s * SFREQ))
        mean = eeg[:, :n_split].mean(axis=1, keepdims=True)
        scale = eeg[:, :n_split].std(axis=1, keepdims=True)
        eeg = ((eeg - mean) / scale).astype(np.float32)
        bold = (bold - bold[:, train].mean(axis=1, keepdims=True)) / bold[:, train].std(
            axis=1, keepdims=True
        )

        def windows(mask: np.ndarray) -> tuple[Tensor, Tensor]:
            x = np.stack([eeg[:, e - N_TIMES : e] for e in ends[mask]])  # noqa: B023
            y = bold[:, mask].T[:, :, None]  # noqa: B023
            return torch.from_numpy(x), torch.tensor(y, dtype=torch.float32)

        out.append(
            {
                "train": windows(train),
                "val": windows(val),
                "oracle_r": list(map(float, run.truth.attrs["oracle_r"])),  # type: ignore[union-attr]
            }
        )
    return out


def fisher_mean(r: Any) -> float:
    return float(np.tanh(np.mean(np.arctanh(np.clip(np.asarray(r, dtype=float), -0.999, 0.999)))))


@torch.no_grad()
def val_r(model: nn.Module, data: list[dict[str, Any]]) -> np.ndarray:
    """[subjects, ROIs] Pearson r at the val volume times."""
    model.eval()
    rows = []
    for subject in data:
        x, y = subject["val"]
        pred = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])[..., 0].numpy()
        truth = y[..., 0].numpy()
        rows.append([np.corrcoef(pred[:, k], truth[:, k])[0, 1] for k in range(N_ROIS)])
    model.train()
    return np.array(rows)


def measure_accuracy(
    *, steps: int, eval_every: int, lr: float, threads: int, data: list[dict[str, Any]], seed: int
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    x = torch.cat([s["train"][0] for s in data])
    y = torch.cat([s["train"][1] for s in data])
    results: dict[str, Any] = {}
    for name, model in make_models(seed).items():
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=3e-4)
        order = torch.Generator().manual_seed(seed)  # same batches for both forms
        perm, pos = torch.randperm(len(x), generator=order), 0
        curve, start, train_s = [], time.perf_counter(), 0.0
        model.train()
        for step in range(1, steps + 1):
            if pos + BATCH > len(x):
                perm, pos = torch.randperm(len(x), generator=order), 0
            idx = perm[pos : pos + BATCH]
            pos += BATCH
            t0 = time.perf_counter()
            loss = train_step(model, optimiser, x[idx], y[idx])
            train_s += time.perf_counter() - t0
            if step % eval_every == 0 or step == steps:
                r = val_r(model, data)
                curve.append({"step": step, "train_loss": loss, "val_r": fisher_mean(r)})
                print(
                    f"  {name:9s} step {step:4d}  loss {loss:.3f}  val r {curve[-1]['val_r']:.3f}"
                )
        best = max(curve, key=lambda c: c["val_r"])
        results[name] = {
            "val_r_final": curve[-1]["val_r"],
            "val_r_per_roi_final": [fisher_mean(col) for col in r.T],
            "val_r_per_subject_final": [fisher_mean(row) for row in r],
            "val_r_best": best["val_r"],
            "best_step": best["step"],
            "curve": curve,
            "train_windows_per_s": steps * BATCH / train_s,
            "elapsed_s": time.perf_counter() - start,
        }
    ridge = build_model("ridge", SPEC)
    info = ridge.fit_closed_form(
        TrainingBatch(
            eeg=s["train"][0], bold=s["train"][1], segment=torch.full((len(s["train"][0]),), i)
        )
        for i, s in enumerate(data)
    )
    r = val_r(ridge, data)
    results["ridge"] = {
        "val_r": fisher_mean(r),
        "val_r_per_roi": [fisher_mean(col) for col in r.T],
        "alpha": info["alpha"],
    }
    results["oracle_r"] = fisher_mean([v for s in data for v in s["oracle_r"]])
    results["peak_rss_mb_after"] = peak_rss_mb()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "speed", "accuracy"], default="all")
    parser.add_argument("--out", default="benchmarks/results/beira.json")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved speed repeats")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per speed measurement")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--delay-s", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=300, help="training steps (both forms)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report: dict[str, Any] = {
        "benchmark": "beira_published_vs_ours",
        "config": {
            "channels": N_CHANNELS,
            "sfreq": SFREQ,
            "rois": N_ROIS,
            "window_samples": N_TIMES,
            "batch": BATCH,
            "ours_params": build_model("beira", SPEC).params.model_dump(),
            **{k: v for k, v in vars(args).items() if k != "out"},
        },
        "platform": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    started = time.perf_counter()
    summary = []
    if args.part in ("all", "speed"):
        speed = measure_speed(repeats=args.repeats, seconds=args.seconds)
        report["speed"] = speed
        w = speed["windows_per_s"]
        summary.append(
            f"train windows/s (1 thread): ours {w['ours']:.1f}, published {w['published']:.2f} "
            f"({speed['ratio_ours_over_published']:.0f}x; target >= {TARGET_WINDOWS_PER_S:g}: "
            f"{'met' if speed['meets_target'] else 'MISSED'})"
        )
    if args.part in ("all", "accuracy"):
        data = simulate_split(
            subjects=args.subjects, minutes=args.minutes, delay_s=args.delay_s, seed=args.seed
        )
        report["data"] = {
            "train_windows": sum(len(s["train"][0]) for s in data),
            "val_windows": sum(len(s["val"][0]) for s in data),
            "split": "per subject: first 60% train, gap max(20 s, window + delay), rest val",
        }
        acc = measure_accuracy(
            steps=args.steps,
            eval_every=args.eval_every,
            lr=args.lr,
            threads=args.threads,
            data=data,
            seed=args.seed,
        )
        report["accuracy"] = acc
        summary.append(
            f"val r after {args.steps} steps: ours {acc['ours']['val_r_final']:.3f} "
            f"(best {acc['ours']['val_r_best']:.3f}), published "
            f"{acc['published']['val_r_final']:.3f} (best {acc['published']['val_r_best']:.3f}),"
            f" ridge {acc['ridge']['val_r']:.3f}, oracle {acc['oracle_r']:.3f}"
        )
    report["peak_rss_mb"] = peak_rss_mb()
    report["elapsed_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)
    print("beira: " + "; ".join(summary))


if __name__ == "__main__":
    main()

"""Text output of ``eeg2bold train``: one line per epoch, tables per fold and per output."""

from __future__ import annotations

from eeg2bold.protocols import Fold
from eeg2bold.training.fit import EpochReport
from eeg2bold.training.run import FoldResult, ProtocolResult


def format_epoch(fold: Fold, report: EpochReport, *, max_epochs: int) -> str:
    mark = " *" if report.improved else "  "
    loss = f"{report.train_loss:7.4f}" if report.loss_parts else "    n/a"
    data_share = report.data_seconds / report.seconds if report.seconds > 0 else 0.0
    return (
        f"{fold.name:<24} epoch {report.epoch:>3}/{max_epochs:<3} loss {loss}  "
        f"val r {report.val.mean:6.3f}{mark} ({report.seconds:5.1f} s, "
        f"data {100 * data_share:.0f}%)"
    )


def format_fold(result: FoldResult) -> str:
    return (
        f"{result.fold.name:<24} best epoch {result.best_epoch:>3}  val r {result.val.mean:6.3f}  "
        f"test r {result.test.mean:6.3f}  (n test {result.test.n})"
    )


def format_result(result: ProtocolResult) -> str:
    cfg = result.config
    summary = result.summary()
    head = (
        f"model {cfg.model} · protocol {cfg.protocol} · config {result.config_hash} · "
        f"window {cfg.data.window_s:g} s, delay {cfg.data.delay_s:g} s, {cfg.data.target}"
    )
    lines = [head, "", f"{'fold':<28}{'best':>5}{'val r':>8}{'test r':>8}{'n test':>8}"]
    for f in result.folds:
        lines.append(
            f"{f.fold.name:<28}{f.best_epoch:>5}{f.val.mean:>8.3f}{f.test.mean:>8.3f}{f.test.n:>8}"
        )
    lines.append(
        f"{'mean (Fisher z)':<28}{'':>5}{summary['val_r_mean']:>8.3f}{summary['test_r_mean']:>8.3f}"
    )
    lines += ["", f"{'output':<28}{'val r':>8}{'test r':>8}"]
    for name in result.outputs:
        lines.append(
            f"{name:<28}{summary['val_r_per_output'][name]:>8.3f}"
            f"{summary['test_r_per_output'][name]:>8.3f}"
        )
    return "\n".join(lines)

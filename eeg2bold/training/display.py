"""Text output of ``eeg2bold train``: one line per epoch, tables per fold and per output."""

from __future__ import annotations

from eeg2bold.training.engine import EpochOutcome, FoldOutcome, ProtocolResult


def format_epoch(protocol: str, epoch: EpochOutcome, *, max_epochs: int) -> str:
    mark = " *" if epoch.improved else "  "
    loss = f"{epoch.train_loss:7.4f}" if epoch.has_loss else "    n/a"
    data_share = epoch.data_seconds / epoch.seconds if epoch.seconds > 0 else 0.0
    name = f"{protocol}/{epoch.subject}"
    return (
        f"{name:<24} epoch {epoch.epoch:>3}/{max_epochs:<3} loss {loss}  "
        f"val r {epoch.val_mean:6.3f}{mark} ({epoch.seconds:5.1f} s, "
        f"data {100 * data_share:.0f}%)"
    )


def format_fold(protocol: str, outcome: FoldOutcome) -> str:
    name = f"{protocol}/{outcome.label}"
    resumed = "  (finished earlier)" if outcome.resumed else ""
    path = {"memory": ", in memory", "stream": ", streamed from the store"}.get(
        outcome.data_path, ""
    )
    return (
        f"{name:<24} best epoch {outcome.best_epoch:>3}  val r {outcome.val_mean:6.3f}  "
        f"test r {outcome.test_mean:6.3f}  (n test {outcome.n_test}{path}){resumed}"
    )


def format_result(result: ProtocolResult) -> str:
    cfg = result.config
    summary = result.summary()
    head = (
        f"model {cfg.model} · protocol {cfg.protocol} · trial {result.trial} · "
        f"window {cfg.data.window_s:g} s, delay {cfg.data.delay_s:g} s, {cfg.data.target}"
    )
    names = [f"{cfg.protocol}/{f.label}" for f in result.folds]
    w = max([28, *(len(n) + 2 for n in names), *(len(o) + 2 for o in result.outputs)])
    lines = [head, "", f"{'fold':<{w}}{'best':>5}{'val r':>8}{'test r':>8}{'n test':>8}"]
    for name, f in zip(names, result.folds, strict=True):
        lines.append(
            f"{name:<{w}}{f.best_epoch:>5}{f.val_mean:>8.3f}{f.test_mean:>8.3f}{f.n_test:>8}"
        )
    lines.append(
        f"{'mean (Fisher z)':<{w}}{'':>5}{summary['val_r_mean']:>8.3f}"
        f"{summary['test_r_mean']:>8.3f}"
    )
    lines += ["", f"{'output':<{w}}{'val r':>8}{'test r':>8}"]
    for name in result.outputs:
        lines.append(
            f"{name:<{w}}{summary['val_r_per_output'][name]:>8.3f}"
            f"{summary['test_r_per_output'][name]:>8.3f}"
        )
    return "\n".join(lines)


def format_curve(results: list[ProtocolResult]) -> str:
    """The calibration curve: mean test r (Fisher z over folds) per amount of new-subject data."""
    from eeg2bold.protocols import label_amount_s, protocol_label

    lines = [f"{'calibration data':<20}{'val r':>8}{'test r':>8}   trial"]
    for result in results:
        label = protocol_label(result.config.protocol, result.config.protocol_options)
        minutes = (label_amount_s(label) or 0.0) / 60.0
        summary = result.summary()
        lines.append(
            f"{f'{minutes:g} min':<20}{summary['val_r_mean']:>8.3f}{summary['test_r_mean']:>8.3f}"
            f"   {result.trial}"
        )
    return "\n".join(lines)

"""``eeg2bold predict``: the thin command over :mod:`eeg2bold.predict` (files, exit status)."""

from __future__ import annotations

import numpy as np

from eeg2bold.cli import main
from eeg2bold.predict import PredictOptions, predict, read_tsv


def test_cli_writes_table_sidecar_and_plot(sim, tmp_path, capsys):
    out = tmp_path / "bold.tsv"
    assert main(["predict", str(sim.model), str(sim.vhdr), "-o", str(out), "--step", "2"]) == 0
    captured = capsys.readouterr()
    assert "predicted 3 output(s)" in captured.out
    assert "model: ridge (within, fold sub-01)" in captured.err
    times, columns = read_tsv(out)
    assert np.allclose(np.diff(times), 2.0)
    expected = predict(str(sim.model), sim.vhdr, PredictOptions(step_s=2.0))
    assert np.allclose(np.stack(list(columns.values())), expected.values, rtol=1e-5, atol=1e-5)
    assert out.with_suffix(".json").exists() and out.with_suffix(".png").exists()
    no_plot = tmp_path / "b.tsv"
    assert (
        main(["predict", str(sim.model), str(sim.vhdr), "-o", str(no_plot), "--no-plot", "-q"]) == 0
    )
    assert no_plot.exists() and not no_plot.with_suffix(".png").exists()
    assert capsys.readouterr().out == ""


def test_cli_sweep_and_one_line_errors(sim, sweep, tmp_path, capsys):
    out = tmp_path / "bold.tsv"
    code = main(["predict", str(sweep.root), str(sim.vhdr), "--protocol", "within", "-o", str(out)])
    assert code == 0 and out.exists()
    assert (
        main(["predict", str(sweep.root), str(sim.vhdr), "--protocol", "loso", "-o", str(out)]) == 1
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("eeg2bold: error: ") and "no finished trial for protocol 'loso'" in err


def test_cli_amplitude_check_and_its_escape(sim, write, tmp_path, capsys):
    vhdr = write.brainvision(tmp_path, "units", sim.volts * 1e6, names=sim.channels, sfreq=100.0)
    out = tmp_path / "b.tsv"
    assert main(["predict", str(sim.model), str(vhdr), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "units.vhdr: EEG amplitude is 1e+06 x" in err[0]
    assert not out.exists()
    args = ["predict", str(sim.model), str(vhdr), "-o", str(out), "-q", "--no-amplitude-check"]
    assert main(args) == 0 and out.exists()


def test_cli_matlab_options_come_in_pairs(sim, tmp_path, capsys):
    mat = tmp_path / "eeg.mat"
    mat.write_bytes(b"")
    args = ["predict", str(sim.model), str(mat), "-o", str(tmp_path / "b.tsv")]
    assert main([*args, "--mat-variable", "EEG"]) == 1
    assert "needs both --mat-variable and --mat-sfreq" in capsys.readouterr().err


def test_cli_unwritable_output_is_one_line(sim, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    out = blocker / "bold.tsv"
    assert main(["predict", str(sim.model), str(sim.vhdr), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and str(out) in err[0]
    assert blocker.read_text() == "keep"

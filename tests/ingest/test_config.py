"""IngestConfig and the command-line option merge: strict, explained, reproducible."""

from __future__ import annotations

import argparse

import pytest

from eeg2bold.cli.ingest_options import build_config
from eeg2bold.cli.options import OFF, float_or_none, split_names
from eeg2bold.ingest import IngestConfig, IngestError


def test_defaults_are_documented_and_hash_is_stable():
    a, b = IngestConfig(), IngestConfig()
    assert a.sha256() == b.sha256()
    assert a.eeg.sfreq == 250.0
    assert a.eeg.reference == "average"
    assert a.timing.mismatch == "error"
    for section in (a.channels, a.eeg, a.timing, a.bold):
        for name, field in type(section).model_fields.items():
            assert field.description, f"{type(section).__name__}.{name} has no description"
    other = IngestConfig(eeg={"sfreq": 200})
    assert other.sha256() != a.sha256()
    assert IngestConfig.model_validate(a.to_record()) == a


def test_misspelt_option_is_answered_with_the_nearest_name():
    with pytest.raises(IngestError, match="did you mean 'l_freq'"):
        IngestConfig.from_record({"eeg": {"lfreq": 1.0}})
    with pytest.raises(IngestError, match="unknown option 'eegg'"):
        IngestConfig.from_record({"eegg": {}})


def test_inconsistent_band_is_refused_in_one_line():
    with pytest.raises(IngestError) as err:
        IngestConfig.from_record({"eeg": {"sfreq": 100, "h_freq": 60}})
    assert "Nyquist" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(IngestError, match="below h_freq"):
        IngestConfig.from_record({"eeg": {"l_freq": 30, "h_freq": 20}})


def test_build_config_merges_defaults_file_and_flags(tmp_path):
    cfg_file = tmp_path / "ingest.yaml"
    cfg_file.write_text("eeg:\n  sfreq: 200\n  l_freq: 1.0\nbold:\n  tr: 2.5\n")
    config = build_config(
        {"eeg.l_freq": 0.1, "eeg.h_freq": OFF, "bold.tr": None, "timing.markers": ("mri",)},
        config_file=cfg_file,
        defaults={"timing": {"source": "start", "markers": ["R128"]}},
    )
    assert config.eeg.sfreq == 200  # from the file
    assert config.eeg.l_freq == 0.1  # the flag wins
    assert config.eeg.h_freq is None
    assert config.bold.tr == 2.5  # None means "not given"
    assert config.timing.source == "markers"  # --marker implies markers
    assert config.timing.markers == ("mri",)


def test_build_config_refuses_ambiguous_or_missing_timing():
    with pytest.raises(IngestError, match="not both"):
        build_config({"timing.markers": ("R128",), "timing.start_s": 0.0})
    with pytest.raises(IngestError, match="--marker NAME"):
        build_config({}, require_timing=True)
    assert build_config({"timing.start_s": 3.0}, require_timing=True).timing.source == "start"


def test_option_parsers():
    assert split_names("O1, O2,,Cz") == ("O1", "O2", "Cz")
    assert float_or_none("none") is OFF
    assert float_or_none("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match="number or 'none'"):
        float_or_none("fast")

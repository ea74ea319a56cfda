"""Simulate straight into a dataset store, one run at a time (memory stays at one run)."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm

from eeg2bold.simulate import SimulationConfig, dataset_info, simulate_runs
from eeg2bold.storage import WritableDataset, create_dataset


def simulate_to_store(
    url: str | os.PathLike[str],
    config: SimulationConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> WritableDataset:
    """Write every simulated run; re-running the same config changes nothing (idempotent)."""
    dataset = create_dataset(url, dataset_info(config=config), storage_options=storage_options)
    total = config.subjects * config.runs
    with tqdm(total=total, desc="simulate", unit="run", disable=not progress) as bar:
        for run in simulate_runs(config=config):
            status = dataset.write_run(run, overwrite=overwrite)
            bar.set_postfix_str(f"{run.subject}/{run.run} {status}", refresh=False)
            bar.update()
    return dataset

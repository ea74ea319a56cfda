"""The report in the sweep's experiment tracker: ``eeg2bold report`` logs its files to MLflow
when the sweep tracked its trials there (``tracking.mlflow``). Imports MLflow only, never Ray:
a report is made where no cluster runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eeg2bold.storage.location import expand_env


def attach_report(config: dict[str, Any], files: list[Path]) -> str | None:
    """Log the report's files to the sweep's MLflow experiment (a run named ``report``);
    returns the run id, or None when the sweep has no MLflow tracking."""
    mlflow_config = (config.get("tracking") or {}).get("mlflow")
    if not mlflow_config:
        return None
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=expand_env(mlflow_config["tracking_uri"]))
    name = mlflow_config.get("experiment") or config.get("name") or "eeg2bold"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id if experiment is not None else client.create_experiment(name)
    )
    run = client.create_run(
        experiment_id, run_name="report", tags={"eeg2bold.sweep": str(config.get("name"))}
    )
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)

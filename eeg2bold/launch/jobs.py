"""``eeg2bold launch``: render a cluster job for a study config and write it; for Slurm, stage
the study config where every node reads it, make the script executable and optionally submit
it. The renderers are :mod:`.slurm` and :mod:`.k8s`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from eeg2bold.launch.cluster import stage_study, staged_study_path
from eeg2bold.launch.config import load_study_config
from eeg2bold.launch.k8s import render_k8s
from eeg2bold.launch.slurm import render_slurm, slurm_job_name, submit_slurm
from eeg2bold.run_folder.files import write_bytes

STDOUT = "-"  # the output named for standard output


@dataclass(frozen=True)
class Job:
    """A rendered job and what was done with it."""

    text: str
    path: str | None = None  # the file written; None: the text is for standard output
    staged: str | None = None  # Slurm: the job's copy of the study config
    job_id: str | None = None  # Slurm with submit: sbatch's job id
    log: str | None = None  # Slurm with submit: the job's log, in the folder sbatch ran in


def write_job(
    target: Literal["slurm", "k8s"],
    config_path: str,
    *,
    output: str | None = None,
    submit: bool = False,
    **options: Any,
) -> Job:
    """Render the job (``options``: :class:`~.slurm.SlurmOptions` or :class:`~.k8s.K8sOptions`
    fields) and write it to ``output`` (None or ``-``: not written). A Slurm job reads a copy of
    the study config every node sees, not the file given: it is staged first; with ``submit``
    the script goes beside it unless ``output`` names a file, and ``sbatch`` runs it."""
    config = load_study_config(config_path)
    to_stdout = output in (None, STDOUT)
    if target == "k8s":
        text = render_k8s(config_path, config=config, **options)
        if to_stdout:
            return Job(text)
        assert output is not None
        write_bytes(output, text.encode(), what="the job file")
        return Job(text, path=output)
    text = render_slurm(config_path, config=config, **options)
    staged = staged_study_path(config, options.get("stage_dir"))
    stage_study(config, staged)
    if to_stdout and not submit:
        return Job(text, staged=staged)
    path = os.path.splitext(staged)[0] + ".sbatch" if to_stdout else str(output)
    write_bytes(path, text.encode(), what="the job file")
    os.chmod(path, 0o755)
    if not submit:
        return Job(text, path=path, staged=staged)
    job = submit_slurm(path)
    log = f"{slurm_job_name(config, options.get('job_name'))}-{job}.log"
    return Job(text, path=path, staged=staged, job_id=job, log=log)

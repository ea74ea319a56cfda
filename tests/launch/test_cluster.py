"""``eeg2bold launch``: the Slurm script and the KubeRay manifest (rendered, parsed and, for
Slurm, run against stub ``srun``/``ray``/``eeg2bold`` commands), the shared-storage check, and
the cluster examples."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from fresh_process import last_line

from eeg2bold.errors import ConfigError
from eeg2bold.launch.cluster import NODE_LOCAL, check_cluster_storage
from eeg2bold.launch.config import load_study_config, parse_study_config
from eeg2bold.launch.k8s import render_k8s
from eeg2bold.launch.slurm import render_slurm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cluster"
PG_URL = "postgresql://eeg2bold:${PGPASSWORD}@db.example.org:5432/optuna"
BASH = shutil.which("bash")


def _study(**overrides):
    data = {
        "name": "cluster_t",
        "dataset": "/shared/data/sim.zarr",
        "protocols": ["within"],
        "models": ["ridge"],
        "resources": {"cpu": 2, "gpu": 1},
        "storage": {"results": "/shared/sweeps/cluster_t", "optuna": PG_URL},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_study_config(data)


@pytest.fixture
def study_file(tmp_path):
    def write(**overrides) -> tuple[Path, object]:
        config = _study(**overrides)
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        return path, config

    return write


# the job reads the copy `launch slurm` stages beside the results, not the file it was given
STAGED = "/shared/sweeps/cluster_t/launch/cluster_t.yaml"


def _slurm(path, config, **kw):
    options = {"nodes": 3, "cpus_per_node": 8, "gpus_per_node": 2}
    return render_slurm(path, config=config, **{**options, **kw})


def _k8s(path, config, **kw):
    options = {
        "image": "registry.example.org/eeg2bold:0.1.0",
        "workers": 2,
        "cpu": 8,
        "memory": "32Gi",
        "gpu": 1,
        "secret_name": "eeg2bold-storage",
        "pvc": "shared-fs",
    }
    return render_k8s(path, config=config, **{**options, **kw})


def _sbatch(script: str) -> set[str]:
    return {line.split(None, 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")}


# -- check_cluster_storage ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"storage": {"results": "/tmp/sweeps"}}, "node-local (/tmp)"),
        ({"storage": {"results": "/var/tmp/x"}}, "node-local (/var/tmp)"),
        ({"storage": {"results": "file:///dev/shm/x"}}, "node-local (/dev/shm)"),
        ({"storage": {"results": "/shared/../tmp/x"}}, "node-local (/tmp)"),
        ({"storage": {"optuna": None}}, "the default SQLite file"),
        ({"storage": {"optuna": "sqlite:////shared/optuna.db"}}, "SQLite corrupts"),
        ({"storage": {"optuna": "journal://optuna.log"}}, "is a relative path"),
        ({"storage": {"optuna": "journal:///tmp/optuna.log"}}, "node-local (/tmp)"),
        ({"storage": {"optuna": "redis://db/0"}}, "unsupported storage.optuna"),
    ],
)
def test_cluster_storage_refuses_what_one_node_sees(overrides, message):
    with pytest.raises(ConfigError) as exc:
        check_cluster_storage(_study(**overrides))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"storage": {"results": "s3://bucket/sweeps/x"}},
        {"storage": {"optuna": "journal:///shared/sweeps/optuna.log"}},
        {"storage": {"optuna": "postgresql+psycopg2://u@db/optuna"}},
        {"dataset": "s3://bucket/data/sim.zarr"},
        {"dataset": "${EEG2BOLD_TEST_UNSET_DATA}/sim.zarr"},
    ],
)
def test_cluster_storage_accepts_shared_locations(overrides, monkeypatch):
    monkeypatch.delenv("EEG2BOLD_TEST_UNSET_DATA", raising=False)
    check_cluster_storage(_study(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [{"storage": {"results": None}}, {"storage": {"results": "sweeps/x"}}]
    + [{"dataset": "data/sim.zarr"}],
)
def test_relative_paths_are_checked_where_they_resolve(overrides, monkeypatch, tmp_path):
    """Relative paths are made absolute when the config is read (the job reads a staged copy
    holding them so): accepted from a shared folder, refused from a node-local one."""
    # not node-local (the checkout itself may be a clone under /tmp: the home folder then)
    here = Path(__file__).parent
    shared = here if not str(here).startswith(NODE_LOCAL) else Path.home()
    monkeypatch.chdir(shared)
    check_cluster_storage(_study(**overrides))
    monkeypatch.chdir(tmp_path)  # under /tmp
    with pytest.raises(ConfigError, match=r"node-local \(/tmp\)"):
        check_cluster_storage(_study(**overrides))


def test_cluster_storage_checks_an_expanded_dataset_path(monkeypatch):
    monkeypatch.setenv("EEG2BOLD_TEST_DATA", "/tmp/data")
    with pytest.raises(ConfigError, match="node-local"):
        check_cluster_storage(_study(dataset="${EEG2BOLD_TEST_DATA}/sim.zarr"))


@pytest.mark.parametrize("render", [_slurm, _k8s])
def test_renderers_refuse_single_node_storage(render, study_file):
    path, config = study_file(storage={"optuna": None})
    with pytest.raises(ConfigError, match="SQLite"):
        render(path, config)


# -- Slurm ----------------------------------------------------------------------------------
@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_script_is_valid_bash(study_file, tmp_path):
    path, config = study_file()
    script = tmp_path / "job.sh"
    script.write_text(_slurm(path, config, setup=["module load cuda"], env_file="~/secrets.env"))
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_slurm_script_starts_ray_then_the_sweep(study_file):
    path, config = study_file()
    script = _slurm(path, config)
    head = script.index("ray start --head")
    worker = script.index('ray start --address="$RAY_ADDRESS"')
    sweep = script.index(f"eeg2bold sweep {STAGED} --address auto")
    assert head < worker < sweep
    assert '--port="$port"' in script and "port=6379" in script
    assert '--num-cpus="$SLURM_CPUS_PER_TASK"' in script
    assert (
        'srun --nodes=1 --ntasks=1 --cpus-per-task="$SLURM_CPUS_PER_TASK" --gpus-per-task=2 '
        '--overlap --export=ALL -w "$node"'
    ) in script
    assert "trap stop_ray EXIT" in script
    assert "--resume" not in script
    assert f"{STAGED} --address auto --resume" in _slurm(path, config, resume=True)


def test_sbatch_lines_follow_the_options(study_file):
    path, config = study_file()
    script = _slurm(
        path,
        config,
        nodes=4,
        cpus_per_node=32,
        gpus_per_node=4,
        time="2-00:00:00",
        partition="gpu",
        account="proj42",
        mem="256G",
    )
    assert _sbatch(script) == {
        "--job-name=eeg2bold-cluster_t",
        "--nodes=4",
        "--ntasks-per-node=1",
        "--cpus-per-task=32",
        "--gpus-per-task=4",
        "--mem=256G",
        "--time=2-00:00:00",
        "--partition=gpu",
        "--account=proj42",
        "--exclusive",
        "--output=eeg2bold-cluster_t-%j.log",
    }
    path, config = study_file(resources={"gpu": 0})
    lines = _sbatch(_slurm(path, config, gpus_per_node=0, exclusive=False))
    assert not any(
        line.startswith(("--gpus", "--partition", "--account", "--mem")) for line in lines
    )
    assert "--exclusive" not in lines


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time": "1 day"}, "time '1 day'"),
        ({"partition": "gpu\n#SBATCH --x"}, "partition"),
        ({"mem": "lots"}, "mem 'lots'"),
        ({"gpus_per_node": 0}, "resources.gpu is 1 per fold but a node has 0 GPUs"),
        ({"cpus_per_node": 1}, "resources.cpu is 2 per fold"),
        ({"forward_env": ["NOT-A-NAME"]}, "not an environment variable name"),
    ],
)
def test_slurm_refuses_bad_options(study_file, options, message):
    path, config = study_file()
    with pytest.raises(ConfigError) as exc:
        _slurm(path, config, **options)
    assert message in str(exc.value)


def test_slurm_script_holds_no_secret_and_keeps_auth_on(study_file, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "secret123")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "tok-should-not-appear")
    path, config = study_file(dataset="s3://bucket/data?secret_key=hunter2")
    script = _slurm(path, config, forward_env=["AWS_SECRET_ACCESS_KEY"])
    for secret in ("secret123", "tok-should-not-appear", "hunter2"):
        assert secret not in script
    assert "env_names=(PGPASSWORD AWS_SECRET_ACCESS_KEY)" in script
    assert "postgresql://***@db.example.org:5432/optuna" in script
    assert "0.0.0.0" not in script
    assert "--dashboard-host=127.0.0.1" in script
    assert "export RAY_AUTH_MODE=token" in script
    assert "RAY_AUTH_MODE=disabled" not in script
    assert "set -x" not in script.replace("set +x", "").replace("`set -x`", "")
    no_dashboard = _slurm(path, config, dashboard=False)
    assert "--include-dashboard=false" in no_dashboard and "--dashboard-host" not in no_dashboard


def test_slurm_masks_a_literal_password(study_file):
    path, config = study_file(storage={"optuna": "postgresql://u:hunter2@db/optuna"})
    script = _slurm(path, config)
    assert "hunter2" not in script
    assert "postgresql://***@db/optuna" in script


_STUBS = {
    "scontrol": 'printf "node1\\nnode2\\nnode3\\n"',
    "srun": """echo "srun $*" >> "$STUB_LOG"
case "$*" in
  *hostname*) echo "10.1.2.3 fe80::1" ;;
  *"ray start"*)
    auth=off; creds=missing
    [[ "$RAY_AUTH_MODE" == token && -n "$RAY_AUTH_TOKEN" ]] && auth=token
    [[ "${PGPASSWORD:-}" == secret123 ]] && creds=ok
    echo "node up auth=$auth creds=$creds pid=$$ $*" >> "$STUB_LOG"
    exec sleep 30 >/dev/null 2>&1 ;;
esac""",
    "ray": 'echo "ray $*" >> "$STUB_LOG"',
    "python": '''if [[ "$1" == "-" ]]; then  # the wait for nodes: until $3 are up
    cat >/dev/null
    for _ in $(seq 200); do
        (($(grep -c "^node up" "$STUB_LOG") >= $3)) && break
        sleep 0.05
    done
    echo "wait $2 $3" >> "$STUB_LOG"; exit 0
fi
exec "$REAL_PYTHON" "$@"''',
    "eeg2bold": """echo "eeg2bold $* RAY_ADDRESS=$RAY_ADDRESS" >> "$STUB_LOG"
[[ "$RAY_AUTH_TOKEN" == "$(cat "$HOME/.ray/auth_token")" ]] && echo "driver token ok" >> "$STUB_LOG"
[[ "$PGPASSWORD" == secret123 ]] && echo "driver creds ok" >> "$STUB_LOG"
exit 3""",
}


@pytest.fixture
def fake_slurm(tmp_path):
    """Stub scontrol/srun/ray/python/eeg2bold on PATH; runs a script as sbatch would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in _STUBS.items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/bash\n{body}\n")
        stub.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "calls.log"

    def run(script: str, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
        path = tmp_path / "job.sh"
        path.write_text(script)
        base = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "SLURM_JOB_NODELIST": "node[1-3]",
            "SLURM_CPUS_PER_TASK": "8",
            "SLURM_GPUS_PER_TASK": "2",
            "STUB_LOG": str(log),
            "REAL_PYTHON": sys.executable,
        }
        result = subprocess.run(
            [BASH, str(path)], env={**base, **env}, capture_output=True, text=True, timeout=60
        )
        return result, log.read_text() if log.exists() else ""

    run.home = home  # type: ignore[attr-defined]
    return run


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_script_runs_head_workers_and_driver(study_file, fake_slurm):
    path, config = study_file()
    result, calls = fake_slurm(_slurm(path, config), PGPASSWORD="secret123")
    assert result.returncode == 3, result.stderr  # the driver's exit status is the job's
    token_file = fake_slurm.home / ".ray" / "auth_token"
    token = token_file.read_text()
    assert len(token) == 64 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for text in (result.stdout, result.stderr, calls):
        assert token not in text and "secret123" not in text
    starts = [line for line in calls.splitlines() if line.startswith("node up")]
    assert len(starts) == 3  # head + 2 workers, each with token auth on and the credentials
    assert all(s.startswith("node up auth=token creds=ok pid=") for s in starts)
    for line in starts:  # teardown: every `ray start --block` step ended with the job
        pid = int(line.split("pid=")[1].split()[0])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    (head,) = [s for s in starts if "--head" in s]
    workers = [s for s in starts if s != head]
    assert "--cpus-per-task=8 --gpus-per-task=2 --overlap" in head
    assert "-w node1 ray start --head --node-ip-address=10.1.2.3 --port=6379" in head
    assert "--num-cpus=8 --num-gpus=2 --dashboard-host=127.0.0.1" in head
    assert {s.split("-w ")[1].split()[0] for s in workers} == {"node2", "node3"}
    assert all("ray start --address=10.1.2.3:6379 --num-cpus=8 --num-gpus=2" in s for s in workers)
    assert "wait 10.1.2.3:6379 3" in calls
    assert f"eeg2bold sweep {STAGED} --address auto RAY_ADDRESS=10.1.2.3:6379" in calls
    assert "driver token ok" in calls and "driver creds ok" in calls
    # the driver ran only once the cluster was up
    assert calls.index("wait ") < calls.index("eeg2bold sweep")


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_script_stops_without_a_credential(study_file, fake_slurm):
    path, config = study_file()
    result, calls = fake_slurm(_slurm(path, config))
    assert result.returncode == 1
    assert "environment variable PGPASSWORD is not set" in result.stderr
    assert "ray start" not in calls and "eeg2bold" not in calls


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_script_reads_credentials_from_an_env_file(study_file, fake_slurm, tmp_path):
    env_file = tmp_path / "secrets.env"
    env_file.write_text("PGPASSWORD=secret123\n")
    path, config = study_file()
    result, calls = fake_slurm(_slurm(path, config, env_file=env_file))
    assert result.returncode == 3, result.stderr
    assert "driver creds ok" in calls and "secret123" not in result.stderr + calls


_APPTAINER_STUB = """echo "apptainer $*" >> "$STUB_LOG"
[[ "$1" == exec ]] && shift
while [[ "$1" == -* ]]; do
    case "$1" in --bind) shift 2 ;; *) shift ;; esac
done
shift  # the image
exec "$@"
"""
IMAGE = "/shared/images/eeg2bold.sif"
BINDS = "/shared/sweeps/cluster_t/launch,/shared/sweeps,/shared/data"


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_job_runs_everything_inside_apptainer(study_file, fake_slurm, tmp_path):
    """With --image, every Ray step and every command on the head (status, the node wait, the
    sweep driver) runs through `apptainer exec` with the job's folders bound and the GPUs
    passed through; the token and credentials still reach the driver."""
    stub = tmp_path / "bin" / "apptainer"
    stub.write_text("#!/bin/bash\n" + _APPTAINER_STUB)
    stub.chmod(0o755)
    path, config = study_file()
    script = _slurm(path, config, image=IMAGE)
    assert f"# Container:     apptainer, {IMAGE}" in script
    result, calls = fake_slurm(script, PGPASSWORD="secret123")
    assert result.returncode == 3, result.stderr
    exec_ = f"apptainer exec --nv --bind {BINDS} {IMAGE}"
    starts = [
        line for line in calls.splitlines() if line.startswith("srun") and "ray start" in line
    ]
    assert len(starts) == 3 and all(f"{exec_} ray start" in line for line in starts)
    inside = [line for line in calls.splitlines() if line.startswith("apptainer")]
    assert {line.split(IMAGE + " ")[1].split()[0] for line in inside} == {
        "ray",
        "python",
        "eeg2bold",
    }
    assert all(line.startswith(f"apptainer exec --nv --bind {BINDS} ") for line in inside)
    assert "driver token ok" in calls and "driver creds ok" in calls
    no_gpu, config0 = study_file(resources={"gpu": 0})
    assert "--nv" not in _slurm(no_gpu, config0, gpus_per_node=0, image=IMAGE)


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_slurm_job_runs_everything_through_pyxis(study_file, fake_slurm):
    path, config = study_file()
    script = _slurm(
        path,
        config,
        image="registry.example.org/eeg2bold:0.1",
        container="pyxis",
        container_bind=["/scratch/me"],
    )
    result, calls = fake_slurm(script, PGPASSWORD="secret123")
    assert result.returncode == 0, result.stderr  # the stub srun ran no driver
    flags = "--container-image=registry.example.org/eeg2bold:0.1 --container-mounts=" + ",".join(
        f"{b}:{b}" for b in [*BINDS.split(","), "/scratch/me"]
    )
    steps = [line for line in calls.splitlines() if line.startswith("srun")]
    for what in ("ray start --head", "ray start --address", "ray status", "python -", "eeg2bold"):
        mine = [line for line in steps if what in line]
        assert mine and all(flags in line for line in mine), (what, steps)
    assert "apptainer" not in script


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image": "two words"}, "is not a container image reference"),
        ({"image": IMAGE, "container_bind": ["relative/dir"]}, "give an absolute host folder"),
    ],
)
def test_slurm_refuses_bad_container_options(study_file, options, message):
    path, config = study_file()
    with pytest.raises(ConfigError, match=message):
        _slurm(path, config, **options)


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("container", ["apptainer", "pyxis"])
def test_slurm_container_scripts_are_valid_bash(study_file, tmp_path, container):
    path, config = study_file()
    script = tmp_path / "job.sh"
    script.write_text(_slurm(path, config, image=IMAGE, container=container))
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- Kubernetes -----------------------------------------------------------------------------
def _docs(text: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    return {d["kind"]: d for d in docs}


def test_k8s_manifest_parses_and_runs_the_sweep(study_file, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "secret123")
    path, config = study_file()
    text = _k8s(path, config, namespace="research")
    assert "secret123" not in text
    docs = _docs(text)
    assert set(docs) == {"ConfigMap", "RayJob"}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"] == {
        "name": "eeg2bold-cluster-t",
        "namespace": "research",
        "labels": {"app.kubernetes.io/name": "eeg2bold", "eeg2bold/sweep": "cluster_t"},
    }
    spec = job["spec"]
    assert spec["entrypoint"] == "eeg2bold sweep /config/study.yaml --address auto"
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]["template"]["spec"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 2
    worker = group["template"]["spec"]
    for pod in (head, worker):
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.org/eeg2bold:0.1.0"
        assert container["envFrom"] == [{"secretRef": {"name": "eeg2bold-storage"}}]
        assert container["env"] == [{"name": "RAY_USAGE_STATS_ENABLED", "value": "0"}]
        assert {"name": "study", "mountPath": "/config", "readOnly": True} in container[
            "volumeMounts"
        ]
        assert {"name": "shared", "mountPath": "/shared"} in container["volumeMounts"]
        assert {"name": "study", "configMap": {"name": "eeg2bold-cluster-t-study"}} in pod[
            "volumes"
        ]
    worker_res = worker["containers"][0]["resources"]
    assert worker_res["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert worker_res["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": 1}
    assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_k8s_config_map_round_trips_the_study(study_file):
    path, config = study_file(search={"data.window_s": [10.0, 15.0]}, seed=7)
    cm = _docs(_k8s(path, config))["ConfigMap"]
    assert cm["metadata"]["name"] == "eeg2bold-cluster-t-study"
    embedded = yaml.safe_load(cm["data"]["study.yaml"])
    assert parse_study_config(embedded).model_dump() == config.model_dump()
    assert "${PGPASSWORD}" in cm["data"]["study.yaml"]


def test_k8s_without_gpus_requests_none(study_file):
    path, config = study_file(resources={"gpu": 0})
    text = _k8s(path, config, gpu=0, resume=True)
    assert "nvidia.com/gpu" not in text
    spec = _docs(text)["RayJob"]["spec"]
    assert spec["entrypoint"].endswith("--address auto --resume")


def test_k8s_object_store_results_need_no_volume(study_file):
    path, config = study_file(
        dataset="s3://bucket/data/sim.zarr", storage={"results": "s3://bucket/sweeps/t"}
    )
    text = _k8s(path, config, pvc=None)
    assert "persistentVolumeClaim" not in text
    assert _docs(text)["RayJob"]["kind"] == "RayJob"


@pytest.mark.parametrize(
    ("overrides", "options", "message"),
    [
        ({"storage": {"optuna": "postgresql://u:hunter2@db/optuna"}}, {}, "literal credential"),
        ({"dataset": "s3://b/d?secret_key=hunter2"}, {}, "literal credential"),
        ({}, {"secret_name": None}, "name the Kubernetes Secret"),
        ({}, {"pvc": None}, "is a file path"),
        ({}, {"pvc_mount": "/data"}, "is not under /data"),
        ({}, {"gpu": 0}, "resources.gpu is 1 per fold but a worker pod has 0 GPUs"),
        ({}, {"memory": "32 GB"}, "not a Kubernetes quantity"),
        ({}, {"name": "Bad_Name"}, "name 'Bad_Name'"),
        ({}, {"image": ""}, "not a container image"),
    ],
)
def test_k8s_refuses(study_file, overrides, options, message):
    path, config = study_file(**overrides)
    with pytest.raises(ConfigError) as exc:
        _k8s(path, config, **options)
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)


# -- examples -------------------------------------------------------------------------------
def test_example_cluster_launcher_yaml_keeps_auth_on():
    text = (EXAMPLES / "ray-cluster.yaml").read_text()
    cluster = yaml.safe_load(text)
    assert cluster["provider"]["type"] == "local"
    starts = cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
    ray_starts = [c for c in starts if "ray start" in c]
    assert len(ray_starts) == 2
    assert all("RAY_AUTH_MODE=token" in c for c in ray_starts)
    assert "--dashboard-host=127.0.0.1" in ray_starts[0]
    assert "disabled" not in text and "0.0.0.0" not in text
    assert "~/.ray/auth_token" in cluster["file_mounts"]
    setup = " ; ".join(cluster["setup_commands"])
    assert setup.index("torch==2.13.0") < setup.index("eeg2bold[")


def test_example_cluster_launcher_yaml_fits_rays_schema():
    jsonschema = pytest.importorskip("jsonschema")
    spec = find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    schema_file = Path(next(iter(spec.submodule_search_locations))) / "autoscaler/ray-schema.json"
    if not schema_file.exists():
        pytest.skip("this Ray ships no cluster-launcher schema")
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(yaml.safe_load((EXAMPLES / "ray-cluster.yaml").read_text()), schema)


def test_example_study_is_a_valid_cluster_study(tmp_path):
    path = EXAMPLES / "study.yaml"
    config = load_study_config(path)
    check_cluster_storage(config)
    assert config.storage.optuna is not None and "${PGPASSWORD}" in config.storage.optuna
    script = render_slurm(path, config=config, nodes=2, cpus_per_node=16, gpus_per_node=4)
    assert "env_names=(PGPASSWORD)" in script
    manifest = render_k8s(
        path,
        config=config,
        image="eeg2bold:test",
        workers=2,
        cpu=16,
        memory="64Gi",
        gpu=4,
        secret_name="eeg2bold-storage",
        pvc="shared",
        pvc_mount="/shared",
    )
    embedded = _docs(manifest)["ConfigMap"]["data"]["study.yaml"]
    assert parse_study_config(yaml.safe_load(embedded)).model_dump() == config.model_dump()


def test_parsing_and_rendering_import_neither_torch_nor_the_models(tmp_path):
    """`launch slurm|k8s` and study-config parsing run on login nodes: fast, torch-free."""
    config = tmp_path / "s.yaml"
    config.write_text(
        "name: light\ndataset: /shared/data.zarr\nmodels: [beira, ridge]\n"
        "storage: {results: /shared/sweeps/light, optuna: 'journal:///shared/optuna.log'}\n"
    )
    code = (
        "import sys\n"
        "from eeg2bold.cli import main\n"
        "import eeg2bold.launch.cluster as cluster\n"
        "cluster.NODE_LOCAL = ()  # the staged copy goes to this test's tmp folder\n"
        "from eeg2bold.launch.config import load_study_config\n"
        f"load_study_config({str(config)!r})\n"
        f"assert main(['launch', 'slurm', {str(config)!r}, '--nodes', '2', "
        f"'--cpus-per-node', '4', '--stage-dir', {str(tmp_path)!r}, "
        f"'-o', {str(tmp_path / 'job.sh')!r}]) == 0\n"
        f"assert main(['launch', 'k8s', {str(config)!r}, '--image', 'r/e:1', '--workers', "
        f"'2', '--cpu', '4', '--memory', '8Gi', '--pvc', 'shared', '-o', "
        f"{str(tmp_path / 'job.yaml')!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m.startswith('eeg2bold.models'))\n"
        "print(loaded)\n"
    )
    assert last_line(code) == "[]"
    assert (tmp_path / "job.sh").exists() and (tmp_path / "job.yaml").exists()


def test_builtin_model_names_match_the_registry():
    from eeg2bold.model_names import BUILTIN_MODELS
    from eeg2bold.models import model_names

    assert set(BUILTIN_MODELS) == set(model_names()) - {"exploding", "planted", "tiny"}


# -- the RayJob against KubeRay's CRD schema ----------------------------------------------
CRD = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "kuberay" / "ray.io_rayjobs.yaml"


@pytest.fixture(scope="module")
def rayjob_schema():
    if not CRD.exists():
        pytest.skip(f"KubeRay's RayJob CRD is not at {CRD} (../shared/schemas/kuberay)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(CRD.read_text(), Loader=loader)  # a safe loader (C if available)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _unknown_fields(value, schema, path="") -> list[str]:
    """Fields the schema does not name: the API server prunes them silently."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            if not isinstance(extra, dict):
                return []
            return [f for k, v in value.items() for f in _unknown_fields(v, extra, f"{path}.{k}")]
        out = []
        for key, item in value.items():
            if key in props:
                out += _unknown_fields(item, props[key], f"{path}.{key}")
            else:
                out.append(f"{path}.{key}")
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            f
            for i, v in enumerate(value)
            for f in _unknown_fields(v, schema["items"], f"{path}[{i}]")
        ]
    return []


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "image_pull_secrets": ["regcred", "mirror"],
            "node_selector": ["nvidia.com/gpu.product=H100", "pool=gpu"],
            "tolerations": ["nvidia.com/gpu:NoSchedule", "dedicated=eeg2bold:NoExecute"],
            "service_account": "eeg2bold-runner",
            "active_deadline_s": 3600,
        },
    ],
)
def test_rayjob_validates_against_kuberays_schema_and_loses_no_field(
    study_file, rayjob_schema, options
):
    jsonschema = pytest.importorskip("jsonschema")
    path, config = study_file()
    job = _docs(_k8s(path, config, **options))["RayJob"]
    jsonschema.validate(job, rayjob_schema)
    assert _unknown_fields(job, rayjob_schema) == []
    # the walk does find what the API server would drop
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["nodeSelectr"] = {}
    assert _unknown_fields(job, rayjob_schema) == [
        ".spec.rayClusterSpec.headGroupSpec.template.spec.nodeSelectr"
    ]


def test_k8s_pod_options_reach_every_pod(study_file):
    path, config = study_file()
    job = _docs(
        _k8s(
            path,
            config,
            image_pull_secrets=["regcred"],
            node_selector=["pool=gpu"],
            tolerations=["nvidia.com/gpu:NoSchedule", "dedicated=eeg2bold:NoExecute"],
            service_account="eeg2bold-runner",
        )
    )["RayJob"]
    cluster = job["spec"]["rayClusterSpec"]
    for template in (
        cluster["headGroupSpec"]["template"],
        cluster["workerGroupSpecs"][0]["template"],
    ):
        pod = template["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["nodeSelector"] == {"pool": "gpu"}
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "eeg2bold", "effect": "NoExecute"},
        ]
        assert pod["serviceAccountName"] == "eeg2bold-runner"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"node_selector": ["pool"]}, "node selector 'pool': use KEY=VALUE"),
        ({"tolerations": ["gpu:NoSchedul"]}, "toleration 'gpu:NoSchedul'"),
        ({"service_account": "Bad_Name"}, "service account 'Bad_Name'"),
        ({"image_pull_secrets": ["a b"]}, "image pull secret 'a b'"),
    ],
)
def test_k8s_refuses_bad_pod_options(study_file, options, message):
    path, config = study_file()
    with pytest.raises(ConfigError, match=re.escape(message)):
        _k8s(path, config, **options)


# -- the container image ------------------------------------------------------------------
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _dockerfile_args() -> dict[str, str]:
    text = DOCKERFILE.read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))


def test_the_image_pins_the_ray_the_jobs_name(study_file):
    """The RayJob's rayVersion (the renderer's Ray) must be the image's Ray."""
    path, config = study_file()
    job = _docs(_k8s(path, config))["RayJob"]
    assert _dockerfile_args()["RAY_VERSION"] == job["spec"]["rayClusterSpec"]["rayVersion"]


def test_the_image_runs_as_a_non_root_user_with_a_selectable_torch():
    text = DOCKERFILE.read_text()
    args = _dockerfile_args()
    assert args["PYTHON_VERSION"] == "3.11" and args["TORCH_VERSION"] == "2.13.0"
    assert 'pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in text
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")  # the last USER is what runs
    assert text.index("COPY eeg2bold") < text.index("pip install") < text.index("USER")
    ignored = (DOCKERFILE.parent / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored  # the build context stays small

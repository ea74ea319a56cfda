"""The object-store path, for real: an S3-compatible server (moto) on loopback.

Credentials come from the environment, as they would for a user; they must never be printed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

pytest.importorskip("s3fs", reason="s3fs is not installed (pip install eeg2bold[s3])")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")

from eeg2bold.errors import DatasetError  # noqa: E402
from eeg2bold.storage import RunKey, create_dataset, mask_url, open_dataset  # noqa: E402

SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def s3_env():
    """Start moto on 127.0.0.1 and point the AWS environment at it for this module."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "eeg2bold-test",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import boto3

        boto3.client("s3").create_bucket(Bucket="eeg2bold-test")
        yield env
    server.stop()


@pytest.fixture
def s3_url(s3_env):
    return f"s3://eeg2bold-test/{uuid.uuid4().hex[:8]}/data.zarr"


def test_round_trip_idempotence_and_overwrite_on_s3(s3_url, make_info, make_run):
    info = make_info()
    ds = create_dataset(s3_url, info)
    run = make_run(info, truth=True, task="rest")
    assert ds.write_run(run) == "written"
    assert ds.write_run(make_run(info, truth=True, task="rest")) == "unchanged"

    reader = open_dataset(s3_url)
    assert reader.runs() == [RunKey("sub-01", "run-1")]
    back = reader.read_run(RunKey("sub-01", "run-1"), truth=True)
    np.testing.assert_array_equal(back.eeg, run.eeg)
    np.testing.assert_array_equal(back.volume_times, run.volume_times)
    assert back.task == "rest"
    assert back.truth is not None
    assert reader.verify(RunKey("sub-01", "run-1")) == []

    with pytest.raises(DatasetError, match="already exists with different content"):
        ds.write_run(make_run(info, seed=5))
    assert ds.write_run(make_run(info, seed=5), overwrite=True) == "replaced"
    np.testing.assert_array_equal(
        reader.read_run(RunKey("sub-01", "run-1")).eeg, make_run(info, seed=5).eeg
    )
    assert reader.verify(RunKey("sub-01", "run-1")) == []
    assert reader.stale_temporaries() == []


def test_missing_s3_dataset_is_a_clear_error(s3_url):
    with pytest.raises(DatasetError, match="not an eeg2bold dataset"):
        open_dataset(s3_url)


KILL_DURING_COPY = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import s3fs
    from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo, RunData, create_dataset

    info = DatasetInfo(
        name="s3", eeg=EEGInfo(sfreq=100.0, channels=("a", "b")), bold=BOLDInfo(tr=2.0, rois=("r",))
    )
    ds = create_dataset(sys.argv[1], info)
    copies = []
    copy = s3fs.S3FileSystem._cp_file

    async def copy_then_die(self, src, dst, **kw):
        copies.append(dst)
        if "/run-1/" in dst and len(copies) > 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return await copy(self, src, dst, **kw)

    s3fs.S3FileSystem._cp_file = copy_then_die
    rng = np.random.default_rng(0)
    ds.write_run(RunData(subject="sub-01", run="run-1", eeg=rng.normal(size=(2, 6000)),
                         bold=rng.normal(size=(1, 20)), volume_times=2.0 * np.arange(20)))
    """
)


def test_writer_killed_mid_copy_leaves_no_visible_run(s3_url, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_DURING_COPY)
    proc = subprocess.run(
        [sys.executable, str(script), s3_url], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    ds = open_dataset(s3_url)
    assert ds.runs() == []  # chunks were copied, but not the run's zarr.json
    copied = ds.location.fs.find(ds.location.path("sub-01", "run-1"))
    assert any(f.endswith("/bold/zarr.json") for f in copied)  # the kill landed mid-copy


def test_cli_reads_s3_with_credentials_from_env_and_never_prints_them(s3_url, make_info, make_run):
    info = make_info()
    create_dataset(s3_url, info).write_run(make_run(info))
    for args in (["inspect", s3_url], ["inspect", "--json", s3_url], ["inspect", s3_url + "x"]):
        proc = subprocess.run(
            [sys.executable, "-m", "eeg2bold.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ.copy(),
        )
        assert SECRET not in proc.stdout + proc.stderr
        assert "eeg2bold-test" in proc.stdout + proc.stderr  # bucket shown, key id not needed
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("case", ["no credentials", "no endpoint"])
@pytest.mark.parametrize("command", ["inspect", "simulate", "sweep"])
def test_object_store_settings_that_cannot_work_are_one_line(case, command, tmp_path):
    """No credentials, or an endpoint nothing answers on: one line naming the URL and the
    setting, exit 1 (was: "internal error: NoCredentialsError" / "EndpointConnectionError")."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup for credentials
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    if case == "no endpoint":
        env |= {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": SECRET}
    url = "s3://some-bucket/data.zarr"
    args = {
        "inspect": [url],
        "simulate": [url, "--subjects", "1", "--minutes", "1"],
        "sweep": [str(tmp_path / "study.yaml"), "--dry-run"],
    }[command]
    study = {"name": "s3", "dataset": url, "protocols": ["within"], "models": ["ridge"]}
    study["storage"] = {"results": str(tmp_path / "sweep")}
    (tmp_path / "study.yaml").write_text(json.dumps(study))  # JSON is YAML
    proc = subprocess.run(
        [sys.executable, "-m", "eeg2bold.cli", command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"eeg2bold: error: {url}: "), proc.stderr
    expected = {
        "no credentials": "no credentials for the object store (set AWS_ACCESS_KEY_ID",
        "no endpoint": f"endpoint http://127.0.0.1:{port} does not answer (check AWS_ENDPOINT_URL",
    }[case]
    assert expected in proc.stderr and "internal error" not in proc.stderr
    assert SECRET not in proc.stderr
    assert not (tmp_path / "sweep").exists()  # nothing written before the store was reached


def test_mask_url_hides_credentials():
    assert mask_url("postgresql://user:pw@db:5432/x") == "postgresql://***@db:5432/x"
    assert mask_url("s3://bucket/path.zarr") == "s3://bucket/path.zarr"
    masked = mask_url("https://h/p?X-Amz-Signature=abc&x=1&token=zz")
    assert "abc" not in masked
    assert "zz" not in masked
    assert "x=1" in masked

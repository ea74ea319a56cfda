"""Shared fixtures: small in-memory datasets and runs built from known numbers."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo, RunData, Truth

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# the test-only model plugin (tests/launch/eeg2bold_test_plugins.py), importable by Ray workers
PLUGIN_DIR = Path(__file__).resolve().parent / "launch"
PLUGIN = "eeg2bold_test_plugins"

# One intra-op thread: tests are many small problems, and multi-threaded BLAS/LAPACK on a
# shared 2-core machine spends most of its time waiting (an 800×800 eigh: 9 s vs 0.08 s).
torch.set_num_threads(1)


_RAY_ENV = (
    "RAY_TMPDIR",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_MODE",
    "EEG2BOLD_RESUME_KEY",
)


def pytest_configure(config: pytest.Config) -> None:
    """Ray state of this test session only: its own temp dir (sessions, sockets, logs; never
    /tmp/ray) and its own token (never the user's ~/.ray/auth_token), token auth on; and its
    own resume key (never ~/.config/eeg2bold). Set in the environment so every child (a
    sweep's driver, `ray start`) inherits the same."""
    root = Path(tempfile.mkdtemp(prefix="e2b-ray-", dir="/tmp"))  # short: socket paths
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    config._eeg2bold_ray = (root, {k: os.environ.get(k) for k in _RAY_ENV})  # type: ignore[attr-defined]
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(
        RAY_TMPDIR=str(root),
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_AUTH_MODE="token",
        EEG2BOLD_RESUME_KEY=str(root / "resume.key"),
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    root, saved = getattr(config, "_eeg2bold_ray", (None, {}))
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding a slow test first, the order otherwise pytest-randomly's (a stable sort on
    its shuffle): `make test`'s two xdist workers take whole files as they come free, and a
    long file started last would keep one worker busy while the other has nothing left."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def ray_temp_dir() -> Path:
    """Where this session's Ray instances keep their files."""
    return Path(os.environ["RAY_TMPDIR"])


@pytest.fixture
def make_info() -> Callable[..., DatasetInfo]:
    def make(
        *, n_channels: int = 4, n_rois: int = 3, sfreq: float = 100.0, tr: float = 2.0, **kw: Any
    ) -> DatasetInfo:
        return DatasetInfo(
            name=kw.pop("name", "test"),
            eeg=EEGInfo(sfreq=sfreq, channels=tuple(f"E{i}" for i in range(n_channels))),
            bold=BOLDInfo(tr=tr, rois=tuple(f"roi{i}" for i in range(n_rois))),
            **kw,
        )

    return make


@pytest.fixture
def make_run() -> Callable[..., RunData]:
    def make(
        info: DatasetInfo,
        *,
        subject: str = "sub-01",
        run: str = "run-1",
        seconds: float = 60.0,
        seed: int = 0,
        truth: bool = False,
        **kw: Any,
    ) -> RunData:
        rng = np.random.default_rng(seed)
        n_samples = int(seconds * info.eeg.sfreq)
        n_vol = int((seconds - 1.0) // info.bold.tr)
        times = 1.0 + info.bold.tr * np.arange(n_vol)
        eeg = rng.normal(0, 10, size=(len(info.eeg.channels), n_samples)).astype(np.float32)
        bold = rng.normal(size=(len(info.bold.rois), n_vol)).astype(np.float32)
        t = None
        if truth:
            t = Truth(
                arrays={"bold_clean": bold * 0.5, "envelopes": rng.random((2, 30))},
                attrs={"oracle_r": [0.5] * len(info.bold.rois), "env_sfreq": 10.0},
            )
        return RunData(
            subject=subject,
            run=run,
            eeg=kw.pop("eeg", eeg),
            bold=kw.pop("bold", bold),
            volume_times=kw.pop("volume_times", times),
            truth=t,
            **kw,
        )

    return make


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray with 2 CPUs for every test that needs it (ray.init costs seconds), in
    this session's own temp dir with its own token (see :func:`pytest_configure`).

    Workers inherit $EEG2BOLD_PLUGINS and a PYTHONPATH holding tests/launch, so the test-only
    model plugin resolves there; the test process itself keeps its environment.
    """
    ray = pytest.importorskip("ray")
    saved = {k: os.environ.get(k) for k in ("EEG2BOLD_PLUGINS", "PYTHONPATH")}
    os.environ["EEG2BOLD_PLUGINS"] = PLUGIN
    paths = (str(PLUGIN_DIR), saved["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    from eeg2bold.launch.tune.runtime import init_ray

    try:
        resources = init_ray(num_cpus=2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield {"resources": resources, "address": ray.get_runtime_context().gcs_address}
    ray.shutdown()


# The PostgreSQL server the suite may use (trust auth on this machine and CI's); override with
# $EEG2BOLD_TEST_PG_ADMIN (a URL to a database the user may CREATE DATABASE from).
PG_ADMIN = os.environ.get("EEG2BOLD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


class PostgresServer:
    """Creates uniquely named, empty databases on demand and drops them all at the end."""

    def __init__(self, admin_url: str):
        import psycopg

        self._psycopg = psycopg
        self.admin_url = admin_url
        self.created: list[str] = []
        with psycopg.connect(admin_url, connect_timeout=3):
            pass  # raises when no server answers

    def database(self, label: str = "db") -> str:
        """A fresh database; returns its name."""
        name = f"eeg2bold_test_{label}_{uuid.uuid4().hex[:10]}"
        with self._psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def url(self, name: str, *, user_info: str = "postgres") -> str:
        """A SQLAlchemy URL of database ``name`` (``user_info`` may hold ``${VAR}``)."""
        host = self.admin_url.split("@", 1)[1].rsplit("/", 1)[0]
        return f"postgresql://{user_info}@{host}/{name}"

    def drop_all(self) -> None:
        with self._psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The suite's PostgreSQL: every database it makes is new, and dropped afterwards."""
    pytest.importorskip("psycopg")
    try:
        server = PostgresServer(PG_ADMIN)
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN}: {str(exc).splitlines()[0]}")
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def ingested(tmp_path_factory):
    """A BrainVision recording at 250 Hz ingested with notch, band-pass 1-40 Hz, resampling to
    100 Hz and average reference, and a ridge model trained on it (predict, the live twin)."""
    from recording_files import make_ingested

    return make_ingested(tmp_path_factory.mktemp("ingested"))

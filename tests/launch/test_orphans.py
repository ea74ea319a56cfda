"""A driver killed with SIGKILL leaves Ray's two per-node agents behind for about a minute;
the next local start stops them, and nothing else (issue 26, item 6)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from eeg2bold.launch.tune.runtime import reap_orphaned_agents


def _orphan(title: str) -> int:
    """A process titled ``title`` whose parent has exited (adopted by init)."""
    out = subprocess.run(
        ["bash", "-c", f'(exec -a "{title}" sleep 120 </dev/null >/dev/null 2>&1) & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def test_orphaned_ray_agents_are_stopped_and_nothing_else():
    if not Path("/proc").is_dir():
        pytest.skip("no /proc: the agents are looked for there (Linux)")
    agent = _orphan("ray::DashboardAgent")
    bystander = _orphan("not-a-ray-agent")
    parented = subprocess.Popen(["bash", "-c", 'exec -a "ray::RuntimeEnvAgent" sleep 120'])
    try:
        deadline = time.monotonic() + 5
        while (_stat(agent) or ["", "0"])[1] != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        if (_stat(agent) or ["", "0"])[1] != "1":
            pytest.skip("orphans are adopted by a subreaper here, not by init")
        stopped = reap_orphaned_agents()
        assert agent in stopped
        assert bystander not in stopped and parented.pid not in stopped
        deadline = time.monotonic() + 5
        while _alive(agent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(agent)
        assert _alive(bystander) and parented.poll() is None
    finally:
        for pid in (agent, bystander):
            if _alive(pid):
                os.kill(pid, 9)
        parented.kill()
        parented.wait()

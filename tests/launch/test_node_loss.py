"""What a user is told when a trial loses its node or its worker (fast: no cluster; the
two-node test in test_resume_and_clusters kills a real Ray node)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from eeg2bold.launch.tune import progress as tune_callbacks
from eeg2bold.launch.tune import runtime as ray_runtime

HEAD, WORKER, SPARE = "a1" * 28, "b2" * 28, "c3" * 28


@pytest.fixture
def nodes(monkeypatch):
    """A fake cluster view: node id -> alive."""
    state = {HEAD: True, WORKER: True, SPARE: True}
    monkeypatch.setattr(
        tune_callbacks.ray,
        "nodes",
        lambda: [
            {"NodeID": n, "Alive": alive, "NodeManagerAddress": f"10.0.0.{i}"}
            for i, (n, alive) in enumerate(state.items(), start=1)
        ],
    )
    return state


def _trial(tune_id: str, identity: str, last: dict) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tune_id, config={"trial": identity}, last_result=last)


def _progress():
    lines, recorded = [], []
    progress = tune_callbacks._Progress(
        "within-ridge", 4, lines.append, "/tmp/x", lambda t, e: recorded.append((t, e))
    )
    return progress, lines, recorded


def test_a_lost_node_is_told_once_with_the_checkpoint_and_the_new_node(nodes):
    progress, lines, recorded = _progress()
    trial = _trial("t1", "abc12345", {"epoch": 2, "nodes": WORKER, tune_callbacks.METRIC: 0.1})
    nodes[WORKER] = False
    progress.on_trial_recover(0, [], trial)
    assert lines == []  # told once it has resumed, not before
    progress.on_trial_result(
        0, [], trial, {"epoch": 3, "resumed_from": 2, "nodes": SPARE, tune_callbacks.METRIC: 0.2}
    )
    assert lines[0] == (
        f"[within-ridge] trial abc12345 lost its node {WORKER[:8]} (10.0.0.2); resumed from "
        f"the epoch 2 checkpoint on another node {SPARE[:8]} (10.0.0.3)"
    )
    assert lines[1].startswith("[within-ridge] trial abc12345 epoch 3:")
    progress.on_trial_result(
        0, [], trial, {"epoch": 4, "resumed_from": 2, "nodes": SPARE, tune_callbacks.METRIC: 0.2}
    )
    assert len(lines) == 3  # the retry line is not repeated
    assert (progress.retried, progress.lost_nodes) == (1, 1)
    assert recorded == [
        ("abc12345", {"lost_node": True, "resumed_from": 2, "lost": [WORKER], "on": [SPARE]})
    ]


def test_a_dead_worker_on_a_live_node_is_not_called_a_lost_node(nodes):
    progress, lines, recorded = _progress()
    trial = _trial("t1", "abc12345", {"epoch": 0, "nodes": HEAD})
    progress.on_trial_recover(0, [], trial)
    progress.on_trial_result(0, [], trial, {"epoch": 1, "resumed_from": 0, "nodes": HEAD})
    assert lines[0] == (
        f"[within-ridge] trial abc12345 lost its worker process (node {HEAD[:8]} (10.0.0.1) "
        f"is still up); restarted from the beginning (it had finished no epoch) on node "
        f"{HEAD[:8]} (10.0.0.1)"
    )
    assert (progress.retried, progress.lost_nodes) == (1, 0)
    assert recorded[0][1]["lost_node"] is False


def test_retries_exhausted_name_the_lost_node(nodes):
    progress, lines, _ = _progress()
    trial = _trial("t1", "abc12345", {"epoch": 1, "nodes": WORKER})
    progress.on_trial_recover(0, [], trial)
    nodes[WORKER] = False
    progress.on_trial_error(0, [], trial)
    assert lines == [
        f"[within-ridge] trial abc12345 FAILED (1/4): lost its node {WORKER[:8]} (10.0.0.2); "
        + tune_callbacks.WORKER_DIED
    ]


def test_a_failing_record_never_stops_the_sweep(nodes):
    def broken(identity, event):
        raise RuntimeError("database gone")

    lines: list[str] = []
    progress = tune_callbacks._Progress("arm", 1, lines.append, "/tmp/x", broken)
    trial = _trial("t1", "abc12345", {"nodes": HEAD})
    progress.on_trial_recover(0, [], trial)
    progress.on_trial_result(0, [], trial, {"nodes": HEAD, "resumed_from": 0})
    assert "could not record the retry in Optuna: database gone" in lines[1]


def test_progress_pickled_by_an_older_version_still_resumes():
    """Tune restores callbacks from its pickle: one saved before retries were recorded lacks
    the new fields."""
    old = tune_callbacks._Progress.__new__(tune_callbacks._Progress)
    old.__setstate__({"label": "arm", "total": 1, "echo": print, "results": "", "retried": 0})
    assert (old.record, old.lost_nodes, old._pending) == (None, 0, {})


def test_ray_messages_go_to_the_log_file_not_the_console(tmp_path, capfd):
    """Tune's tracebacks (the `ray` logger) and what Ray forwards to the driver's console
    (worker output, raylet and GCS errors) are written to the file; nothing reaches the
    console; both are restored afterwards."""
    from ray._private import worker

    ray_logger = logging.getLogger("ray")
    stream = logging.StreamHandler()  # stderr, as Ray configures it
    ray_logger.addHandler(stream)
    log = tmp_path / "logs" / "ray.log"
    raylet = {"pid": "raylet", "ip": "10.0.0.2", "is_err": False}
    try:
        with ray_runtime.ray_messages_to(str(log)) as where:
            assert where == str(log)
            logging.getLogger("ray.tune.execution.tune_controller").error("Trial task failed X")
            # as Ray's error listener and log dispatcher print them
            worker.print_to_stdstream(raylet | {"lines": ["node marked dead"]}, False)
            worker.print_to_stdstream(
                {"pid": 42, "ip": "10.0.0.3", "is_err": True, "lines": ["worker died"]}, False
            )
        assert capfd.readouterr() == ("", "")
        text = log.read_text()
        assert "Trial task failed X" in text
        assert "(pid=raylet, ip=10.0.0.2) node marked dead" in text
        assert "(pid=42, ip=10.0.0.3) worker died" in text
        worker.print_to_stdstream(raylet | {"lines": ["afterwards"]}, False)
        assert "afterwards" in capfd.readouterr().out  # the console printer is back
        assert stream in ray_logger.handlers
    finally:
        ray_logger.removeHandler(stream)


def test_debug_leaves_ray_on_the_console_and_an_empty_log_is_removed(tmp_path):
    log = tmp_path / "ray.log"
    with ray_runtime.ray_messages_to(str(log), debug=True) as where:
        assert where is None
    assert not log.exists()
    with ray_runtime.ray_messages_to(str(log)):
        pass
    assert not log.exists()  # nothing written: no file to point the user at


def test_a_node_whose_raylet_no_longer_answers_is_lost_before_ray_marks_it(monkeypatch):
    """Ray marks a node dead only after missed heartbeats (tens of seconds); a retried trial
    often resumes sooner, so the raylet's port is probed."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        live = listening.getsockname()[1]
        view = [
            {"NodeID": WORKER, "Alive": True, "NodeManagerAddress": "127.0.0.1"}
            | {"NodeManagerPort": closed},
            {"NodeID": HEAD, "Alive": True, "NodeManagerAddress": "127.0.0.1"}
            | {"NodeManagerPort": live},
        ]
        monkeypatch.setattr(tune_callbacks.ray, "nodes", lambda: view)
        assert tune_callbacks._dead([WORKER, HEAD]) == [WORKER]
        assert tune_callbacks._dead([SPARE]) == [SPARE]  # no longer listed at all


def test_a_trial_lost_before_its_first_report_says_so(nodes):
    progress, lines, _ = _progress()
    trial = _trial("t1", "abc12345", {})
    progress.on_trial_recover(0, [], trial)
    progress.on_trial_result(0, [], trial, {"nodes": HEAD, "resumed_from": 0})
    assert lines[0] == (
        "[within-ridge] trial abc12345 lost its worker or node before its first epoch; "
        f"restarted from the beginning (it had finished no epoch) on node {HEAD[:8]} (10.0.0.1)"
    )
    assert (progress.retried, progress.lost_nodes) == (1, 0)

"""The actors a sweep starts on its nodes: the fold actor, its pool and the node's run store.

Kept apart from :mod:`eeg2bold.launch.tune.tuner` so that their processes import Ray's core,
not Ray Tune and the search; and torch-free at import, so that the pool and the run stores
(whose processes load this module too) start in a fraction of a second: a fold actor imports
the fold engine when it starts.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import ray
from ray.exceptions import RayActorError


# -- one copy of the data per node -------------------------------------------------------
def run_store_name(node_id: str) -> str:
    return f"eeg2bold-runs-{node_id}"


@ray.remote(num_cpus=0)
class RunStore:
    """A node's runs in Ray's object store: read from the dataset once, then handed to every
    fold actor of the node as a reference, which ``ray.get`` maps without copying (read-only
    NumPy arrays in shared memory). Started by the sweep's driver, one per node."""

    def __init__(self) -> None:
        self.refs: dict[tuple[str, str, str], ray.ObjectRef] = {}
        self.reads = 0
        self.datasets: dict[str, Any] = {}

    def get(self, url: str, subject: str, run: str) -> list[ray.ObjectRef]:
        """[a reference to the run] (in a list, so the caller receives the reference)."""
        from eeg2bold.storage import RunKey, open_dataset
        from eeg2bold.storage.location import expand_env

        key = (url, subject, run)
        if key not in self.refs:
            if url not in self.datasets:
                self.datasets[url] = open_dataset(expand_env(url))
            self.refs[key] = ray.put(self.datasets[url].read_run(RunKey(subject, run)))
            self.reads += 1
        return [self.refs[key]]

    def stats(self) -> dict[str, int]:
        return {"reads": self.reads, "runs": len(self.refs)}


def read_from_node(dataset: Any, key: Any) -> Any:
    """A fold actor's run: from its node's :class:`RunStore` when there is one (the read
    function of its :class:`~eeg2bold.training.engine.RunCache`)."""
    try:
        node = ray.get_runtime_context().get_node_id()
        store = ray.get_actor(run_store_name(node))
        refs: list[Any] = ray.get(store.get.remote(dataset.url, key.subject, key.run))
    except (ValueError, RayActorError):  # no store on this node (it joined later), or
        return dataset.read_run(key)  # its sweep ended: read the run here
    return ray.get(refs[0])


# -- the fold actor ----------------------------------------------------------------------
class _FoldActor:
    """The engine's FoldHost (one or more FoldRunners) in its own process, reading its
    node's shared runs; the trial maps folds to actors."""

    def __init__(self, *, threads: int | None = None, gpu: bool = True):
        from eeg2bold.training.engine import FoldHost, RunCache

        self.host = FoldHost(threads=threads, gpu=gpu, cache=RunCache(read=read_from_node))

    def call(self, method: str, calls: list[tuple[int, dict[str, Any]]]) -> list[Any]:
        return self.host.call(method, calls)

    def pid(self) -> int:
        """Its process id (which process served a trial: tests and progress)."""
        return os.getpid()


FoldActor = ray.remote(_FoldActor)


# -- fold actors live for the sweep --------------------------------------------------------
def fold_pool_name(sweep_id: str) -> str:
    return f"eeg2bold-fold-pool-{sweep_id}"


@ray.remote(num_cpus=0)
class FoldActorPool:
    """The sweep's CPU fold actors, lent to trials of every arm (started by the sweep's driver
    on its own node, ended with the sweep).

    Resources stay Ray's: a trial still holds its placement group (one bundle per fold
    actor, whose CPUs Ray reserves on a node), and borrows for each bundle an idle actor on
    that bundle's node; the actors themselves claim no CPU, so a node runs at most as many
    busy fold actors as the bundles Ray placed there. An actor that did not come back
    healthy is ended, never lent again. Actors keep their imports and their node's runs
    between trials, arms, models and protocols (a fold runner is set up anew per trial).
    """

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[Any]] = {}
        self.lent: dict[str, list[tuple[tuple[str, int], Any]]] = {}
        self.started = 0

    def lease(self, trial: str, wants: list[tuple[str, int]]) -> list[Any]:
        """One actor per (node id, torch threads) in ``wants``, in order. A trial that
        borrows again without giving back (a retry after its worker or node died) has its
        earlier actors ended first."""
        self.give_back(trial, healthy=False)
        out = []
        for key in wants:
            free = self.idle.get(key) or []
            out.append((key, free.pop() if free else self._start(key)))
        self.lent[trial] = out
        return [actor for _, actor in out]

    def prestart(self, wants: list[tuple[str, int]]) -> None:
        """Start idle actors ahead of the first trials (one per (node id, torch threads)), so
        their imports overlap Tune's own start instead of delaying the first trial."""
        for key in wants:
            self.idle.setdefault(key, []).append(self._start(key))

    def _start(self, key: tuple[str, int]) -> Any:
        """A new CPU fold actor on node ``key[0]`` with ``key[1]`` torch threads."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node, threads = key
        strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        self.started += 1
        return FoldActor.options(num_cpus=0, scheduling_strategy=strategy).remote(
            threads=threads, gpu=False
        )

    def give_back(self, trial: str, *, healthy: bool) -> None:
        for key, actor in self.lent.pop(trial, []):
            if healthy:
                self.idle.setdefault(key, []).append(actor)
            else:
                with contextlib.suppress(Exception):  # already gone with its node
                    ray.kill(actor)

    def stats(self) -> dict[str, int]:
        idle = sum(len(v) for v in self.idle.values())
        lent = sum(len(v) for v in self.lent.values())
        return {"started": self.started, "idle": idle, "lent": lent}

    def shutdown(self) -> None:
        for trial in list(self.lent):
            self.give_back(trial, healthy=False)
        for actors in self.idle.values():
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
        self.idle.clear()

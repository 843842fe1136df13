"""Ray, as the driver uses it: join a cluster or start a private one, submit trials, collect them.

The driver never imports Ray itself; a worker that dies, a task that is cancelled or a node that
goes away come back from `result` as a failed `TrialResult` saying why.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any

from mixnas.errors import MixnasError, first_line
from mixnas.orchestrator.config import ResourcesConfig
from mixnas.orchestrator.trials import TrialPayload, TrialResult


def trial_resources(cluster: dict[str, float], resources: ResourcesConfig) -> dict[str, float]:
    """What each trial asks Ray for: `num_cpus` and `num_gpus` of its task.

    Args:
        cluster: The cluster's total resources (`ray.cluster_resources()`).
        resources: The study's `resources`; an unset `gpus_per_trial` asks for one whole GPU
            when the cluster has any, else none.

    Returns:
        {'num_cpus': ..., 'num_gpus': ...}, fractions allowed (Ray packs them).

    Raises:
        MixnasError: The cluster could never run a trial so sized (Ray would wait forever).
    """
    gpus, cpus = resources.gpus_per_trial, resources.cpus_per_trial
    have_gpus, have_cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    if gpus is None:
        gpus = 1.0 if have_gpus > 0 else 0.0
    elif gpus > have_gpus:
        raise MixnasError(
            f"gpus_per_trial is {gpus:g} but the Ray cluster has {have_gpus:g} GPU(s)"
            + (" (a private local Ray sees the GPUs of this machine; join a cluster with GPUs "
               "with --ray-address)" if have_gpus == 0 else ""))
    if cpus > have_cpus:
        raise MixnasError(f"cpus_per_trial is {cpus:g} but the Ray cluster has {have_cpus:g} CPUs")
    return {"num_cpus": cpus, "num_gpus": gpus}


def trials_that_fit(cluster: dict[str, float], per_trial: dict[str, float]) -> int:
    """How many trials of `per_trial` size the cluster runs at once (at least 1): its GPUs over
    each trial's GPU share when trials take GPUs, and its CPUs over each trial's CPUs."""
    fits = [cluster.get("CPU", 0.0) / per_trial["num_cpus"]]
    if per_trial["num_gpus"] > 0:
        fits.append(cluster.get("GPU", 0.0) / per_trial["num_gpus"])
    return max(1, math.floor(min(fits) + 1e-6))  # 1 / 0.1 is 9.999...


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nothing listens on (Ray itself retries for many minutes).

    Raises:
        MixnasError: A malformed address or nothing listening there.
    """
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise MixnasError(f"bad Ray address '{address}': expected HOST:PORT or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise MixnasError(f"cannot reach the Ray cluster at '{address}': {exc}") from None


class RayRuntime:
    """Runs trials as Ray tasks.

    Args:
        address: A cluster to join (HOST:PORT or 'auto'); None starts a private local Ray, never
            a cluster found by chance (`ray.init()` alone would join the last `ray start` on this
            machine), with CPUs for `workers` trials (all of this machine's without `workers`)
            and the GPUs Ray finds here.
        workers: Trials in flight at once; None: as many as the cluster's resources allow
            (`trials_that_fit`, known once `start` has joined the cluster).
        resources: What each trial asks for (the study's `resources`).
    """

    def __init__(self, address: str | None, workers: int | None,
                 resources: ResourcesConfig | None = None):
        self.address, self.workers = address, workers
        self.resources = resources or ResourcesConfig()
        self.per_trial: dict[str, float] = {}
        self.owns_ray = False
        self.remote: Any = None

    def start(self) -> None:
        """Join or start Ray; raises MixnasError when the cluster cannot be joined."""
        import ray

        from mixnas.orchestrator.worker import run_trial

        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            common = {"logging_level": "ERROR", "log_to_driver": False}
            if self.address:
                check_ray_address(self.address)
                try:
                    ray.init(address=self.address, **common)
                except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
                    raise MixnasError(
                        f"cannot join the Ray cluster at '{self.address}': {first_line(exc)}"
                        " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
                        "give this machine the cluster's token)"
                    ) from None
            else:
                cpus = (math.ceil(self.workers * self.resources.cpus_per_trial) if self.workers
                        else os.cpu_count() or 1)
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, **common)
        cluster = ray.cluster_resources()
        try:
            self.per_trial = trial_resources(cluster, self.resources)
        except MixnasError:
            self.stop()
            raise
        if self.workers is None:
            self.workers = trials_that_fit(cluster, self.per_trial)
        self.remote = ray.remote(max_retries=0, **self.per_trial)(run_trial)

    def stop(self) -> None:
        """Shut down a Ray this runtime started (a joined cluster is left alone)."""
        import ray

        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    def submit(self, payload: TrialPayload) -> Any:
        """Start a trial; returns its handle (a Ray object reference)."""
        return self.remote.remote(payload)

    @staticmethod
    def ready(handles: list[Any], timeout_s: float) -> list[Any]:
        """The handles of trials that finished, waiting up to `timeout_s` for the first."""
        import ray

        done, _ = ray.wait(handles, num_returns=1, timeout=timeout_s)
        return done

    @staticmethod
    def result(handle: Any) -> TrialResult:
        """A finished trial's result; a cancelled or lost one as a failure."""
        import ray

        try:
            return ray.get(handle)
        except ray.exceptions.TaskCancelledError:
            return TrialResult.failed("cancelled")
        except ray.exceptions.RayError as exc:  # the worker process died or the node went away
            return TrialResult.failed(f"worker died: {first_line(exc)}", retry=True)

    @staticmethod
    def cancel(handle: Any) -> None:
        """Stop a running trial now."""
        import ray

        ray.cancel(handle, force=True)

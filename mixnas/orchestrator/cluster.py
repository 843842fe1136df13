"""Ray, as the driver uses it: join a cluster or start a private one, submit trials, collect them.

The driver never imports Ray itself; a worker that dies, a task that is cancelled or a node that
goes away come back from `result` as a failed `TrialResult` saying why.
"""

from __future__ import annotations

import socket
from typing import Any

from mixnas.errors import MixnasError, first_line
from mixnas.orchestrator.trials import TrialPayload, TrialResult


def trial_resources(cluster: dict[str, float]) -> dict[str, float]:
    """What each trial asks Ray for: one CPU, and one GPU when the cluster has any."""
    return {"num_cpus": 1, "num_gpus": 1 if cluster.get("GPU", 0) > 0 else 0}


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
        address: A cluster to join (HOST:PORT or 'auto'); None starts a private local Ray with
            `workers` CPUs, never a cluster found by chance (`ray.init()` alone would join the
            last `ray start` on this machine).
        workers: CPUs of a private local Ray.
    """

    def __init__(self, address: str | None, workers: int):
        self.address, self.workers = address, workers
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
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False, **common)
        resources = trial_resources(ray.cluster_resources())
        self.remote = ray.remote(max_retries=0, **resources)(run_trial)

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

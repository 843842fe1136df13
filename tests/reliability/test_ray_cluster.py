"""What each trial asks Ray for, and which Ray addresses the driver accepts. (Studies on an
existing cluster run in test_chaos.py, through `--ray-address auto`, and test_postgres.py.)"""

from __future__ import annotations

import pytest
import ray

from mixnas.errors import MixnasError
from mixnas.orchestrator.cluster import RayRuntime, check_ray_address, trial_resources
from mixnas.orchestrator.config import ResourcesConfig


def test_each_trial_asks_for_a_gpu_when_the_cluster_has_one(monkeypatch):
    assert trial_resources({"CPU": 8.0}, ResourcesConfig()) == {"num_cpus": 1, "num_gpus": 0}
    assert trial_resources({"CPU": 8.0, "GPU": 0.0}, ResourcesConfig()) == {"num_cpus": 1, "num_gpus": 0}
    assert trial_resources({"CPU": 8.0, "GPU": 2.0}, ResourcesConfig()) == {"num_cpus": 1, "num_gpus": 1}
    # the driver wires it into the remote function, on a cluster it joined but does not own
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 4.0})
    runtime = RayRuntime(None, workers=2)
    runtime.start()
    options = runtime.remote._default_options
    assert (options["num_cpus"], options["num_gpus"], options["max_retries"]) == (1, 1, 0)
    assert not runtime.owns_ray


@pytest.mark.parametrize("address", ["nonsense", "host:port", "127.0.0.1:"])
def test_malformed_ray_addresses_are_refused(address):
    with pytest.raises(MixnasError, match="bad Ray address"):
        check_ray_address(address)


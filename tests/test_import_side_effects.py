"""Importing mixnas changes nothing process-wide (issue 15): Optuna's log level and the warning
filters stay the user's. Quieting Optuna is the CLI's business (`commands.common.quiet_optuna`).
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import logging, warnings
import optuna, torch, sqlalchemy, starlette  # their own import-time filters are not ours
level, filters = optuna.logging.get_verbosity(), list(warnings.filters)
import mixnas.orchestrator.study, mixnas.orchestrator.driver, mixnas.orchestrator.promote
import mixnas.orchestrator.worker, mixnas.orchestrator.surrogate, mixnas.dashboard.app
import mixnas.export, mixnas.storage, mixnas.kernels, mixnas.search_space.grammar, mixnas.cli
assert optuna.logging.get_verbosity() == level, "optuna verbosity changed"
assert list(warnings.filters) == filters, [f for f in warnings.filters if f not in filters]
print("ok")
"""


def test_importing_mixnas_leaves_logging_and_warnings_alone():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

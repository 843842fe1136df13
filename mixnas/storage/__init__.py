"""The study database: the one package that talks SQL (SQLAlchemy and alembic live only here).

Modelled on Optuna's `storages/`: `BaseStorage` (base.py) names every read and write of mixnas's
tables, `RDBStorage` (rdb.py) answers them over SQLite or PostgreSQL, engine.py owns engines and
URLs, models.py the tables and migrations/ their history. The orchestrator, the CLI, promote, the
dashboard and export's command work through it; SQLAlchemy's errors leave it as mixnas's own.
"""

from mixnas.storage.base import BaseStorage, TrialCounts, TrialSummary
from mixnas.storage.engine import check_url, check_writable, optuna_storage, safe_url
from mixnas.storage.models import (
    TERMINAL_STATES,
    TRIAL_STATES,
    CurvePoint,
    DesignClaim,
    DriverRecord,
    StudyRecord,
    TrialRecord,
    TrialWeights,
    utcnow,
)
from mixnas.storage.rdb import RDBStorage

__all__ = [
    "TERMINAL_STATES",
    "TRIAL_STATES",
    "BaseStorage",
    "CurvePoint",
    "DesignClaim",
    "DriverRecord",
    "RDBStorage",
    "StudyRecord",
    "TrialCounts",
    "TrialRecord",
    "TrialSummary",
    "TrialWeights",
    "check_url",
    "check_writable",
    "optuna_storage",
    "safe_url",
    "utcnow",
]

"""mixnas's own tables, kept next to Optuna's in the same database.

Optuna keeps parameters and objective values; these tables keep what its user attributes should not:
the architecture (canonical JSON and hash), the full metric and profile record, the learning curve,
the failure reason, the kept weights, the driver heartbeats that make resume safe, and the designs
being trained right now. Only SQLAlchemy is imported here so that the dashboard can read the
database without Ray or torch. A change here needs a migration (migrations/versions/).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Every state a trial row can be in, in the order tables list them.
TRIAL_STATES = ("running", "complete", "failed", "pruned", "infeasible")
# States that count a trial as done (a failure counts unless a retry of it was queued).
TERMINAL_STATES = ("complete", "pruned", "infeasible")


def utcnow() -> datetime:
    """The current UTC time without a time zone (as the columns store it)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class StudyRecord(Base):
    __tablename__ = "mixnas_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512), unique=True, index=True)
    config: Mapped[dict] = mapped_column(JSON)  # the resolved study config (plain JSON)
    config_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    objectives: Mapped[list] = mapped_column(JSON)  # [{"name": str, "direction": str}]
    target_trials: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), default="running")  # running|finished|stopped
    parent_study: Mapped[str | None] = mapped_column(String(512), nullable=True)  # promote link
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    trials: Mapped[list[TrialRecord]] = relationship(back_populates="study")


class TrialRecord(Base):
    """One evaluation attempt. `number` is Optuna's trial number within the study."""

    __tablename__ = "mixnas_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_mixnas_trial_number"),
        Index("ix_mixnas_trials_study_state", "study_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("mixnas_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # running | complete | failed | pruned | infeasible
    state: Mapped[str] = mapped_column(String(16), default="running")
    arch_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # canonical JSON
    arch_hash: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    baseline: Mapped[str | None] = mapped_column(String(128), nullable=True)  # baseline name
    params: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # Optuna parameters
    values: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {objective: value}
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # task metrics
    profile: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # cost metrics
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # retries of the same parameters
    retry_of: Mapped[int | None] = mapped_column(Integer, nullable=True)  # trial number retried
    retried: Mapped[bool] = mapped_column(Boolean, default=False)  # a retry was queued for it
    driver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(256), nullable=True)
    compute_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    saved_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)  # pruning savings
    # the trial number whose result this one reused: same architecture, so not trained again
    duplicate_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # promote: the trial of the parent study (`study.parent_study`) this design was scaled from
    parent_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    study: Mapped[StudyRecord] = relationship(back_populates="trials")
    curve: Mapped[list[CurvePoint]] = relationship(
        back_populates="trial", order_by="CurvePoint.step", cascade="all, delete-orphan"
    )


class CurvePoint(Base):
    """One evaluation during training: the learning curve and the rung results."""

    __tablename__ = "mixnas_curve_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("mixnas_trials.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    rung: Mapped[int | None] = mapped_column(Integer, nullable=True)

    trial: Mapped[TrialRecord] = relationship(back_populates="curve")


class TrialWeights(Base):
    """Trained weights (safetensors bytes) of trials the study keeps (Pareto front by default)."""

    __tablename__ = "mixnas_weights"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("mixnas_trials.id", ondelete="CASCADE"), primary_key=True
    )
    vocab_size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DriverRecord(Base):
    """A driver process working on a study; its heartbeat tells `resume` whether it still lives."""

    __tablename__ = "mixnas_drivers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("mixnas_studies.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DesignClaim(Base):
    """A design (architecture hash) that a trial of the study is training right now.

    A driver that claims a design before training it lets other drivers of the same study wait
    for that result rather than train the design twice; the claim goes when the trial finishes.
    """

    __tablename__ = "mixnas_design_claims"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("mixnas_studies.id", ondelete="CASCADE"), primary_key=True
    )
    arch_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("mixnas_trials.id", ondelete="CASCADE"))
    driver_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

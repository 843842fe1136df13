"""promoted trials link their parent trial; in-flight design claims

Revision ID: 0003
Revises: 0002

`mixnas_trials.parent_trial` replaces the `"<parent study>#<trial>"` baseline name that promote
used as its link (filled in here for studies promote made before); `mixnas_design_claims` holds
the designs being trained right now.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mixnas_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_trial", sa.Integer(), nullable=True))
    op.create_table(
        "mixnas_design_claims",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("arch_hash", sa.String(length=32), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("driver_id", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["mixnas_studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["mixnas_trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("study_id", "arch_hash"),
    )
    _link_promoted_trials()


def _link_promoted_trials() -> None:
    """Trials of promoted studies were named `<parent>#<trial>`: keep that link as a number."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT t.id, t.baseline, s.parent_study FROM mixnas_trials t "
            "JOIN mixnas_studies s ON s.id = t.study_id "
            "WHERE s.parent_study IS NOT NULL AND t.baseline IS NOT NULL"
        )
    ).all()
    for trial_id, baseline, parent in rows:
        prefix, sep, number = baseline.rpartition("#")
        if sep and prefix == parent and number.isdigit():
            conn.execute(
                sa.text("UPDATE mixnas_trials SET parent_trial = :n WHERE id = :id"),
                {"n": int(number), "id": trial_id},
            )


def downgrade() -> None:
    op.drop_table("mixnas_design_claims")
    with op.batch_alter_table("mixnas_trials", schema=None) as batch_op:
        batch_op.drop_column("parent_trial")

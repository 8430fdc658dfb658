"""scorer: the fold's change log, the days each fold changed by version, so that a reader may keep
day totals across requests (a past board then reads only what changed since)

Revision ID: 0012
Revises: 0011

Days folded before this migration are not in the log; a reader starts from the database as it
is, so they are not missed: the log only tells a reader what changed after it read. A scorer
still running code from before this migration folds without logging: upgrade with the scorers
stopped (deploy/k8s/README.md, "Upgrade").
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('day_changes'):
        return  # test helpers may have created the table from the models already
    op.create_table(
        'day_changes',
        sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('version', 'metric', 'day', name=op.f('pk_day_changes')),
    )


def downgrade() -> None:
    op.drop_table('day_changes')

"""scorer: the latest version of each case is kept, for the case lists behind a score, the
overdue backlog, the projected score and the breakdowns (docs/scoring.md §5a)

Revision ID: 0008
Revises: 0007

Cases folded before this migration have no row: their lists and backlog stay empty until
`cityscore rebuild` folds the events topic again (the scores themselves are unchanged).
"""
from alembic import op
import sqlalchemy as sa

from shared.store.engine import UTCDateTime


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table('cases'):
        return  # test helpers may have created the table from the models already
    op.create_table(
        'cases',
        sa.Column('key', sa.String(length=300), nullable=False),
        sa.Column('department', sa.String(length=64), nullable=False),
        sa.Column('case_id', sa.String(length=128), nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('opened_at', UTCDateTime(), nullable=False),
        sa.Column('due_at', UTCDateTime(), nullable=False),
        sa.Column('closed_at', UTCDateTime(), nullable=True),
        sa.Column('attributes', sa.Text(), nullable=True),
        sa.Column('groups', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_cases')),
    )
    op.create_index('ix_cases_metric_closed_at', 'cases', ['metric', 'closed_at'])


def downgrade() -> None:
    op.drop_index('ix_cases_metric_closed_at', table_name='cases')
    op.drop_table('cases')

"""record: follow-up actions (what was promised about a metric, by whom, by when, and its
outcome) and notes on a metric's day (internal unless public)

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import shared.store.engine


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # Test helpers may have created these from the models already (see 0003).
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'follow_up_actions' not in existing:
        op.create_table('follow_up_actions',
        sa.Column('id', AutoId, autoincrement=True, nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('department', sa.String(length=64), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=True),
        sa.Column('owner', sa.String(length=120), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('due', sa.Date(), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.Column('created_at', shared.store.engine.UTCDateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('closed_at', shared.store.engine.UTCDateTime(), nullable=True),
        sa.Column('closed_by', sa.String(length=120), nullable=True),
        sa.Column('reminded_at', shared.store.engine.UTCDateTime(), nullable=True),
        sa.Column('digest', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_up_actions')),
        sa.UniqueConstraint('digest', name=op.f('uq_follow_up_actions_digest'))
        )
        op.create_index('ix_follow_up_actions_department_status', 'follow_up_actions', ['department', 'status'])
        op.create_index('ix_follow_up_actions_status_due', 'follow_up_actions', ['status', 'due'])
    if 'metric_notes' not in existing:
        op.create_table('metric_notes',
        sa.Column('id', AutoId, autoincrement=True, nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('author', sa.String(length=120), nullable=False),
        sa.Column('public', sa.Boolean(), nullable=False),
        sa.Column('created_at', shared.store.engine.UTCDateTime(), nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=True),
        sa.Column('digest', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_notes')),
        sa.UniqueConstraint('digest', name=op.f('uq_metric_notes_digest'))
        )
        op.create_index('ix_metric_notes_metric_day', 'metric_notes', ['metric', 'day'])


def downgrade() -> None:
    op.drop_index('ix_metric_notes_metric_day', table_name='metric_notes')
    op.drop_table('metric_notes')
    op.drop_index('ix_follow_up_actions_status_due', table_name='follow_up_actions')
    op.drop_index('ix_follow_up_actions_department_status', table_name='follow_up_actions')
    op.drop_table('follow_up_actions')

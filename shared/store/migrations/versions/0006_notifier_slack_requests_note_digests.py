"""notifier: Slack requests already acted on (a replay within the signature's five minutes
is acted on once, whichever replica gets it), and a digest per note (the same note twice
is kept once)

Revision ID: 0006
Revises: 0005

Notes written before this migration keep a NULL digest: they never collide with anything.
"""
from alembic import op
import sqlalchemy as sa
import shared.store.engine


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # Test helpers may have created these from the models already (see 0003).
    if 'notifier_slack_requests' not in inspector.get_table_names():
        op.create_table('notifier_slack_requests',
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('requested_at', shared.store.engine.UTCDateTime(), nullable=False),
        sa.Column('received_at', shared.store.engine.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('digest', name=op.f('pk_notifier_slack_requests'))
        )
        op.create_index('ix_notifier_slack_requests_requested_at', 'notifier_slack_requests', ['requested_at'])
    if 'digest' not in {c['name'] for c in inspector.get_columns('notifier_alert_notes')}:
        op.add_column('notifier_alert_notes', sa.Column('digest', sa.String(length=64), nullable=True))
        # A unique index rather than a constraint: SQLite adds one without rebuilding the table.
        op.create_index('uq_notifier_alert_notes_alert_id_digest', 'notifier_alert_notes', ['alert_id', 'digest'],
                        unique=True)


def downgrade() -> None:
    op.drop_index('uq_notifier_alert_notes_alert_id_digest', table_name='notifier_alert_notes')
    with op.batch_alter_table('notifier_alert_notes') as batch:
        batch.drop_column('digest')
    op.drop_index('ix_notifier_slack_requests_requested_at', table_name='notifier_slack_requests')
    op.drop_table('notifier_slack_requests')

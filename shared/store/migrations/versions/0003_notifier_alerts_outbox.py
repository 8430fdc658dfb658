"""notifier: alert tracks, alerts, notes, outbox of Slack messages

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import shared.store.engine


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    # Test helpers used to reset a database by dropping the tables of the models' metadata,
    # which held the notifier's only when the notifier's models had been imported; so a
    # database reset that way may still have them. Create what is missing, keep what is there.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'notifier_alert_tracks' not in existing:
        _tracks()
    if 'notifier_alerts' not in existing:
        _alerts()
    if 'notifier_alert_notes' not in existing:
        _notes()
    if 'notifier_outbox' not in existing:
        _outbox()


def _tracks() -> None:
    op.create_table('notifier_alert_tracks',
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('window', sa.String(length=32), nullable=False),
    sa.Column('below', sa.Integer(), nullable=False),
    sa.Column('at_or_above', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('numerator', sa.Float(), nullable=True),
    sa.Column('denominator', sa.Float(), nullable=True),
    sa.Column('changed_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('evaluated_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('metric', 'window', name=op.f('pk_notifier_alert_tracks'))
    )


def _alerts() -> None:
    op.create_table('notifier_alerts',
    sa.Column('id', AutoId, autoincrement=True, nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('window', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('numerator', sa.Float(), nullable=True),
    sa.Column('denominator', sa.Float(), nullable=True),
    sa.Column('first_score', sa.Float(), nullable=True),
    sa.Column('noted_score', sa.Float(), nullable=True),
    sa.Column('fired_at', shared.store.engine.UTCDateTime(), nullable=False),
    sa.Column('held_until', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('acknowledged_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('last_reminded_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('reminders', sa.Integer(), nullable=False),
    sa.Column('replies', sa.Integer(), nullable=False),
    sa.Column('resolved_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifier_alerts')),
    sa.UniqueConstraint('metric', 'window', 'seq', name='uq_notifier_alerts_metric_window_seq')
    )
    # One open alert per (metric, window): a partial unique index (PostgreSQL and SQLite).
    op.create_index('ix_notifier_alerts_one_open', 'notifier_alerts', ['metric', 'window'], unique=True,
                    postgresql_where=sa.text("status <> 'resolved'"), sqlite_where=sa.text("status <> 'resolved'"))


def _notes() -> None:
    op.create_table('notifier_alert_notes',
    sa.Column('id', AutoId, autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', shared.store.engine.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifier_alert_notes'))
    )
    op.create_index('ix_notifier_alert_notes_alert_id', 'notifier_alert_notes', ['alert_id'])


def _outbox() -> None:
    op.create_table('notifier_outbox',
    sa.Column('id', AutoId, autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('parent_key', sa.String(length=300), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('file_data', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sent_version', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('maybe_delivered', sa.Boolean(), nullable=False),
    sa.Column('not_before', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('next_attempt_at', shared.store.engine.UTCDateTime(), nullable=False),
    sa.Column('lease_until', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('first_attempt_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('slack_channel', sa.String(length=64), nullable=True),
    sa.Column('slack_ts', sa.String(length=32), nullable=True),
    sa.Column('created_at', shared.store.engine.UTCDateTime(), nullable=False),
    sa.Column('sent_at', shared.store.engine.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifier_outbox')),
    sa.UniqueConstraint('key', name=op.f('uq_notifier_outbox_key'))
    )
    op.create_index('ix_notifier_outbox_status_next', 'notifier_outbox', ['status', 'next_attempt_at'])
    op.create_index('ix_notifier_outbox_parent_key', 'notifier_outbox', ['parent_key'])


def downgrade() -> None:
    op.drop_index('ix_notifier_outbox_parent_key', table_name='notifier_outbox')
    op.drop_index('ix_notifier_outbox_status_next', table_name='notifier_outbox')
    op.drop_table('notifier_outbox')
    op.drop_index('ix_notifier_alert_notes_alert_id', table_name='notifier_alert_notes')
    op.drop_table('notifier_alert_notes')
    op.drop_index('ix_notifier_alerts_one_open', table_name='notifier_alerts')
    op.drop_table('notifier_alerts')
    op.drop_table('notifier_alert_tracks')

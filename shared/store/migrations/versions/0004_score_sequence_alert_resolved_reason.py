"""score changes in sequence: outbox ids never reused on SQLite, the notifier keeps the last
sequence it applied; alerts record why they were resolved when the score did not recover

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {column['name'] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    bind = op.get_bind()
    # Test helpers may have created these tables from the models already (see 0003).
    if 'seq' not in _columns('notifier_alert_tracks'):
        op.add_column('notifier_alert_tracks', sa.Column('seq', sa.BigInteger(), nullable=True))
    if 'resolved_reason' not in _columns('notifier_alerts'):
        op.add_column('notifier_alerts', sa.Column('resolved_reason', sa.String(length=300), nullable=True))
    if bind.dialect.name == 'sqlite':
        # The outbox id is the published sequence of a score change; SQLite reuses ids (it
        # numbers from the largest one left, 1 once the outbox is emptied) unless the table
        # is AUTOINCREMENT, which needs the table made anew. Rows are copied with their ids.
        created = bind.scalar(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'score_outbox'"))
        if 'AUTOINCREMENT' not in (created or '').upper():
            with op.batch_alter_table('score_outbox', recreate='always',
                                      table_kwargs={'sqlite_autoincrement': True}) as batch:
                batch.alter_column('id', existing_type=sa.Integer(), autoincrement=True)


def downgrade() -> None:
    with op.batch_alter_table('notifier_alerts') as batch:
        batch.drop_column('resolved_reason')
    with op.batch_alter_table('notifier_alert_tracks') as batch:
        batch.drop_column('seq')

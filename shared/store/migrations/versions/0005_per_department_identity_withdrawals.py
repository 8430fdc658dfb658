"""scorer: events and cases are identified per department, and every event remembers what it
counts, so a department can withdraw or correct it; days count their contributions

Revision ID: 0005
Revises: 0004

Carried over: event ids folded before this migration get department '' (they stand for
every department, so a resend of an old event is still a duplicate, but they cannot be
withdrawn: `cityscore rebuild` folds them again with what they count). Closed cases' parts
move to their metric's owner (case:DEPARTMENT/CASE_ID, the catalog in CITYSCORE_CATALOG);
an open case's part counts nothing and keeps its old key. Existing days' part counts are
unknown (NULL): such a day is never deleted by a take-back.
"""
import os

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {column['name'] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    if 'department' not in _columns('processed_events'):
        with op.batch_alter_table('processed_events', schema=None) as batch_op:
            batch_op.add_column(sa.Column('department', sa.String(length=64), server_default='', nullable=False))
            batch_op.add_column(sa.Column('part_key', sa.String(length=300), nullable=True))
            batch_op.add_column(sa.Column('metric', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('day', sa.Date(), nullable=True))
            batch_op.add_column(sa.Column('numerator', sa.Float(), nullable=True))
            batch_op.add_column(sa.Column('denominator', sa.Float(), nullable=True))
            batch_op.add_column(sa.Column('count', sa.Float(), nullable=True))
            batch_op.add_column(sa.Column('value', sa.Float(), nullable=True))
            batch_op.drop_constraint('pk_processed_events', type_='primary')
            batch_op.create_primary_key('pk_processed_events', ['event_id', 'department'])
    if 'parts' not in _columns('day_totals'):
        with op.batch_alter_table('day_totals', schema=None) as batch_op:
            batch_op.add_column(sa.Column('parts', sa.Integer(), nullable=True))

    from shared.core.catalog import load_catalog

    catalog = load_catalog(os.environ.get('CITYSCORE_CATALOG') or None)
    parts = sa.table('current_parts', sa.column('key', sa.String), sa.column('metric', sa.String))
    bind = op.get_bind()
    for metric in catalog.metrics:
        if metric.feed.value != 'cases':
            continue
        # 'case:' || department || '/' || the old id, for this metric's closed cases
        bind.execute(sa.update(parts).where(parts.c.metric == metric.id, parts.c.key.like('case:%'),
                                            ~parts.c.key.like('case:%/%'))
                     .values(key=sa.literal(f'case:{metric.department}/') + sa.func.substr(parts.c.key, 6)))


def downgrade() -> None:
    with op.batch_alter_table('day_totals', schema=None) as batch_op:
        batch_op.drop_column('parts')
    # Back to one row per event id: rows of other departments with an id already kept go.
    op.execute("DELETE FROM processed_events WHERE department <> '' AND EXISTS (SELECT 1 FROM processed_events p "
               "WHERE p.event_id = processed_events.event_id AND p.department < processed_events.department)")
    with op.batch_alter_table('processed_events', schema=None) as batch_op:
        batch_op.drop_constraint('pk_processed_events', type_='primary')
        batch_op.create_primary_key('pk_processed_events', ['event_id'])
        for column in ('value', 'count', 'denominator', 'numerator', 'day', 'metric', 'part_key', 'department'):
            batch_op.drop_column(column)

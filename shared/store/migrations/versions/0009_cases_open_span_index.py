"""scorer: a GiST index of each kept case's open span, so that the cases open at a moment (the
board's overdue backlog, a metric's open and overdue lists) are found without reading every case

Revision ID: 0009
Revises: 0008

PostgreSQL only: the span (opened_at, closed_at] as a range, still open when closed_at is NULL.
"Open at the end of day D" is then one stabbing lookup, for any D; the (metric, closed_at) index
narrows it only for the current day (a date long past still read most of the table: 50-60 ms for
177,000 cases, 2-12 ms with this index). SQLite keeps its scan (a laptop's few cases).
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    # The contract refuses closed_at before opened_at, so every kept case makes a valid range.
    op.execute("CREATE INDEX IF NOT EXISTS ix_cases_open_span ON cases "
               "USING gist (tstzrange(opened_at, closed_at, '(]'))")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP INDEX IF EXISTS ix_cases_open_span")

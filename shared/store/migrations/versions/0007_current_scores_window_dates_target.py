"""scorer: each published score records the days its window covered and the target it was
scored with, so a read API whose catalog's windows or targets changed since never passes
off the old scores under the new dates

Revision ID: 0007
Revises: 0006

Rows published before this migration keep NULLs, which match no window's dates: the read
API does not serve them as the board (services/scorer/app.py, stored_board) and computes
the board on request instead, until the scorer's next rescore (at its next start, or the
next as-of day) fills them in.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

COLUMNS = (('window_start', sa.Date()), ('window_end', sa.Date()), ('target', sa.Float()))


def upgrade() -> None:
    have = {c['name'] for c in sa.inspect(op.get_bind()).get_columns('current_scores')}
    for name, kind in COLUMNS:
        if name not in have:  # test helpers may have created the table from the models already
            op.add_column('current_scores', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('current_scores') as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

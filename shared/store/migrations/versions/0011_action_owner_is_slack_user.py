"""record: whether an action's owner is a Slack user (reminded in private) or a name (reminded in
the department's channel), as it was given; NULL for actions recorded before, read by the pattern
of a Slack user id as then

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Test helpers may have created the table from the models already (see 0003).
    columns = {c['name'] for c in sa.inspect(op.get_bind()).get_columns('follow_up_actions')}
    if 'owner_is_user' not in columns:
        with op.batch_alter_table('follow_up_actions') as batch:
            batch.add_column(sa.Column('owner_is_user', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('follow_up_actions') as batch:
        batch.drop_column('owner_is_user')

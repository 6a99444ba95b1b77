"""files: purged_at and duration_ms; tasks: request_id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:26:59.701388
"""

import sqlalchemy as sa
from alembic import op

import sfumato.db.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))

    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duration_ms', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('purged_at', sfumato.db.types.UTCDateTime(timezone=True), nullable=True))




def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('request_id')

    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('purged_at')
        batch_op.drop_column('duration_ms')



"""Fair queue: tasks.priority, deadline_at and queue_key, accounts' queue turns, queue_clock

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:20:00
"""

import sqlalchemy as sa
from alembic import op

from sfumato.db.types import UTCDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False))
        batch_op.add_column(sa.Column('deadline_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('queue_key', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(op.f('ck_tasks_priority'), "priority IN ('normal', 'low')")
        batch_op.drop_index(op.f('ix_tasks_status_created_at'))
        batch_op.create_index(op.f('ix_tasks_status_queue_key_created_at'), ['status', 'queue_key', 'created_at'],
                              unique=False)
        batch_op.create_index(op.f('ix_tasks_status_deadline_at'), ['status', 'deadline_at'], unique=False,
                              postgresql_where=sa.text('deadline_at IS NOT NULL'),
                              sqlite_where=sa.text('deadline_at IS NOT NULL'))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue_key', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('low_queue_key', sa.BigInteger(), server_default='0', nullable=False))
    clock = op.create_table(
        'queue_clock',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('virtual_time', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('id = 1', name=op.f('ck_queue_clock_one_row')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_clock')),
    )
    op.bulk_insert(clock, [{'id': 1, 'virtual_time': 0}])


def downgrade() -> None:
    op.drop_table('queue_clock')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('low_queue_key')
        batch_op.drop_column('queue_key')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(op.f('ix_tasks_status_deadline_at'))
        batch_op.drop_index(op.f('ix_tasks_status_queue_key_created_at'))
        batch_op.create_index(op.f('ix_tasks_status_created_at'), ['status', 'created_at'], unique=False)
        batch_op.drop_constraint(op.f('ck_tasks_priority'), type_='check')
        batch_op.drop_column('queue_key')
        batch_op.drop_column('deadline_at')
        batch_op.drop_column('priority')

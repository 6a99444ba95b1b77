"""webhooks: account and task URLs, the account's signing secret, and the delivery outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 16:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sfumato.db.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=100), nullable=True))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.Text(), nullable=True))
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('task_id', sa.String(length=64), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sfumato.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('log', JSON, nullable=False),
        sa.Column('created_at', sfumato.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sfumato.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_webhook_deliveries_status')),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                                name=op.f('fk_webhook_deliveries_account_id_accounts')),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_webhook_deliveries_task_id_tasks')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_status_next_attempt_at'),
                              ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_task_id'), ['task_id'], unique=False)


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('webhook_url')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('webhook_secret')
        batch_op.drop_column('webhook_url')

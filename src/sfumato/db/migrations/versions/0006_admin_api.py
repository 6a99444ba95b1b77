"""The operator's API: unique account names, disabled accounts, key limits, idempotent grants,
refunds, the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:00:00

Accounts that share a name keep it on the oldest; the others are renamed ``name-2``,
``name-3``… (a free suffix) before the UNIQUE constraint is added, so no upgrade fails on them.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from sfumato.db.types import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
OLD_KINDS = "kind IN ('grant', 'reserve', 'settle', 'release')"
NEW_KINDS = "kind IN ('grant', 'reserve', 'settle', 'release', 'refund')"


def _rename_duplicates() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, name FROM accounts ORDER BY created_at, id")).all()
    taken = {name for _, name in rows}
    seen: set[str] = set()
    for account_id, name in rows:
        if name not in seen:
            seen.add(name)
            continue
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        renamed = f"{name}-{n}"
        taken.add(renamed)
        bind.execute(sa.text("UPDATE accounts SET name = :name WHERE id = :id"), {"name": renamed, "id": account_id})


def upgrade() -> None:
    _rename_duplicates()
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_accounts_name'), ['name'])
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('models', JSON, nullable=True))
        batch_op.add_column(sa.Column('rate_limit', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('credit_limit', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('credit_period', sa.String(length=8), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_api_keys_credit_period'), "credit_period IN ('day', 'month')")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ledger_entries_kind'), NEW_KINDS)
        batch_op.create_unique_constraint(batch_op.f('uq_ledger_entries_account_id_idempotency_key'),
                                          ['account_id', 'idempotency_key'])
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('budget_key_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_tasks_budget_key_id_created_at'), ['budget_key_id', 'created_at'],
                              unique=False, postgresql_where=sa.text('budget_key_id IS NOT NULL'),
                              sqlite_where=sa.text('budget_key_id IS NOT NULL'))
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=40), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('target', sa.String(length=100), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('details', JSON, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )


def downgrade() -> None:
    op.drop_table('audit_log')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_budget_key_id_created_at'))
        batch_op.drop_column('budget_key_id')
    # A refund stays in the books (the balance is the entries' sum) as a grant naming its task.
    op.execute("UPDATE ledger_entries SET kind = 'grant', note = 'refund' WHERE kind = 'refund'")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_ledger_entries_account_id_idempotency_key'), type_='unique')
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ledger_entries_kind'), OLD_KINDS)
        batch_op.drop_column('idempotency_key')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_api_keys_credit_period'), type_='check')
        for column in ('credit_period', 'credit_limit', 'rate_limit', 'models', 'expires_at'):
            batch_op.drop_column(column)
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_accounts_name'), type_='unique')
        batch_op.drop_column('disabled_at')

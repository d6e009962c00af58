"""every state column admits only its named states (CHECK constraints from core/states.py)

The values are written out here, not imported: a migration is a snapshot, and a later
state gets its own migration that replaces the constraint.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 22:00:00
"""
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

CHECKS = {
    # table: [(constraint name, column, allowed values)]
    'issues': [('ck_issues_status', 'status', (
        'draft', 'frozen', 'sending', 'sent', 'sent with failures', 'needs attention', 'failed',
        'paused', 'cancelled', 'skipped'))],
    'deliveries': [('ck_deliveries_state', 'state', (
        'queued', 'sending', 'posted', 'sent', 'failed', 'unknown', 'suppressed'))],
    'queue_items': [('ck_queue_items_state', 'state', ('queued', 'approved', 'rejected', 'used'))],
    'subscriptions': [('ck_subscriptions_status', 'status', (
        'pending', 'active', 'paused', 'unsubscribed'))],
    'suppressions': [('ck_suppressions_reason', 'reason', (
        'unsubscribed', 'bounced', 'complained', 'erased', 'manual'))],
    'job_runs': [('ck_job_runs_result', 'result', ('running', 'ok', 'skipped', 'failed'))],
    'articles': [('ck_articles_origin', 'origin', ('feed', 'editor'))],
    'issue_articles': [('ck_issue_articles_picked_by', 'picked_by', ('feed', 'editor'))],
    'users': [('ck_users_role', 'role', ('admin', 'editor'))],
    'outbound_mail': [('ck_outbound_mail_state', 'state', (
        'queued', 'sending', 'sent', 'failed', 'unknown', 'dropped'))],
    'send_orders': [('ck_send_orders_state', 'state', (
        'pending', 'running', 'done', 'failed', 'cancelled'))],
}


def _condition(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _sqlite_triggers(table: str, name: str, column: str, values: tuple[str, ...]) -> list[str]:
    """SQLite cannot add a CHECK without rebuilding the table, and a rebuild drops the old
    table, which cascades to every row referencing it: triggers enforce the same rule."""
    guard = (f"WHEN NEW.{column} NOT IN ({', '.join(repr(v) for v in values)}) "
             f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END")
    return [f"CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} FOR EACH ROW {guard}",
            f"CREATE TRIGGER {name}_update BEFORE UPDATE OF {column} ON {table} FOR EACH ROW {guard}"]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    for table, checks in CHECKS.items():
        for name, column, values in checks:
            if postgres:  # NOT VALID, then one validating scan that does not block writes
                op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} "
                           f"CHECK ({_condition(column, values)}) NOT VALID")
                op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
                continue
            for statement in _sqlite_triggers(table, name, column, values):
                op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    for table, checks in CHECKS.items():
        for name, _column, _values in checks:
            if postgres:
                op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            else:
                op.execute(f"DROP TRIGGER {name}_insert")
                op.execute(f"DROP TRIGGER {name}_update")

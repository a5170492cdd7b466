"""Schema migrations of the safety-policy ledger (component "safety_ledger").

Money is stored as integer micro-dollars so that sums compare exactly against limits; times are
seconds since the epoch (UTC). Each reservation stores the day it counts against, computed in the
campaign's time zone when it was granted.
"""

from __future__ import annotations

from gaelp.db.database import Migration

COMPONENT = "safety_ledger"

_V1 = """
CREATE TABLE safety_campaigns (
    campaign_id TEXT PRIMARY KEY,
    time_zone TEXT NOT NULL,
    daily_limit_micros BIGINT NOT NULL,
    phase_entry_approved INTEGER NOT NULL DEFAULT 0,
    created_at {double} NOT NULL
);
CREATE TABLE safety_reservations (
    reservation_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    campaign_id TEXT NOT NULL REFERENCES safety_campaigns (campaign_id),
    phase INTEGER NOT NULL,
    episode_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    day TEXT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    bid_micros BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released', 'expired')),
    committed_micros BIGINT NOT NULL DEFAULT 0 CHECK (committed_micros <= amount_micros),
    commit_key TEXT NOT NULL DEFAULT '',
    created_at {double} NOT NULL,
    expires_at {double} NOT NULL,
    closed_at {double}
);
CREATE INDEX safety_reservations_campaign ON safety_reservations (campaign_id, state, day);
CREATE INDEX safety_reservations_expiry ON safety_reservations (state, expires_at);
CREATE TABLE safety_budget_steps (
    approval_id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES safety_campaigns (campaign_id),
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    approved_at {double} NOT NULL
);
CREATE TABLE safety_approvals (
    approval_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    phase INTEGER NOT NULL,
    amount_micros BIGINT NOT NULL,
    justification TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    requested_at {double} NOT NULL,
    decided_at {double}
);
CREATE INDEX safety_approvals_status ON safety_approvals (status, requested_at);
CREATE TABLE safety_audit (
    audit_id {serial},
    at {double} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE safety_emergency_stop (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stopped INTEGER NOT NULL,
    reason TEXT NOT NULL,
    changed_at {double} NOT NULL,
    changed_by TEXT NOT NULL
);
INSERT INTO safety_emergency_stop (id, stopped, reason, changed_at, changed_by) VALUES (1, 0, '', 0, '');
CREATE TABLE safety_violation_outbox (
    violation_id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    phase INTEGER NOT NULL,
    action_taken TEXT NOT NULL,
    detail TEXT NOT NULL,
    occurred_at {double} NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX safety_violation_outbox_pending ON safety_violation_outbox (published, occurred_at)
"""

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "campaigns, reservations, budget steps, approvals, audit, emergency stop, violation outbox",
        sqlite_sql=_V1.format(double="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres_sql=_V1.format(double="DOUBLE PRECISION", serial="BIGSERIAL PRIMARY KEY"),
    ),
]

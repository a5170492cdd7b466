"""Schema migrations of the safety-policy ledger (component "safety_ledger").

Money is stored as integer micro-dollars so that sums compare exactly against limits; times are
seconds since the epoch (UTC). Each reservation stores the day it counts against, computed in the
campaign's time zone when it was granted.

Version 2 stores refusals by idempotency key (a retried refused request gets the same refusal and its
violation is written once) and, on PostgreSQL, the reserve decision as one function, so that a
reservation costs one round trip; ledger.py applies the same rules on SQLite in Python.
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

_REFUSALS = """
CREATE TABLE safety_refusals (
    idempotency_key TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    phase INTEGER NOT NULL,
    episode_id TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    refused_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    remaining_micros BIGINT NOT NULL,
    refused_at {double} NOT NULL
)
"""

# The decision of SpendLedger._decide_sqlite as one function: the same checks in the same order and
# the same reasons (dollars printed by safety_dollars as ledger.format_dollars prints them). Outcomes:
# 'granted', 'refused', 'replay' (the key is already decided: the caller reads the stored answer),
# 'unknown_campaign'. The violation id of a refusal derives from the idempotency key.
_RESERVE_FUNCTION = """
CREATE FUNCTION safety_dollars(micros BIGINT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT trim_scale(micros::numeric / 1000000)::text
$$;
CREATE FUNCTION safety_reserve(
    p_reservation_id TEXT, p_campaign_id TEXT, p_phase INTEGER, p_amount BIGINT, p_key TEXT,
    p_episode_id TEXT, p_run_id TEXT, p_bid BIGINT, p_day TEXT, p_now DOUBLE PRECISION,
    p_expires_at DOUBLE PRECISION, p_episode_limit BIGINT, p_phase_total BIGINT, p_max_bid BIGINT,
    p_daily_ceiling BIGINT, p_requires_entry_approval BOOLEAN, p_budget_steps_apply BOOLEAN,
    OUT outcome TEXT, OUT refused_by TEXT, OUT reason TEXT, OUT remaining BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    v_daily_limit BIGINT;
    v_approved INTEGER;
    v_day_used BIGINT;
    v_phase_used BIGINT;
    v_episode_used BIGINT;
    v_stopped INTEGER;
    v_stop_reason TEXT;
    v_severity TEXT := 'warning';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('safety:campaign:' || p_campaign_id));
    refused_by := '';
    reason := '';
    remaining := 0;
    IF EXISTS (SELECT 1 FROM safety_reservations WHERE idempotency_key = p_key)
       OR EXISTS (SELECT 1 FROM safety_refusals WHERE idempotency_key = p_key) THEN
        outcome := 'replay';
        RETURN;
    END IF;
    SELECT daily_limit_micros, phase_entry_approved INTO v_daily_limit, v_approved
        FROM safety_campaigns WHERE campaign_id = p_campaign_id;
    IF NOT FOUND THEN
        outcome := 'unknown_campaign';
        RETURN;
    END IF;
    UPDATE safety_reservations SET state = 'expired', closed_at = p_now
        WHERE campaign_id = p_campaign_id AND state = 'reserved' AND expires_at <= p_now;
    IF p_budget_steps_apply THEN
        v_daily_limit := v_daily_limit + (SELECT COALESCE(SUM(amount_micros), 0)
            FROM safety_budget_steps WHERE campaign_id = p_campaign_id);
    END IF;
    v_daily_limit := LEAST(v_daily_limit, p_daily_ceiling);
    SELECT COALESCE(SUM(CASE WHEN day = p_day THEN spend END), 0),
           COALESCE(SUM(CASE WHEN phase = p_phase THEN spend END), 0),
           COALESCE(SUM(CASE WHEN phase = p_phase AND episode_id = p_episode_id THEN spend END), 0)
        INTO v_day_used, v_phase_used, v_episode_used
        FROM (SELECT day, phase, episode_id,
                CASE WHEN state = 'committed' THEN committed_micros ELSE amount_micros END AS spend
              FROM safety_reservations
              WHERE campaign_id = p_campaign_id AND state IN ('reserved', 'committed')) AS active;
    remaining := LEAST(p_episode_limit - v_episode_used, v_daily_limit - v_day_used,
                       p_phase_total - v_phase_used);
    SELECT stopped, safety_emergency_stop.reason INTO v_stopped, v_stop_reason
        FROM safety_emergency_stop WHERE id = 1 FOR SHARE;
    IF v_stopped = 1 THEN
        refused_by := 'emergency_stop';
        reason := 'emergency stop in force: ' || v_stop_reason;
        v_severity := 'critical';
    ELSIF p_requires_entry_approval AND v_approved = 0 THEN
        refused_by := 'phase_entry_approval';
        reason := 'campaign ''' || p_campaign_id || ''' has no approved enter_phase_3 request';
        v_severity := 'critical';
    ELSIF p_bid > p_max_bid THEN
        refused_by := 'max_bid';
        reason := 'bid ' || safety_dollars(p_bid) || ' exceeds the maximum bid '
            || safety_dollars(p_max_bid);
    ELSIF p_amount > p_episode_limit - v_episode_used THEN
        refused_by := 'episode_limit';
        reason := 'reserving ' || safety_dollars(p_amount) || ' would pass the episode_limit; '
            || safety_dollars(GREATEST(p_episode_limit - v_episode_used, 0)) || ' left';
    ELSIF p_amount > v_daily_limit - v_day_used THEN
        refused_by := 'daily_limit';
        reason := 'reserving ' || safety_dollars(p_amount) || ' would pass the daily_limit; '
            || safety_dollars(GREATEST(v_daily_limit - v_day_used, 0)) || ' left';
    ELSIF p_amount > p_phase_total - v_phase_used THEN
        refused_by := 'phase_total';
        reason := 'reserving ' || safety_dollars(p_amount) || ' would pass the phase_total; '
            || safety_dollars(GREATEST(p_phase_total - v_phase_used, 0)) || ' left';
    END IF;
    IF refused_by <> '' THEN
        outcome := 'refused';
        remaining := GREATEST(remaining, 0);
        INSERT INTO safety_refusals (idempotency_key, campaign_id, phase, episode_id, amount_micros,
            refused_by, reason, remaining_micros, refused_at)
            VALUES (p_key, p_campaign_id, p_phase, p_episode_id, p_amount, refused_by, reason,
                    remaining, p_now);
        INSERT INTO safety_violation_outbox (violation_id, campaign_id, run_id, rule, severity,
            amount_micros, phase, action_taken, detail, occurred_at)
            VALUES ('refused:' || p_key, p_campaign_id, p_run_id, refused_by, v_severity, p_amount,
                    p_phase, 'refused', reason, p_now)
            ON CONFLICT (violation_id) DO NOTHING;
        RETURN;
    END IF;
    INSERT INTO safety_reservations (reservation_id, idempotency_key, campaign_id, phase, episode_id,
        run_id, day, amount_micros, bid_micros, state, committed_micros, commit_key, created_at,
        expires_at)
        VALUES (p_reservation_id, p_key, p_campaign_id, p_phase, p_episode_id, p_run_id, p_day,
                p_amount, p_bid, 'reserved', 0, '', p_now, p_expires_at);
    outcome := 'granted';
    remaining := remaining - p_amount;
END
$$
"""

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "campaigns, reservations, budget steps, approvals, audit, emergency stop, violation outbox",
        sqlite_sql=_V1.format(double="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres_sql=_V1.format(double="DOUBLE PRECISION", serial="BIGSERIAL PRIMARY KEY"),
    ),
    Migration(
        2,
        "refusals by idempotency key; the reserve decision as one PostgreSQL function",
        sqlite_sql=_REFUSALS.format(double="REAL"),
        postgres_sql=_REFUSALS.format(double="DOUBLE PRECISION") + ";" + _RESERVE_FUNCTION,
    ),
]

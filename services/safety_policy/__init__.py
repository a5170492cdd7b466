"""The safety-policy service: spend ledger, creative rules, approvals, emergency stop, violations."""

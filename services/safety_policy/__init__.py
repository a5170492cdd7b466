"""The safety-policy service: spend ledger, creative rules, approvals, emergency stop, violations.

Campaigns must be registered before any reservation or creative check names them (otherwise
INVALID_ARGUMENT "not a registered campaign"): either listed in settings.safety_policy.campaigns
(registered at startup) or added by an operator with the RegisterCampaign RPC. Each has an IANA time
zone (its day boundaries) and a base daily limit within the phase-3 range. Phase-3/4 spend also
needs an approved enter_phase_3 request for the campaign; in phase 4 approved budget_increase
requests raise the daily limit. Operators send 'authorization: Bearer <token>'; settings hold only
SHA-256 hashes of the tokens (gaelp.service.auth.token_hash).
"""

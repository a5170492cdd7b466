"""Phase 2: logged bandit data (Open Bandit Dataset format) and off-policy evaluation."""

"""Constants the registry tests share with their fixtures."""

from __future__ import annotations

OPERATOR_TOKEN = "registry-test-operator"
# Register and Deprecate need an operator token; every registry process the fixtures start knows it.
OPERATOR_METADATA = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)

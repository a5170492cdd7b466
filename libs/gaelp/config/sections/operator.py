"""Settings of an operator's tools (the CLI): who acts at the money gates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(
        SecretStr(""),
        description="the operator's token (GAELP_OPERATOR_TOKEN), sent as 'authorization: Bearer <token>'"
        " to the calls that need an operator: deciding approvals, the emergency stop",
    )

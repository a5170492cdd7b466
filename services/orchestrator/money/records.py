"""What the money phases of a run have done, persisted next to the run document (its own table).

Every reservation is recorded before the platform call it covers is sent, and every commit as the
ledger answered it, so that a restarted orchestrator resumes with the same idempotency keys and the
reconciliation at the end compares the platform's spend with what the ledger holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from pydantic import BaseModel, Field

from gaelp.db import Database, Executor, Migration

MIGRATIONS = [
    Migration(
        1,
        "money runs",
        "CREATE TABLE money_runs (run_id TEXT PRIMARY KEY, document TEXT NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL)",
    ),
]


class WindowRecord(BaseModel):
    """One decision window's reservation: what the platform may spend in [start_hour, end_hour)."""

    key: str
    reservation_id: str = ""
    pending: bool = False  # asked of the ledger, its answer not yet recorded (a restart asks again)
    granted: bool = False
    refused_by: str = ""
    reason: str = ""
    day: int  # platform day (hour // 24)
    start_hour: int
    end_hour: int
    amount: float
    bid: float
    daily_budget: float
    committed: float | None = None  # as the ledger answered CommitSpend
    released: float = 0.0


class CampaignRecord(BaseModel):
    """One campaign of one entry into a money phase: (phase, attempt, index) names it."""

    index: int
    phase: int
    attempt: int = 1  # the run's entry into the phase (RunDocument.phase_entry): 1 = its first
    ledger_campaign: str
    product: str
    campaign_id: str = ""  # the platform's id, once created
    created_hour: int = -1
    status: str = "planned"  # planned, active, settling, settled, refused, failed, stopped, interrupted
    detail: str = ""
    creative_approved: bool = False
    creative_reasons: list[str] = Field(default_factory=list)
    creative_scores: dict[str, float] = Field(default_factory=dict)
    max_bid: float = 0.0  # the ledger's maximum bid for the phase when the campaign started
    bids_clipped: int = 0  # decisions whose bid the ledger's maximum bid cut (below the policy's range)
    windows: list[WindowRecord] = Field(default_factory=list)
    spend: float = 0.0
    revenue: float = 0.0
    budget: float = 0.0  # daily budget x days the campaign ran (budget efficiency = spend / budget)
    transfer: bool = False  # phase 4: sells a held-out product, with the fine-tuned policy
    transfer_fine_tuned_score: float = 0.0  # the transfer test's scores (MoneyRunDocument.transfer)
    transfer_scratch_score: float = 0.0
    spec: dict[str, object] = Field(default_factory=dict)  # the create request, kept to repeat it
    published: bool = False  # its EpisodeSummary went to the metrics service

    @property
    def reserved(self) -> float:
        return sum(w.amount for w in self.windows if w.granted)

    @property
    def committed(self) -> float:
        return sum(w.committed or 0.0 for w in self.windows)


class ApprovalRecord(BaseModel):
    approval_id: str
    kind: str
    campaign_id: str
    amount: float = 0.0
    subject: str = ""  # what it is about beyond the ledger campaign (a phase-4 step: campaign and level)
    limit_before: float = 0.0  # budget_increase: the ledger's phase-4 daily limit when it was asked
    status: str = "pending"
    decided_by: str = ""
    requested_at: float
    decided_at: float = 0.0


class ViolationRecord(BaseModel):
    at: float
    campaign_id: str
    rule: str
    detail: str


class Reconciliation(BaseModel):
    platform_spend: float = 0.0
    committed: float = 0.0
    unreserved_cents: int = 0
    difference_cents: int = 0
    by_campaign_day: list[dict[str, object]] = Field(default_factory=list)
    source: str = ""


class TransferRecord(BaseModel):
    """Phase 4's transfer test (orchestrator.money.transfer): scores on the normalized reward of the
    simulator's model of the held-out products (0 = random play, 1 = the true-parameter planner)."""

    products: list[str]
    market: str
    env_steps: int  # the budget each policy trained for
    fine_tuned_env_steps: int
    scratch_env_steps: int
    zero_shot_score: float  # the phase-3 policy before fine-tuning
    fine_tuned_score: float
    scratch_score: float
    random_reward: float
    upper_bound_reward: float
    seconds: float = 0.0  # what measuring it took (two trainings, three scorings)


class MoneyRunDocument(BaseModel):
    run_id: str
    campaigns: list[CampaignRecord] = Field(default_factory=list)
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    violations: list[ViolationRecord] = Field(default_factory=list)
    reconciliation: Reconciliation | None = None
    transfer: TransferRecord | None = None

    def campaign(self, index: int, phase: int, attempt: int) -> CampaignRecord | None:
        """The campaign of that index of the phase's entry `attempt`, once planned."""
        return next((c for c in self.campaigns
                     if (c.index, c.phase, c.attempt) == (index, phase, attempt)), None)


class MoneyStore:
    """Money records per run. `fenced(run_id)` is the run store's lease-fenced transaction: a
    replica that lost the run's lease writes no money state (LeaseLost)."""

    def __init__(self, db: Database, fenced: Callable[[str], AbstractAsyncContextManager[Executor]]) -> None:
        self.db = db
        self.fenced = fenced

    @classmethod
    async def open(cls, db: Database,
                   fenced: Callable[[str], AbstractAsyncContextManager[Executor]]) -> MoneyStore:
        await db.migrate("orchestrator-money", MIGRATIONS)
        return cls(db, fenced)

    async def find(self, run_id: str) -> MoneyRunDocument | None:
        row = await self.db.fetchrow("SELECT document FROM money_runs WHERE run_id = $1", run_id)
        return None if row is None else MoneyRunDocument.model_validate(json.loads(row["document"]))

    async def load(self, run_id: str) -> MoneyRunDocument:
        return await self.find(run_id) or MoneyRunDocument(run_id=run_id)

    async def save(self, document: MoneyRunDocument, at: float) -> None:
        text = document.model_dump_json()
        async with self.fenced(document.run_id) as tx:
            changed = await tx.execute(
                "UPDATE money_runs SET document = $1, updated_at = $2 WHERE run_id = $3",
                text, at, document.run_id)
            if not changed:
                await tx.execute("INSERT INTO money_runs (run_id, document, updated_at) VALUES ($1, $2, $3)",
                                 document.run_id, text, at)

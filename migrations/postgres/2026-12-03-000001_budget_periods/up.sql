-- What a campaign's per-day and per-month budgets have granted: one row per campaign and local
-- day ("2026-12-02") or month ("2026-12") of the sale, in the program's time zone. Taken in the
-- trade's transaction with a guard, like campaign_budgets, so no period is overspent.
CREATE TABLE campaign_budget_periods (
    campaign_code TEXT NOT NULL,
    period TEXT NOT NULL,
    used BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (campaign_code, period)
);

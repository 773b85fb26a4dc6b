DROP TABLE campaign_budget_periods;

//! Warnings for `rules check`: campaigns that load but cannot do what their author meant.

use super::engine::{Award, Campaign, Glob, Ruleset};
use chrono::{DateTime, Utc};

impl Campaign {
    /// No condition beyond its window and stores: it matches every trade there.
    fn matches_everything_in_its_stores(&self) -> bool {
        self.payment_methods.is_empty()
            && self.currencies.is_empty()
            && self.days_of_week == 0
            && self.hours.is_empty()
            && self.blackout_dates.is_empty()
            && self.min_spend.is_zero()
            && self.max_spend.is_none()
            && self.skus.is_empty()
            && self.basket.is_empty()
            && self.excluded_stores.is_empty()
            && self.channels.is_empty()
            && self.genders.is_empty()
            && self.tiers.is_empty()
            && !self.birthday_month
            && !self.first_trade
            && self.trade_count.is_none()
    }

    /// Its excluded stores take in every store it names (or every store, when it names none).
    fn excludes_all_its_stores(&self) -> bool {
        let every_store = [Glob::new("*")];
        let stores = match self.stores.is_empty() {
            true => &every_store[..],
            false => &self.stores[..],
        };
        !self.excluded_stores.is_empty()
            && stores
                .iter()
                .all(|p| self.excluded_stores.iter().any(|q| q.covers(p)))
    }

    /// Every store `other` can match, this campaign matches too.
    fn covers_stores_of(&self, other: &Campaign) -> bool {
        self.stores.is_empty()
            || (!other.stores.is_empty()
                && other
                    .stores
                    .iter()
                    .all(|p| self.stores.iter().any(|q| q.covers(p))))
    }
}

impl Ruleset {
    /// What must not pass unseen, cheap enough to say on every reload and status: a ruleset
    /// with no campaign (an emptied campaigns file grants nothing but E points).
    pub fn alerts(&self) -> Vec<String> {
        match self.campaigns.is_empty() {
            true => vec![
                "no campaigns: every trade earns its E points only (was a campaigns file \
                 emptied?)"
                    .to_string(),
            ],
            false => Vec::new(),
        }
    }

    /// One line per warning, each starting with the campaign's `file:line`.
    pub fn lint(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut warnings = self.alerts();
        for (position, campaign) in self.campaigns.iter().enumerate() {
            let say = |what: String| {
                format!(
                    "{}: campaign {:?}: {what}",
                    campaign.origin,
                    campaign.code.as_str()
                )
            };
            if campaign.ends_at <= now {
                warnings.push(say(format!(
                    "its window ended at {}",
                    self.program.time_zone.readable(campaign.ends_at)
                )));
            }
            if campaign.first_trade
                && campaign
                    .trade_count
                    .is_some_and(|count| !count.takes_a_first_trade())
            {
                warnings.push(say(
                    "first_trade and a trade count that skips the first trade can never both hold"
                        .to_string(),
                ));
            }
            if campaign.excludes_all_its_stores() {
                warnings.push(say(
                    "can never apply: its excluded_stores take in every store it names".to_string(),
                ));
            }
            if let (Some(budget), Award::Fixed(points)) = (campaign.budget, &campaign.award) {
                if points.value() > budget {
                    warnings.push(say(format!(
                        "its fixed award of {points} is more than its whole budget of {budget}: it grants at most {budget} once"
                    )));
                }
            }
            if campaign
                .currencies
                .iter()
                .all(|c| !self.program.currency_rates.contains_key(c))
                && !campaign.currencies.is_empty()
            {
                warnings.push(say("none of its currencies is accepted".to_string()));
            }
            let shadow = self.campaigns[..position].iter().find(|earlier| {
                earlier.exclusive
                    && earlier.matches_everything_in_its_stores()
                    && earlier.starts_at <= campaign.starts_at
                    && campaign.ends_at <= earlier.ends_at
                    && earlier.covers_stores_of(campaign)
            });
            if let Some(earlier) = shadow {
                warnings.push(say(format!(
                    "can never apply: exclusive campaign {:?} ({}) comes first and matches every trade it could",
                    earlier.code.as_str(),
                    earlier.origin
                )));
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{from_sources, Source};

    #[test]
    fn warnings_for_past_windows_impossible_conditions_and_shadowing() {
        let text = r#"
[program]
name = "Lint"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }

[[campaign]]
code = "OLD"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2021-01-01T00:00:00+08:00"
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "ALL-MINE"
starts_at = "2026-01-01T00:00:00+08:00"
ends_at = "2027-01-01T00:00:00+08:00"
priority = 10
exclusive = true
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "NEVER"
starts_at = "2026-12-01T00:00:00+08:00"
ends_at = "2027-01-01T00:00:00+08:00"
stores = ["A*"]
first_trade = true
nth_trade = 2
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "SH-ALL"
starts_at = "2027-01-01T00:00:00+08:00"
ends_at = "2028-01-01T00:00:00+08:00"
stores = ["SH-*"]
priority = 5
exclusive = true
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "SH-01"
starts_at = "2027-03-01T00:00:00+08:00"
ends_at = "2027-04-01T00:00:00+08:00"
stores = ["SH-01*", "SH-02"]
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "SH-OR-KL"
starts_at = "2027-03-01T00:00:00+08:00"
ends_at = "2027-04-01T00:00:00+08:00"
stores = ["SH-01*", "KL-01"]
expiry = "KDP"
award = { fixed = 1 }

[[campaign]]
code = "NOWHERE"
starts_at = "2027-01-01T00:00:00+08:00"
ends_at = "2028-01-01T00:00:00+08:00"
stores = ["KL-02"]
excluded_stores = ["KL-*"]
expiry = "KDP"
award = { fixed = 1 }
"#;
        let rules = from_sources(&[Source {
            name: "r.toml".into(),
            text: text.into(),
        }])
        .unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            rules.lint(now),
            vec![
                "r.toml:27: campaign \"NEVER\": first_trade and a trade count that skips the first trade can never both hold",
                "r.toml:27: campaign \"NEVER\": can never apply: exclusive campaign \"ALL-MINE\" (r.toml:18) comes first and matches every trade it could",
                "r.toml:63: campaign \"NOWHERE\": can never apply: its excluded_stores take in every store it names",
                "r.toml:11: campaign \"OLD\": its window ended at 2021-01-01 00:00:00 +08:00",
                "r.toml:47: campaign \"SH-01\": can never apply: exclusive campaign \"SH-ALL\" (r.toml:37) comes first and matches every trade it could",
            ]
        );
    }

    #[test]
    fn a_pattern_covers_the_narrower_ones() {
        use crate::rules::engine::Glob;
        let covers = |a: &str, b: &str| Glob::new(a).covers(&Glob::new(b));
        for (wide, narrow) in [
            ("*", "SH-01*"),
            ("*", "A?B"),
            ("SH-*", "SH-01*"),
            ("SH-*", "SH-01"),
            ("SH-*", "SH-*"),
            ("SH-0?", "SH-01"),
            ("S*1", "S*1"),
        ] {
            assert!(covers(wide, narrow), "{wide} covers {narrow}");
        }
        for (wide, other) in [
            ("SH-01*", "SH-*"),
            ("SH-*", "KL-01"),
            ("SH-01", "SH-01*"),
            ("SH-0?", "SH-0*"),
            ("S*1", "S*"),
        ] {
            assert!(!covers(wide, other), "{wide} does not cover {other}");
        }
    }
}

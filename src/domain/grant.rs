//! A grant: points a trade earns, with their type, campaign and expiry.

use super::{CampaignCode, ExpireType, Points};
use chrono::{DateTime, NaiveDate, Utc};

/// E points are earned from spend; A points are promotional and carry a campaign code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointType {
    E,
    A,
}

impl PointType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::E => "E",
            Self::A => "A",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "E" => Ok(Self::E),
            "A" => Ok(Self::A),
            other => Err(format!("must be \"E\" or \"A\", got {other:?}")),
        }
    }
}

/// Points granted by one trade, as the rules computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub point_type: PointType,
    /// Always above zero: the engine makes no empty grants.
    pub points: Points,
    pub expire_type: ExpireType,
    /// The last local day the points are usable; `None` when the KDP policy is "never".
    pub expire_date: Option<NaiveDate>,
    /// The instant the points stop being available (the local midnight after `expire_date`).
    pub expires_at: Option<DateTime<Utc>>,
    /// The instant the points become usable: pending before it (the program's return window).
    pub available_at: DateTime<Utc>,
    /// Shared with the campaign that granted it: no allocation a grant.
    pub remark: std::sync::Arc<str>,
    /// Set for A grants, `None` for E grants.
    pub campaign_code: Option<CampaignCode>,
}

impl Grant {
    /// The campaign code as the wire shows it: "" for E grants.
    pub fn campaign_code_text(&self) -> &str {
        self.campaign_code.as_ref().map_or("", |c| c.as_str())
    }

    /// The last usable day as `YYYY-MM-DD`: "" when the points never expire.
    pub fn expire_date_text(&self) -> String {
        self.expire_date.map_or_else(String::new, |d| d.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_types() {
        assert_eq!(PointType::parse("E").unwrap(), PointType::E);
        assert_eq!(PointType::parse("A").unwrap().as_str(), "A");
        assert!(PointType::parse("e").is_err());
        assert!(PointType::parse("").is_err());
    }
}

//! A refund of part or all of a trade's payment, and what happens to points it cannot take
//! back.

use super::{Amount, OutRefundNo, OutTradeNo};
use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub out_refund_no: OutRefundNo,
    pub out_trade_no: OutTradeNo,
    /// At most what is left of the trade's payment (checked by the ledger). Zero only for a
    /// trade paid wholly with points (checked by the use case, which knows the payment).
    pub refund_amount: Amount,
    pub refund_time: DateTime<FixedOffset>,
}

impl Refund {
    pub fn new(
        out_refund_no: OutRefundNo,
        out_trade_no: OutTradeNo,
        refund_amount: Amount,
        refund_time: DateTime<FixedOffset>,
    ) -> Self {
        Self {
            out_refund_no,
            out_trade_no,
            refund_amount,
            refund_time,
        }
    }

    /// A digest of what the refund says: the same `out_refund_no` with another fingerprint is a
    /// conflict, with the same one a replay.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, value) in [
            ("out_refund_no", self.out_refund_no.to_string()),
            ("out_trade_no", self.out_trade_no.to_string()),
            ("refund_amount", self.refund_amount.to_minor().to_string()),
            ("refund_time", self.refund_time.to_rfc3339()),
        ] {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.len().to_le_bytes());
            hasher.update(value.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What a refund does with the part of a grant the member no longer holds (spent, or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortfallPolicy {
    /// Take back only what is left of the grant; record the rest as a shortfall, written off.
    #[default]
    RecordShortfall,
    /// The member owes the rest: it comes off the balance (which may go negative), no other
    /// lot stands in for it, and later earns pay it off.
    AllowNegative,
}

impl ShortfallPolicy {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "record_shortfall" => Ok(Self::RecordShortfall),
            "allow_negative" => Ok(Self::AllowNegative),
            other => Err(format!(
                "must be record_shortfall or allow_negative, got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecordShortfall => "record_shortfall",
            Self::AllowNegative => "allow_negative",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund(amount: &str) -> Refund {
        Refund::new(
            OutRefundNo::parse("R1").unwrap(),
            OutTradeNo::parse("T1").unwrap(),
            Amount::parse(amount).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-02T10:00:00+08:00").unwrap(),
        )
    }

    #[test]
    fn the_fingerprint_is_canonical() {
        assert_eq!(refund("300").fingerprint(), refund("300.00").fingerprint());
        assert_ne!(refund("300").fingerprint(), refund("300.01").fingerprint());
    }

    #[test]
    fn policies() {
        assert_eq!(
            ShortfallPolicy::parse("record_shortfall").unwrap(),
            ShortfallPolicy::RecordShortfall
        );
        assert_eq!(
            ShortfallPolicy::parse("allow_negative").unwrap(),
            ShortfallPolicy::AllowNegative
        );
        assert!(ShortfallPolicy::parse("negative").is_err());
        assert_eq!(ShortfallPolicy::default().as_str(), "record_shortfall");
    }
}

//! Rule files as written: serde shapes of the TOML, before any validation.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub program: Option<Spanned<RawProgram>>,
    #[serde(default)]
    pub campaign: Vec<Spanned<RawCampaign>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub name: String,
    pub time_zone: String,
    pub base_currency: String,
    pub rounding: String,
    #[serde(default)]
    pub pending_days: i64,
    pub earn: RawEarn,
    pub kdp: RawKdp,
    pub currencies: BTreeMap<String, DecimalText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEarn {
    pub base: String,
    pub points: i64,
    pub per_amount: DecimalText,
    #[serde(default)]
    pub remark: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKdp {
    pub policy: String,
    pub months: Option<i64>,
    pub years: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub remark: String,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default)]
    pub payment_methods: Vec<String>,
    #[serde(default)]
    pub currencies: Vec<String>,
    pub min_spend: Option<DecimalText>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub exclusive: bool,
    pub expiry: String,
    #[serde(default)]
    pub quarters_ahead: i64,
    pub award: RawAward,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAward {
    pub multiplier_of_e: Option<DecimalText>,
    pub points: Option<i64>,
    pub per_amount: Option<DecimalText>,
    pub rounding: Option<String>,
    pub fixed: Option<i64>,
}

/// A decimal written as a string (`"7.8"`) or an integer (`10`). Floats are refused: a binary
/// float cannot hold most decimal fractions exactly.
#[derive(Debug, Clone)]
pub struct DecimalText(pub String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DecimalVisitor;
        impl Visitor<'_> for DecimalVisitor {
            type Value = DecimalText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal as a string such as \"7.8\", or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DecimalText, E> {
                Err(E::custom(format!(
                    "write decimals as strings, e.g. \"{v}\": a float is not exact"
                )))
            }
        }
        deserializer.deserialize_any(DecimalVisitor)
    }
}

//! Validation of raw rule files into a compiled `Ruleset`. Every problem names the file, the
//! line and column, and what is wrong; all problems of a ruleset are reported at once.

use super::engine::{Award, Campaign, EarnBase, Program, Rounding, Ruleset, StorePattern};
use super::raw::{DecimalText, RawAward, RawCampaign, RawFile, RawKdp, RawProgram};
use super::Source;
use crate::domain::expiry::KdpPolicy;
use crate::domain::trade::parse_rfc3339;
use crate::domain::{CampaignCode, CurrencyCode, ExpireType, Points, ProgramTz};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Limits on what a ruleset may say.
pub const CAMPAIGNS_MAX: usize = 100_000;
pub const PATTERNS_PER_CAMPAIGN_MAX: usize = 10_000;
pub const TEXT_LEN_MAX: usize = 256;
pub const RATE_MAX: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
pub const MULTIPLIER_MAX: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);
pub const QUARTERS_AHEAD_MAX: i64 = 40;
pub const PENDING_DAYS_MAX: i64 = 366;

/// One thing wrong in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no rule files (*.toml) in the rules folder", dir.display())]
    NoFiles { dir: PathBuf },
    #[error("{}: {count} rule files, at most {} allowed", dir.display(), super::FILES_MAX)]
    TooManyFiles { dir: PathBuf, count: usize },
    #[error("{}: {bytes} bytes, at most {} allowed", path.display(), super::FILE_BYTES_MAX)]
    FileTooLarge { path: PathBuf, bytes: u64 },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// Collects problems against one file, turning byte offsets into lines and columns.
struct FileProblems<'a> {
    source: &'a Source,
    problems: &'a mut Vec<Problem>,
}

impl FileProblems<'_> {
    fn at(&mut self, offset: usize, message: impl Into<String>) {
        let before = &self.source.text[..offset.min(self.source.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.problems.push(Problem {
            file: self.source.name.clone(),
            line,
            column,
            message: message.into(),
        });
    }
}

pub fn compile(sources: &[Source], version: String) -> Result<Ruleset, LoadError> {
    let mut problems = Vec::new();
    let mut program: Option<(Program, String)> = None;
    let mut raw_campaigns = Vec::new();

    for source in sources {
        let mut at = FileProblems {
            source,
            problems: &mut problems,
        };
        let file: RawFile = match toml::from_str(&source.text) {
            Ok(file) => file,
            Err(error) => {
                let offset = error.span().map_or(0, |s| s.start);
                at.at(offset, error.message().to_string());
                continue;
            }
        };
        if let Some(raw) = file.program {
            let offset = raw.span().start;
            if let Some((_, first)) = &program {
                at.at(
                    offset,
                    format!("a second [program]: the first is in {first}"),
                );
            } else if let Some(compiled) = compile_program(raw.get_ref(), &mut |m| at.at(offset, m))
            {
                program = Some((compiled, source.name.clone()));
            }
        }
        for raw in file.campaign {
            raw_campaigns.push((source, raw));
        }
    }

    let Some((program, _)) = program else {
        if problems.is_empty() {
            let file = sources.first().map_or_else(String::new, |s| s.name.clone());
            problems.push(Problem {
                file,
                line: 1,
                column: 1,
                message: "no [program] table in any rule file".into(),
            });
        }
        return Err(LoadError::Invalid { problems });
    };
    if raw_campaigns.len() > CAMPAIGNS_MAX {
        problems.push(Problem {
            file: raw_campaigns[CAMPAIGNS_MAX].0.name.clone(),
            line: 1,
            column: 1,
            message: format!(
                "{} campaigns, at most {CAMPAIGNS_MAX} allowed",
                raw_campaigns.len()
            ),
        });
        return Err(LoadError::Invalid { problems });
    }

    let mut campaigns = Vec::with_capacity(raw_campaigns.len());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (source, raw) in &raw_campaigns {
        let mut at = FileProblems {
            source,
            problems: &mut problems,
        };
        let offset = raw.span().start;
        let Some(campaign) = compile_campaign(raw.get_ref(), &program, &mut |m| at.at(offset, m))
        else {
            continue;
        };
        let place = source.name.clone();
        if let Some(first) = seen.insert(campaign.code.as_str().to_string(), place) {
            at.at(
                offset,
                format!(
                    "campaign code {:?} is used twice: also in {first}",
                    campaign.code.as_str()
                ),
            );
            continue;
        }
        campaigns.push(campaign);
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid { problems });
    }
    campaigns.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.code.cmp(&b.code))
    });
    Ok(Ruleset {
        program,
        campaigns,
        version,
    })
}

fn parse_decimal(raw: &DecimalText) -> Result<Decimal, String> {
    Decimal::from_str(raw.0.trim()).map_err(|_| format!("{:?} is not a decimal number", raw.0))
}

/// A decimal in `(0, max]`.
fn positive_decimal(raw: &DecimalText, max: Decimal) -> Result<Decimal, String> {
    let value = parse_decimal(raw)?;
    if value <= Decimal::ZERO || value > max {
        return Err(format!("must be above 0 and at most {max}, got {value}"));
    }
    Ok(value)
}

fn bounded_text(value: &str) -> Result<String, String> {
    if value.chars().count() > TEXT_LEN_MAX {
        return Err(format!("must be at most {TEXT_LEN_MAX} characters"));
    }
    Ok(value.to_string())
}

/// Runs a field parser and reports its error prefixed with the field's name.
fn field<T>(name: &str, result: Result<T, String>, report: &mut dyn FnMut(String)) -> Option<T> {
    result.map_err(|e| report(format!("{name}: {e}"))).ok()
}

fn compile_program(raw: &RawProgram, report: &mut dyn FnMut(String)) -> Option<Program> {
    let name = field("program.name", bounded_text(&raw.name), report);
    let time_zone = field(
        "program.time_zone",
        ProgramTz::parse(&raw.time_zone),
        report,
    );
    let base_currency = field(
        "program.base_currency",
        CurrencyCode::parse(&raw.base_currency),
        report,
    );
    let rounding = field("program.rounding", Rounding::parse(&raw.rounding), report);
    let earn_base = field("program.earn.base", EarnBase::parse(&raw.earn.base), report);
    let earn_points = field(
        "program.earn.points",
        Points::new(raw.earn.points).and_then(|p| {
            if p.is_zero() {
                Err("must be above 0".into())
            } else {
                Ok(Decimal::from(p.value()))
            }
        }),
        report,
    );
    let earn_per_amount = field(
        "program.earn.per_amount",
        positive_decimal(&raw.earn.per_amount, Decimal::MAX),
        report,
    );
    let earn_remark = field(
        "program.earn.remark",
        bounded_text(&raw.earn.remark),
        report,
    );
    let kdp = field("program.kdp", compile_kdp(&raw.kdp), report);
    let pending_days = field(
        "program.pending_days",
        if (0..=PENDING_DAYS_MAX).contains(&raw.pending_days) {
            Ok(raw.pending_days as u32)
        } else {
            Err(format!(
                "must be from 0 to {PENDING_DAYS_MAX}, got {}",
                raw.pending_days
            ))
        },
        report,
    );
    let mut currency_rates = BTreeMap::new();
    for (code, rate) in &raw.currencies {
        let entry = format!("program.currencies.{code}");
        let code = field(&entry, CurrencyCode::parse(code), report);
        let rate = field(&entry, positive_decimal(rate, RATE_MAX), report);
        if let (Some(code), Some(rate)) = (code, rate) {
            currency_rates.insert(code, rate);
        }
    }
    if let Some(base) = &base_currency {
        match currency_rates.get(base) {
            None => report(format!(
                "program.currencies: the base currency {base} needs a rate of \"1\""
            )),
            Some(rate) if *rate != Decimal::ONE => report(format!(
                "program.currencies.{base}: the base currency's rate must be \"1\", got {rate}"
            )),
            Some(_) => {}
        }
    }
    Some(Program {
        name: name?,
        time_zone: time_zone?,
        base_currency: base_currency?,
        currency_rates,
        rounding: rounding?,
        earn_base: earn_base?,
        earn_points: earn_points?,
        earn_per_amount: earn_per_amount?,
        earn_remark: earn_remark?,
        kdp: kdp?,
        pending_days: pending_days?,
    })
}

fn compile_kdp(raw: &RawKdp) -> Result<KdpPolicy, String> {
    let months = |max: u32| match raw.months {
        Some(m) if (0..=i64::from(max)).contains(&m) => Ok(m as u32),
        Some(m) => Err(format!("months must be from 0 to {max}, got {m}")),
        None => Err(format!("policy {:?} needs months", raw.policy)),
    };
    let policy = match raw.policy.as_str() {
        "rolling_months" => KdpPolicy::RollingMonths(months(KdpPolicy::MONTHS_MAX)?),
        "end_of_nth_month" => KdpPolicy::EndOfNthMonth(months(KdpPolicy::MONTHS_MAX)?),
        "end_of_nth_year" => match raw.years {
            Some(y) if (0..=i64::from(KdpPolicy::YEARS_MAX)).contains(&y) => KdpPolicy::EndOfNthYear(y as u32),
            Some(y) => return Err(format!("years must be from 0 to {}, got {y}", KdpPolicy::YEARS_MAX)),
            None => return Err("policy \"end_of_nth_year\" needs years".into()),
        },
        "never" => KdpPolicy::Never,
        other => {
            return Err(format!(
                "policy must be \"rolling_months\", \"end_of_nth_month\", \"end_of_nth_year\" or \"never\", got {other:?}"
            ))
        }
    };
    let uses_months = matches!(
        policy,
        KdpPolicy::RollingMonths(_) | KdpPolicy::EndOfNthMonth(_)
    );
    let uses_years = matches!(policy, KdpPolicy::EndOfNthYear(_));
    if raw.months.is_some() && !uses_months {
        return Err(format!("policy {:?} takes no months", raw.policy));
    }
    if raw.years.is_some() && !uses_years {
        return Err(format!("policy {:?} takes no years", raw.policy));
    }
    Ok(policy)
}

fn compile_award(raw: &RawAward, program: &Program) -> Result<Award, String> {
    let forms = [
        raw.multiplier_of_e.is_some(),
        raw.points.is_some() || raw.per_amount.is_some(),
        raw.fixed.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err("give exactly one of multiplier_of_e, points with per_amount, or fixed".into());
    }
    if raw.rounding.is_some() && raw.per_amount.is_none() {
        return Err("rounding applies only to points with per_amount".into());
    }
    if let Some(factor) = &raw.multiplier_of_e {
        return positive_decimal(factor, MULTIPLIER_MAX).map(Award::MultiplierOfE);
    }
    if let Some(fixed) = raw.fixed {
        return match Points::new(fixed) {
            Ok(points) if !points.is_zero() => Ok(Award::Fixed(points)),
            Ok(_) => Err("fixed must be above 0".into()),
            Err(e) => Err(format!("fixed {e}")),
        };
    }
    let (Some(points), Some(per_amount)) = (raw.points, &raw.per_amount) else {
        return Err("points and per_amount go together".into());
    };
    let points = Points::new(points).map_err(|e| format!("points {e}"))?;
    if points.is_zero() {
        return Err("points must be above 0".into());
    }
    let rounding = match &raw.rounding {
        Some(r) => Rounding::parse(r).map_err(|e| format!("rounding {e}"))?,
        None => program.rounding,
    };
    Ok(Award::PerAmount {
        points: Decimal::from(points.value()),
        per_amount: positive_decimal(per_amount, Decimal::MAX)
            .map_err(|e| format!("per_amount {e}"))?,
        rounding,
    })
}

fn compile_campaign(
    raw: &RawCampaign,
    program: &Program,
    report: &mut dyn FnMut(String),
) -> Option<Campaign> {
    let code = field("campaign.code", CampaignCode::parse(&raw.code), report)?;
    let label = format!("campaign {:?}", code.as_str());
    let mut report = |m: String| report(format!("{label}: {m}"));
    let report = &mut report;
    let name = field("name", bounded_text(&raw.name), report);
    let remark = field("remark", bounded_text(&raw.remark), report);
    let starts_at = field("starts_at", parse_rfc3339(&raw.starts_at), report);
    let ends_at = field("ends_at", parse_rfc3339(&raw.ends_at), report);
    if let (Some(start), Some(end)) = (starts_at, ends_at) {
        if end <= start {
            report(format!("ends_at {end} is not after starts_at {start}"));
        }
    }
    for (name, count) in [
        ("stores", raw.stores.len()),
        ("payment_methods", raw.payment_methods.len()),
        ("currencies", raw.currencies.len()),
    ] {
        if count > PATTERNS_PER_CAMPAIGN_MAX {
            report(format!(
                "{name}: {count} entries, at most {PATTERNS_PER_CAMPAIGN_MAX} allowed"
            ));
        }
    }
    let stores = raw
        .stores
        .iter()
        .map(|s| {
            if s.trim().is_empty() {
                Err("stores: a pattern must not be empty".to_string())
            } else {
                Ok(StorePattern::new(s.trim()))
            }
        })
        .collect::<Result<Vec<_>, _>>();
    let stores = stores.map_err(&mut *report).ok();
    let mut currencies = Vec::new();
    for raw_code in &raw.currencies {
        match CurrencyCode::parse(raw_code) {
            Ok(c) if program.currency_rates.contains_key(&c) => currencies.push(c),
            Ok(c) => report(format!("currencies: {c} has no rate in program.currencies")),
            Err(e) => report(format!("currencies: {e}")),
        }
    }
    let payment_methods = raw
        .payment_methods
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    let min_spend = match &raw.min_spend {
        None => Some(Decimal::ZERO),
        Some(text) => field(
            "min_spend",
            parse_decimal(text).and_then(|d| {
                if d < Decimal::ZERO {
                    Err(format!("must not be negative, got {d}"))
                } else {
                    Ok(d)
                }
            }),
            report,
        ),
    };
    let expire_type = field("expiry", ExpireType::parse(&raw.expiry), report);
    let quarters_ahead = if (0..=QUARTERS_AHEAD_MAX).contains(&raw.quarters_ahead) {
        Some(raw.quarters_ahead as u32)
    } else {
        report(format!(
            "quarters_ahead: must be from 0 to {QUARTERS_AHEAD_MAX}, got {}",
            raw.quarters_ahead
        ));
        None
    };
    if expire_type == Some(ExpireType::Kdp) && raw.quarters_ahead != 0 {
        report("quarters_ahead: applies only to expiry = \"QUARTER\"".into());
    }
    let award = field("award", compile_award(&raw.award, program), report);
    Some(Campaign {
        code,
        name: name?,
        remark: remark?,
        starts_at: starts_at?.to_utc(),
        ends_at: ends_at?.to_utc(),
        stores: stores?,
        payment_methods,
        currencies,
        min_spend: min_spend?,
        priority: raw.priority,
        exclusive: raw.exclusive,
        expire_type: expire_type?,
        quarters_ahead: quarters_ahead?,
        award: award?,
    })
}

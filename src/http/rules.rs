//! `GET /v1/point-engine/rules`: the active ruleset. `POST /v1/point-engine/trade-simulate`:
//! what a trade would earn and why, writing nothing.

use super::trade_create::{GrantDetail, TradeCreateError, TradeCreateRequest};
use crate::error::success;
use crate::rules::engine::{Award, CampaignOutcome};
use crate::service;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulesData {
    pub version: String,
    pub loaded_at: String,
    /// The errors of the last reload that failed (the running set kept serving), if any since.
    pub last_reload_error: Option<String>,
    /// What must not pass unseen about the set serving (e.g. it has no campaigns).
    pub warnings: Vec<String>,
    pub program: ProgramData,
    pub campaigns: Vec<CampaignData>,
    pub objectives: Vec<ObjectiveData>,
    pub tests: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgramData {
    pub name: String,
    pub time_zone: String,
    pub base_currency: String,
    pub pending_days: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignData {
    pub code: String,
    pub name: String,
    /// `file:line` of its `[[campaign]]`.
    pub origin: String,
    pub starts_at: String,
    pub ends_at: String,
    pub priority: i64,
    pub exclusive: bool,
    pub group: Option<String>,
    pub expire_type: &'static str,
    pub award: String,
    pub budget: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ObjectiveData {
    pub id: String,
    pub code: String,
    pub points: i64,
    pub every: u64,
}

fn award_text(award: &Award, tiers: Option<&crate::rules::engine::Tiers>) -> String {
    match award {
        Award::MultiplierOfE(m) => format!("{m} x E"),
        Award::MultiplierOfEByTier(factors) => factors
            .iter()
            .enumerate()
            .filter_map(|(level, factor)| {
                let name = tiers.map_or("", |t| t.name(level));
                factor.map(|f| format!("{f} x E at {name}"))
            })
            .collect::<Vec<_>>()
            .join(", "),
        Award::PerAmount(award) => format!("{} per {}", award.points, award.per_amount),
        Award::Fixed(p) => format!("{p} fixed"),
        Award::PerLine(p) => format!("{p} per matching line"),
        Award::PerUnit(p) => format!("{p} per matching unit"),
    }
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/rules",
    tag = "native",
    operation_id = "rules",
    summary = "The ruleset serving now",
    responses((status = 200, description = "The program and its campaigns", body = crate::error::Envelope<RulesData>)),
    security(("api_key" = []))
)]
pub async fn rules(state: web::Data<AppState>) -> HttpResponse {
    let (rules, loaded_at, last_error) = state.rules.status();
    let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let program = &rules.program;
    success(RulesData {
        version: rules.version.clone(),
        loaded_at: time(loaded_at),
        last_reload_error: last_error,
        warnings: rules.alerts(),
        program: ProgramData {
            name: program.name.clone(),
            time_zone: program.time_zone.to_string(),
            base_currency: program.base_currency.to_string(),
            pending_days: program.pending_days,
        },
        campaigns: rules
            .campaigns
            .iter()
            .map(|c| CampaignData {
                code: c.code.to_string(),
                name: c.name.clone(),
                origin: c.origin.clone(),
                starts_at: time(c.starts_at),
                ends_at: time(c.ends_at),
                priority: c.priority,
                exclusive: c.exclusive,
                group: c.group.clone(),
                expire_type: c.expire_type.as_str(),
                award: award_text(&c.award, rules.program.tiers.as_ref()),
                budget: c.budget,
            })
            .collect(),
        objectives: rules
            .objectives
            .iter()
            .map(|o| ObjectiveData {
                id: o.id.to_string(),
                code: o.code.to_string(),
                points: o.points.value(),
                every: o.every,
            })
            .collect(),
        tests: rules.tests.len(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SimulateData {
    pub ruleset_version: String,
    pub total_point: i64,
    pub detail: Vec<GrantDetail>,
    pub e_point: i64,
    /// The earning base in base currency, after the program's exclusions.
    pub spend_base: String,
    /// Every campaign, in evaluation order, with what it did and why.
    #[schema(value_type = Vec<Object>)]
    pub campaigns: Vec<CampaignOutcome>,
}

/// Same body, same checks and same errors as trade-create; nothing is written.
#[utoipa::path(
    post,
    path = "/v1/point-engine/trade-simulate",
    tag = "native",
    operation_id = "trade_simulate",
    summary = "What a trade would earn and why, writing nothing",
    request_body = TradeCreateRequest,
    responses((status = 200, description = "The grants and every campaign's outcome", body = crate::error::Envelope<SimulateData>)),
    security(("api_key" = []))
)]
pub async fn trade_simulate(
    state: web::Data<AppState>,
    body: web::Json<TradeCreateRequest>,
) -> Result<HttpResponse, TradeCreateError> {
    let now = Utc::now();
    let trade = body.into_inner().into_trade(now, state.clock_skew_s_max)?;
    let rules = state.rules.current();
    let version = rules.version.clone();
    let (priced, explanation) = super::on_pool(state.clone(), move || {
        service::simulate_trade(&state.store, &rules, &trade)
    })
    .await??;
    Ok(success(SimulateData {
        ruleset_version: version,
        total_point: priced.grants.iter().map(|g| g.points.value()).sum(),
        detail: priced.grants.iter().map(GrantDetail::from).collect(),
        e_point: explanation.e_points,
        spend_base: explanation.spend_base,
        campaigns: explanation.campaigns,
    }))
}

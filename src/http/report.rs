//! Finance reports: `GET /v1/point-engine/reports/liability[?as_of]` and
//! `GET /v1/point-engine/reports/movements?from[&to][&by]`. JSON in the native envelope, or CSV
//! with `Accept: text/csv` or `?format=csv`.

use super::fields::{parsed, FieldError};
use crate::domain::trade::parse_rfc3339;
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::report::{check_period, GroupBy};
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct LiabilityQuery {
    as_of: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct MovementsQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    format: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for ReportError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::Service(ServiceError::Unavailable(e)) => busy("report", e),
            other => internal("report", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

/// CSV when the query says `format=csv` or the client accepts text/csv; JSON otherwise.
fn wants_csv(req: &HttpRequest, format: Option<&str>) -> Result<bool, FieldError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(FieldError {
            field: "format",
            problem: format!("must be json or csv, got {other:?}"),
        }),
        None => Ok(req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))),
    }
}

fn csv(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(body)
}

fn instant(field: &'static str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    Ok(parsed(field, parse_rfc3339(raw))?.to_utc())
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/reports/liability",
    tag = "native",
    operation_id = "liability_report",
    summary = "Outstanding points as of a time",
    params(
        ("as_of" = Option<String>, Query, format = DateTime, description = "RFC 3339, not in the future (default: now)"),
        ("format" = Option<String>, Query, description = "json (default) or csv")
    ),
    responses((status = 200, description = "The report", content((Object = "application/json"), (String = "text/csv")))),
    security(("api_key" = []))
)]
pub async fn liability(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<LiabilityQuery>,
) -> Result<HttpResponse, ReportError> {
    let now = Utc::now();
    let as_of = match &query.as_of {
        Some(raw) => instant("as_of", raw)?,
        None => now,
    };
    parsed("as_of", check_period(as_of, as_of, now).map_err(|e| e.1))?;
    let as_csv = wants_csv(&req, query.format.as_deref())?;
    let report = super::on_pool(state.clone(), move || {
        service::liability_report(
            &state.store,
            &state.rules.current(),
            as_of,
            now,
            state.point_cost,
        )
    })
    .await??;
    Ok(if as_csv {
        csv(report.to_csv())
    } else {
        success(report)
    })
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/reports/movements",
    tag = "native",
    operation_id = "movements_report",
    summary = "Every point movement over a period (earned, burned, expired, reversed, returned, owed, debt paid; written off), with the roll-forward",
    params(
        ("from" = String, Query, format = DateTime, description = "RFC 3339 start, included"),
        ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339 end, excluded (default, and at most: now)"),
        ("by" = Option<String>, Query, description = "day (default), store or campaign"),
        ("format" = Option<String>, Query, description = "json (default) or csv")
    ),
    responses((status = 200, description = "The report", content((Object = "application/json"), (String = "text/csv")))),
    security(("api_key" = []))
)]
pub async fn movements(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<MovementsQuery>,
) -> Result<HttpResponse, ReportError> {
    let now = Utc::now();
    let from = instant(
        "from",
        query.from.as_deref().ok_or_else(|| FieldError {
            field: "from",
            problem: "is required".to_string(),
        })?,
    )?;
    // A period reaching past now (the year to date, say) runs up to now.
    let to = match &query.to {
        Some(raw) => instant("to", raw)?.min(now),
        None => now,
    };
    check_period(from, to, now).map_err(|(field, problem)| FieldError { field, problem })?;
    let by = parsed("by", GroupBy::parse(query.by.as_deref().unwrap_or("day")))?;
    let as_csv = wants_csv(&req, query.format.as_deref())?;
    let report = super::on_pool(state.clone(), move || {
        service::movements_report(
            &state.store,
            &state.rules.current(),
            from,
            to,
            by,
            state.point_cost,
            now,
        )
    })
    .await??;
    Ok(if as_csv {
        csv(report.to_csv())
    } else {
        success(report)
    })
}

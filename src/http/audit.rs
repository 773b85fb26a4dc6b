//! `GET /v1/point-engine/audit`: every ledger invariant, for monitoring. Answers 200 with
//! `consistent` and the violations; alert on `consistent: false`.

use crate::error::{busy, internal, success};
use crate::ledger::audit::Report;
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditData {
    pub consistent: bool,
    pub trades: usize,
    pub lots: usize,
    pub entries: usize,
    pub violations: Vec<String>,
}

impl From<Report> for AuditData {
    fn from(report: Report) -> Self {
        Self {
            consistent: report.is_consistent(),
            trades: report.trades,
            lots: report.lots,
            entries: report.entries,
            violations: report.violations,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for AuditError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Service(ServiceError::Unavailable(e)) => busy("audit", e),
            other => internal("audit", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/audit",
    tag = "native",
    operation_id = "audit",
    summary = "Every ledger invariant, checked on one snapshot",
    responses((status = 200, description = "consistent, and the violations", body = crate::error::Envelope<AuditData>)),
    security(("api_key" = []))
)]
pub async fn audit(state: web::Data<AppState>) -> Result<HttpResponse, AuditError> {
    let report = super::on_pool(state.clone(), move || service::audit(&state.store)).await??;
    Ok(success(AuditData::from(report)))
}

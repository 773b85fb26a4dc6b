//! Prometheus metrics, served at `GET /metrics`: requests by route and status with latency
//! histograms, trades and points, the rules, the database pool, the ledger's writer and the
//! memory of recent trades.
//!
//! Each server has its own recorder (no global one), so two servers in one process (the tests)
//! count apart. Counters are recorded as things happen; gauges are read when scraped.

use crate::ledger::Store;
use crate::rules::LiveRules;
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Request latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// How a trade request ended.
#[derive(Debug, Clone, Copy)]
pub enum TradeOutcome {
    /// Granted now.
    Created,
    /// The same request again: answered as the first time, nothing granted.
    Replayed,
    /// Refused (bad input, conflict, not enough points, busy…): nothing written.
    Refused,
}

impl TradeOutcome {
    fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replayed => "replayed",
            Self::Refused => "refused",
        }
    }
}

pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS_S)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, help: &'static str, unit| {
            recorder.describe_counter(name.into(), unit, help.into())
        };
        describe(
            "point_engine_http_requests_total",
            "HTTP requests answered, by method, route template and status",
            None,
        );
        recorder.describe_histogram(
            "point_engine_http_request_duration_seconds".into(),
            Some(metrics::Unit::Seconds),
            "Time to answer a request, by method and route template".into(),
        );
        describe(
            "point_engine_trades_total",
            "Trade requests by contract and outcome (created, replayed, refused)",
            None,
        );
        describe(
            "point_engine_points_total",
            "Points moved by the API and the expiry task: granted, burned, reversed (by refunds), returned (burned points a refund gave back), expired",
            None,
        );
        describe(
            "point_engine_recent_trades_answered_total",
            "Trade requests answered from the memory of recent trades (--recent-trades-max), without a read of the ledger",
            None,
        );
        recorder.describe_gauge(
            "point_engine_recent_trades".into(),
            None,
            "Recent trades whose answers are kept in memory for replays".into(),
        );
        describe(
            "point_engine_balances_answered_total",
            "Balance requests answered from memory (--balances-lots-max): the member's ledger unchanged since its balance was read",
            None,
        );
        recorder.describe_gauge(
            "point_engine_balances_kept".into(),
            None,
            "Members whose balances are kept in memory".into(),
        );
        describe(
            "point_engine_history_pages_answered_total",
            "History pages answered from memory (--history-movements-max): the member has no newer entry than when the page was read",
            None,
        );
        recorder.describe_gauge(
            "point_engine_history_pages_kept".into(),
            None,
            "Members' history pages kept in memory".into(),
        );
        recorder.describe_gauge(
            "point_engine_answers_memory_bytes".into(),
            None,
            "Bytes the three memories of answers hold together (--answers-memory-mb)".into(),
        );
        describe(
            "point_engine_rules_reload_failures_total",
            "Rule folder changes that did not load (the running set kept serving)",
            None,
        );
        Self { recorder, handle }
    }

    fn count(&self, name: &'static str, labels: Vec<Label>, n: u64) {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
            .increment(n);
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    /// One answered request: `route` is the route template, never the raw path.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.count(
            "point_engine_http_requests_total",
            vec![
                Label::new("method", method.to_string()),
                Label::new("route", route.to_string()),
                Label::new("status", status.to_string()),
            ],
            1,
        );
        self.recorder
            .register_histogram(
                &Key::from_parts(
                    "point_engine_http_request_duration_seconds",
                    vec![
                        Label::new("method", method.to_string()),
                        Label::new("route", route.to_string()),
                    ],
                ),
                &METADATA,
            )
            .record(seconds);
    }

    /// A trade request of a contract (`native`, `pos`, `cblink`, `discount_card`) and how it
    /// ended.
    pub fn trade(&self, contract: &'static str, outcome: TradeOutcome) {
        self.count(
            "point_engine_trades_total",
            vec![
                Label::new("contract", contract),
                Label::new("outcome", outcome.name()),
            ],
            1,
        );
    }

    /// A posted trade's outcome and its points (`burned`: what the trade asked to burn).
    pub fn post<E>(
        &self,
        contract: &'static str,
        result: &Result<crate::ledger::Posted, E>,
        burned: i64,
    ) {
        match result {
            Ok(posted) if posted.replayed => self.trade(contract, TradeOutcome::Replayed),
            Ok(posted) => {
                self.trade(contract, TradeOutcome::Created);
                self.points(
                    "granted",
                    posted.grants.iter().map(|g| g.points.value()).sum(),
                );
                self.points("burned", burned);
            }
            Err(_) => self.trade(contract, TradeOutcome::Refused),
        }
    }

    /// Points moved: `granted`, `burned`, `reversed` (taken back by refunds), `returned` (burned
    /// points a refund gave back) or `expired`.
    pub fn points(&self, movement: &'static str, points: i64) {
        if points > 0 {
            self.count(
                "point_engine_points_total",
                vec![Label::new("movement", movement)],
                points as u64,
            );
        }
    }

    pub fn rules_reload_failed(&self) {
        self.count("point_engine_rules_reload_failures_total", Vec::new(), 1);
    }

    /// Folds the histograms' recent samples in; run every few seconds so they do not pile up
    /// between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition, with the gauges read now.
    pub fn render(&self, rules: &LiveRules, store: &Store) -> String {
        let (ruleset, loaded_at, last_error) = rules.status();
        self.gauge(
            "point_engine_rules_info",
            vec![Label::new("version", ruleset.version.clone())],
            1.0,
        );
        self.gauge(
            "point_engine_rules_campaigns",
            Vec::new(),
            ruleset.campaigns.len() as f64,
        );
        self.gauge(
            "point_engine_rules_loaded_timestamp_seconds",
            Vec::new(),
            loaded_at.timestamp() as f64,
        );
        self.gauge(
            "point_engine_rules_last_reload_failed",
            Vec::new(),
            if last_error.is_some() { 1.0 } else { 0.0 },
        );
        let pool = store.pool.state();
        self.gauge(
            "point_engine_db_pool_connections",
            Vec::new(),
            f64::from(pool.connections),
        );
        self.gauge(
            "point_engine_db_pool_idle_connections",
            Vec::new(),
            f64::from(pool.idle_connections),
        );
        self.gauge(
            "point_engine_db_pool_max_connections",
            Vec::new(),
            f64::from(store.pool.max_size()),
        );
        // What each memory of answers holds, and the requests it answered without a read.
        for (held, len, answered, count) in [
            (
                "point_engine_recent_trades",
                store.recent.len(),
                "point_engine_recent_trades_answered_total",
                store.recent.answered(),
            ),
            (
                "point_engine_balances_kept",
                store.balances.len(),
                "point_engine_balances_answered_total",
                store.balances.answered(),
            ),
            (
                "point_engine_history_pages_kept",
                store.pages.len(),
                "point_engine_history_pages_answered_total",
                store.pages.answered(),
            ),
        ] {
            self.gauge(held, Vec::new(), len as f64);
            self.recorder
                .register_counter(&Key::from_name(answered), &METADATA)
                .absolute(count);
        }
        self.gauge(
            "point_engine_answers_memory_bytes",
            Vec::new(),
            store.answers_budget.bytes_held() as f64,
        );
        {
            let stats = store.writer.stats();
            use std::sync::atomic::Ordering::Relaxed;
            let waiting = stats.waiting.load(Relaxed) as f64;
            let groups = stats.groups.load(Relaxed) as u64;
            let writes = stats.writes.load(Relaxed) as u64;
            let together = stats.together.load(Relaxed) as u64;
            self.gauge("point_engine_writer_queue_depth", Vec::new(), waiting);
            // Counted by the writer itself: writes per group is the batch size.
            for (name, total) in [
                ("point_engine_writer_groups_total", groups),
                ("point_engine_writer_writes_total", writes),
                ("point_engine_writer_receipts_together_total", together),
            ] {
                self.recorder
                    .register_counter(&Key::from_name(name), &METADATA)
                    .absolute(total);
            }
        }
        // Questions per statement is a probe's batch size.
        for (prefix, stats) in [
            ("point_engine_probe", store.probe_stats()),
            ("point_engine_members_probe", store.members_probe_stats()),
            ("point_engine_reads_probe", store.reads_probe_stats()),
        ] {
            let Some(stats) = stats else { continue };
            use std::sync::atomic::Ordering::Relaxed;
            for (name, total) in [
                ("asks_total", &stats.asks),
                ("statements_total", &stats.statements),
            ] {
                self.recorder
                    .register_counter(&Key::from_name(format!("{prefix}_{name}")), &METADATA)
                    .absolute(total.load(Relaxed));
            }
        }
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_prometheus_format() {
        let telemetry = Telemetry::new();
        telemetry.request("GET", "/health", 200, 0.002);
        telemetry.request("GET", "/health", 200, 0.0001);
        telemetry.trade("native", TradeOutcome::Created);
        telemetry.points("granted", 300);
        telemetry.points("burned", 0);
        telemetry.upkeep();
        let text = telemetry.handle.render();
        assert!(
            text.contains(
                "point_engine_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "point_engine_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "point_engine_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.0025\"} 2"
        ));
        assert!(
            text.contains("point_engine_trades_total{contract=\"native\",outcome=\"created\"} 1")
        );
        assert!(text.contains("point_engine_points_total{movement=\"granted\"} 300"));
        assert!(!text.contains("movement=\"burned\""));
        assert!(text.contains("# TYPE point_engine_http_requests_total counter"));
    }
}

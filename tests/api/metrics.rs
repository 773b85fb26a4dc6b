//! `GET /metrics`: Prometheus text with requests, trades, points, rules, pool and writer.

use crate::helpers::*;

fn metric_text(app: &TestApp) -> String {
    let response = ureq::get(&format!("{}/metrics", app.address))
        .call()
        .unwrap();
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.into_string().unwrap()
}

fn metrics_count_requests_trades_and_points() {
    let app = spawn_app();
    let sale = trade("MET-1", "M-MET", &hours_ago(1));
    let (status, first) = app.post_trade(&sale);
    assert_eq!(status, 200);
    let granted = first["data"]["total_point"].as_i64().unwrap();
    assert_eq!(app.post_trade(&sale).0, 200);
    let mut changed = sale.clone();
    changed["invoice_id"] = "another".into();
    assert_eq!(app.post_trade(&changed).0, 409);
    let mut burn = trade("MET-2", "M-MET", &hours_ago(1));
    burn["burn_point"] = "30".into();
    let (status, answer) = app.post_trade(&burn);
    assert_eq!(status, 200, "{answer}");
    let second = answer["data"]["total_point"].as_i64().unwrap();
    assert_eq!(app.balance("M-MET", None).0, 200);
    let (status, _) = app.post_refund(&refund("MET-R1", "MET-1", "1000.00"));
    assert_eq!(status, 200);

    let text = metric_text(&app);
    for line in [
        "point_engine_http_requests_total{method=\"POST\",route=\"/v1/point-engine/trade-create\",status=\"200\"} 3".to_string(),
        "point_engine_http_requests_total{method=\"POST\",route=\"/v1/point-engine/trade-create\",status=\"409\"} 1".to_string(),
        "point_engine_http_requests_total{method=\"GET\",route=\"/v1/point-engine/members/{vip_accountno}/balance\",status=\"200\"} 1".to_string(),
        "point_engine_trades_total{contract=\"native\",outcome=\"created\"} 2".to_string(),
        "point_engine_trades_total{contract=\"native\",outcome=\"replayed\"} 1".to_string(),
        "point_engine_trades_total{contract=\"native\",outcome=\"refused\"} 1".to_string(),
        format!("point_engine_points_total{{movement=\"granted\"}} {}", granted + second),
        "point_engine_points_total{movement=\"burned\"} 30".to_string(),
        format!("point_engine_points_total{{movement=\"reversed\"}} {granted}"),
        "point_engine_rules_campaigns 14".to_string(),
        "point_engine_rules_last_reload_failed 0".to_string(),
        "point_engine_db_pool_max_connections 8".to_string(),
        // MET-1 and MET-2 remembered; MET-1's replay and its conflict answered from memory.
        "point_engine_recent_trades 2".to_string(),
        "point_engine_recent_trades_answered_total 2".to_string(),
        "# TYPE point_engine_http_request_duration_seconds histogram".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    assert!(
        text.contains("point_engine_rules_info{version=\""),
        "{text}"
    );
    assert!(text.contains(
        "point_engine_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/point-engine/trade-create\"}"
    ) || text.contains("point_engine_http_request_duration_seconds_bucket"));
    if backend() == Backend::Sqlite {
        assert!(
            text.lines()
                .any(|l| l == "point_engine_writer_queue_depth 0"),
            "{text}"
        );
    }
    // No member id reaches the metrics: routes are templates.
    assert!(!text.contains("M-MET"));
}

fn ready_says_the_ledger_answers_and_names_the_rules() {
    let app = spawn_app();
    let (status, ready) = app.call_as("none", "GET", "/ready", None);
    assert_eq!(status, 200);
    let (_, rules) = app.get("/v1/point-engine/rules");
    assert_eq!(
        ready,
        serde_json::json!({"status": "ready", "rules_version": rules["data"]["version"]})
    );
}

on_both_backends!(
    metrics_count_requests_trades_and_points,
    ready_says_the_ledger_answers_and_names_the_rules,
);

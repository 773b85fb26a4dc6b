use crate::helpers::*;
use point_engine::rules;
use serde_json::json;

/// Rules can change between a trade and its retry (a currency dropped, say): the retry still
/// gets the answer the trade got, not an error.
fn a_replay_is_answered_even_when_todays_rules_would_refuse_the_trade() {
    let app = spawn_app();
    let mut usd = trade("USD-REPLAY", "M-FX", &hours_ago(1));
    usd["currency"] = json!("USD");
    let (status, first) = app.post_trade(&usd);
    assert_eq!(status, 200);

    let program = std::fs::read_to_string(shipped_rules().join("program.toml")).unwrap();
    let without_usd = rules_dir(&[("program.toml", &program.replace("USD = \"7.8\"\n", ""))]);
    let rules = std::sync::Arc::new(rules::load_dir(without_usd.path()).unwrap());
    let store = app.store();
    // Straight to the use case, under the rules without USD.
    let post = |body: &serde_json::Value| {
        let parsed: point_engine::http::trade_create::TradeCreateRequest =
            serde_json::from_value(body.clone()).unwrap();
        let trade = parsed.into_trade(chrono::Utc::now(), 300).unwrap();
        let fingerprint = trade.fingerprint();
        point_engine::service::create_trade(
            &store,
            rules.clone(),
            fingerprint,
            trade,
            chrono::Utc::now(),
        )
        .wait()
    };
    let posted = post(&usd).unwrap();
    assert!(posted.replayed);
    assert_eq!(
        posted.trade_no.to_string(),
        first["data"]["trade_no"].as_str().unwrap()
    );
    assert_eq!(
        posted.grants.iter().map(|g| g.points.value()).sum::<i64>(),
        780
    );

    let mut fresh = usd.clone();
    fresh["out_trade_no"] = json!("USD-NEW");
    let error = post(&fresh).unwrap_err();
    assert_eq!(
        error.to_string(),
        "currency USD is not accepted by this program"
    );
}

on_both_backends!(a_replay_is_answered_even_when_todays_rules_would_refuse_the_trade,);

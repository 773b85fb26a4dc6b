//! Refunds in any order end the same. Generated histories of one member (earns, burns of
//! earlier points, several trades' partial and full refunds) are replayed once per order of
//! their refunds, each on a fresh ledger, under each shortfall policy: whatever the order, the
//! final balance and what is owed are the same, every lot's remaining points too under
//! record_shortfall (under allow_negative, which of the member's lots stood in for a short grant
//! can differ; the points they hold together do not), and the audit is clean after each.

use crate::helpers::*;
use point_engine::domain::ShortfallPolicy;
use serde_json::{json, Value};

/// One member's history: trades posted in order (each body), then refunds (out_trade_no,
/// amount) whose order is permuted.
struct History {
    member: String,
    trades: Vec<Value>,
    refunds: Vec<(String, String)>,
}

/// Trades of 100 to 1,200 HKD at D stores (E, DOUBLE and BIG points), each from the second on
/// burning part of what the member holds by then (read from `scratch`, where the history is
/// first posted); then 3 or 4 refunds, full or partial, of different trades or twice of one.
fn history(rng: &mut Lcg, scratch: &TestApp, h: usize) -> History {
    let trades_count = 3 + rng.below(2) as usize;
    let mut trades = Vec::new();
    let mut payments = Vec::new();
    for i in 0..trades_count {
        let amount = 100 * (1 + rng.below(12)) as i64;
        let mut body = trade(&format!("H{h}-{i}"), "MEMBER", &hours_ago(50 - i as i64));
        body["vip_accountno"] = json!(format!("MEMBER-{h}"));
        body["store_code"] = json!("D001");
        body["total_amount"] = json!(amount.to_string());
        body["payment_amount"] = json!(amount.to_string());
        let (_, balance) = scratch.balance(&format!("MEMBER-{h}"), None);
        let held = balance["data"]["available_point"].as_i64().unwrap_or(0);
        if held > 0 {
            body["burn_point"] = json!(1 + rng.below(held as u64) as i64);
        }
        let (status, answer) = scratch.post_trade(&body);
        assert_eq!(status, 200, "{body} {answer}");
        trades.push(body);
        payments.push(amount);
    }
    let refunds_count = 3 + rng.below(2) as usize;
    let mut refunded = vec![0; trades_count];
    let mut refunds = Vec::new();
    for r in 0..refunds_count {
        let t = rng.below(trades_count as u64) as usize;
        let left = payments[t] - refunded[t];
        if left == 0 {
            continue;
        }
        let amount = match rng.below(3) {
            0 => left,
            _ => (left / 2 / 10 * 10).clamp(10, left),
        };
        refunded[t] += amount;
        refunds.push((format!("H{h}-{t}-R{r}"), format!("H{h}-{t}:{amount}")));
    }
    History {
        member: format!("MEMBER-{h}"),
        trades,
        refunds,
    }
}

/// Every order of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

/// (available, pending, owed) and every lot's (type, points, remaining), in lot order.
type Outcome = ((i64, i64, i64), Vec<(String, i64, i64)>);

fn spawn(policy: ShortfallPolicy) -> (TestApp, tempfile::TempDir) {
    let rules = refund_rules("2");
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.refund_shortfall_policy = policy;
    (spawn_app_in(settings, db), rules)
}

/// The history with its refunds in `order` on a fresh ledger: the outcome, and the points
/// returned burns settled.
fn replay(
    history: &History,
    order: &[(String, String)],
    policy: ShortfallPolicy,
) -> (Outcome, i64) {
    let (app, _rules) = spawn(policy);
    for body in &history.trades {
        let (status, answer) = app.post_trade(body);
        assert_eq!(status, 200, "{body} {answer}");
    }
    let mut answers = Vec::new();
    for (out_refund_no, what) in order {
        let (out_trade_no, amount) = what.split_once(':').unwrap();
        let body = refund(out_refund_no, out_trade_no, amount);
        let (status, answer) = app.post_refund(&body);
        assert_eq!(status, 200, "{order:?}: {answer}");
        answers.push((body, answer));
    }
    app.assert_ledger_consistent();
    // Each refund again, after all of them: answered as it was the first time, what its
    // returned burns settled included (settlements made through lots that stood in too).
    for (body, first) in &answers {
        let (status, again) = app.post_refund(body);
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            again["data"], first["data"],
            "{order:?}: {body} replays otherwise"
        );
    }
    let (_, balance) = app.balance(&history.member, None);
    let data = &balance["data"];
    let n = |k: &str| data[k].as_i64().unwrap();
    let settled: i64 = {
        use diesel::prelude::*;
        use point_engine::ledger::schema::refund_settlements;
        refund_settlements::table
            .select(refund_settlements::points)
            .load::<i64>(&mut app.conn())
            .unwrap()
            .iter()
            .sum()
    };
    (
        (
            (n("available_point"), n("pending_point"), n("owed_point")),
            app.lots()
                .into_iter()
                .map(|(point_type, points, remaining, _)| (point_type, points, remaining))
                .collect(),
        ),
        settled,
    )
}

fn refunds_in_any_order_end_the_same(policy: ShortfallPolicy, seed: u64, histories: usize) {
    let mut rng = Lcg(seed);
    let (scratch, _rules) = spawn(policy);
    let mut settled = 0;
    for h in 0..histories {
        let history = history(&mut rng, &scratch, h);
        let orders = permutations(&history.refunds);
        let (first, _) = replay(&history, &orders[0], policy);
        for order in &orders[1..] {
            let (outcome, points) = replay(&history, order, policy);
            let differs = format!(
                "history {h} under {policy:?}: {order:?} ends otherwise than {:?}",
                orders[0]
            );
            match policy {
                ShortfallPolicy::RecordShortfall => assert_eq!(outcome, first, "{differs}"),
                // The points that stood in for a grant its refund found short may come from
                // other lots in another order: the balance, what is owed, and the points
                // left in all lots are the same.
                ShortfallPolicy::AllowNegative => {
                    let total = |o: &Outcome| o.1.iter().map(|l| l.2).sum::<i64>();
                    assert_eq!(outcome.0, first.0, "{differs}");
                    assert_eq!(total(&outcome), total(&first), "{differs}");
                }
            }
            settled += points;
        }
    }
    // Some orders refund a trade before the trade that burned its points, and the returned
    // points settle that refund.
    assert!(settled > 0);
}

fn refunds_in_any_order_end_the_same_under_record_shortfall() {
    refunds_in_any_order_end_the_same(ShortfallPolicy::RecordShortfall, 21, 6);
}

fn refunds_in_any_order_end_the_same_under_allow_negative() {
    refunds_in_any_order_end_the_same(ShortfallPolicy::AllowNegative, 22, 6);
}

on_both_backends!(
    refunds_in_any_order_end_the_same_under_record_shortfall,
    refunds_in_any_order_end_the_same_under_allow_negative,
);

//! Refunds in any order end the same. Generated histories of one member (earns, burns of
//! earlier points, several trades' partial and full refunds) are replayed once per order of
//! their refunds, each on a fresh ledger, under each shortfall policy: whatever the order, the
//! final balance, what is owed and every lot's remaining points are the same, also when an
//! expiry falls between the refunds, and the audit is clean after each.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use point_engine::domain::{ShortfallPolicy, VipAccountNo};
use point_engine::http::trade_create::TradeCreateRequest;
use point_engine::http::trade_refund::TradeRefundRequest;
use point_engine::ledger::refund::Refunded;
use point_engine::service;
use serde_json::{json, Value};
use std::sync::Arc;

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
    let refunds = refunds_of(rng, &payments, &format!("H{h}"));
    History {
        member: format!("MEMBER-{h}"),
        trades,
        refunds,
    }
}

/// 3 or 4 refunds, full or partial, of different trades (of `payments`) or twice of one:
/// (out_refund_no, "out_trade_no:amount"), the trades numbered `{prefix}-{index}`.
fn refunds_of(rng: &mut Lcg, payments: &[i64], prefix: &str) -> Vec<(String, String)> {
    let refunds_count = 3 + rng.below(2) as usize;
    let mut refunded = vec![0; payments.len()];
    let mut refunds = Vec::new();
    for r in 0..refunds_count {
        let t = rng.below(payments.len() as u64) as usize;
        let left = payments[t] - refunded[t];
        if left == 0 {
            continue;
        }
        let amount = match rng.below(3) {
            0 => left,
            _ => (left / 2 / 10 * 10).clamp(10, left),
        };
        refunded[t] += amount;
        refunds.push((
            format!("{prefix}-{t}-R{r}"),
            format!("{prefix}-{t}:{amount}"),
        ));
    }
    refunds
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

/// Two orders' outcomes end the same: the balance, what is owed and every lot, under either
/// policy.
fn assert_same_end(outcome: &Outcome, first: &Outcome, differs: &str) {
    assert_eq!(outcome, first, "{differs}");
}

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
            assert_same_end(&outcome, &first, &differs);
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

/// The end of a quarter (31 March 2030 in +08:00) the timed histories straddle, far from the
/// machine's clock, so that the background expiry task never reaches their lots.
fn quarter_end() -> DateTime<Utc> {
    "2030-03-31T16:00:00Z".parse().unwrap()
}

fn at_plus8(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// A history on the ledger's own clock: trades in the three days before `quarter_end` at D
/// stores (KDP points) and Q stores (QTR points, expiring at the quarter's end), each from the
/// second on burning part of what the member holds; then refunds, `before` of them (in
/// whatever order) made before the quarter's end and the rest after it.
struct TimedHistory {
    member: VipAccountNo,
    /// (body, the moment it is posted).
    trades: Vec<(Value, DateTime<Utc>)>,
    refunds: Vec<(String, String)>,
    before: usize,
}

struct Ledger {
    app: TestApp,
    _rules_dir: tempfile::TempDir,
    store: point_engine::ledger::Store,
    rules: Arc<point_engine::rules::Ruleset>,
}

fn ledger(policy: ShortfallPolicy) -> Ledger {
    let (app, rules_dir) = spawn(policy);
    let store = app.store();
    let rules = Arc::new(point_engine::rules::load_dir(rules_dir.path()).unwrap());
    Ledger {
        app,
        _rules_dir: rules_dir,
        store,
        rules,
    }
}

impl Ledger {
    fn post_trade(&self, body: &Value, now: DateTime<Utc>) {
        let request: TradeCreateRequest = serde_json::from_value(body.clone()).unwrap();
        let trade = request.into_trade(now, 300).unwrap();
        service::create_trade(
            &self.store,
            self.rules.clone(),
            trade.fingerprint(),
            trade,
            now,
        )
        .wait()
        .unwrap();
    }

    fn refund(
        &self,
        out_refund_no: &str,
        what: &str,
        now: DateTime<Utc>,
        policy: ShortfallPolicy,
    ) -> Refunded {
        let (out_trade_no, amount) = what.split_once(':').unwrap();
        let body = json!({
            "out_refund_no": out_refund_no,
            "out_trade_no": out_trade_no,
            "refund_amount": amount,
            "refund_time": at_plus8(now),
        });
        let request: TradeRefundRequest = serde_json::from_value(body).unwrap();
        let refund = request.into_refund(now, 300).unwrap();
        service::refund_trade(&self.store, self.rules.clone(), refund, policy, now)
            .unwrap_or_else(|e| panic!("{out_refund_no} {what}: {e}"))
    }

    /// (available, pending, owed) as of `as_of`; zeros for a member not yet made.
    fn balance(&self, member: &VipAccountNo, as_of: DateTime<Utc>) -> (i64, i64, i64) {
        service::member_balance(
            &mut self.store.pool.get().unwrap(),
            member,
            as_of,
            &self.store.balances,
        )
        .unwrap()
        .map_or((0, 0, 0), |b| {
            (b.available.value(), b.pending.value(), b.owed.value())
        })
    }
}

fn timed_history(rng: &mut Lcg, scratch: &Ledger, h: usize) -> TimedHistory {
    let member = format!("TIMED-{h}");
    let trades_count = 3 + rng.below(2) as usize;
    let mut trades = Vec::new();
    let mut payments = Vec::new();
    for i in 0..trades_count {
        let at = quarter_end() - chrono::Duration::hours(72 - 12 * i as i64);
        let amount = 100 * (1 + rng.below(12)) as i64;
        let mut body = trade(&format!("TH{h}-{i}"), &member, &at_plus8(at));
        body["store_code"] = json!(if rng.below(2) == 0 { "D001" } else { "Q001" });
        body["total_amount"] = json!(amount.to_string());
        body["payment_amount"] = json!(amount.to_string());
        let now = at + chrono::Duration::minutes(1);
        let (held, _, _) = scratch.balance(&VipAccountNo::parse(&member).unwrap(), now);
        if held > 0 {
            body["burn_point"] = json!(1 + rng.below(held as u64) as i64);
        }
        scratch.post_trade(&body, now);
        trades.push((body, now));
        payments.push(amount);
    }
    let refunds = refunds_of(rng, &payments, &format!("TH{h}"));
    let before = rng.below(refunds.len() as u64 + 1) as usize;
    TimedHistory {
        member: VipAccountNo::parse(&member).unwrap(),
        trades,
        refunds,
        before,
    }
}

/// The timed history with its refunds in `order` on a fresh ledger, the quarter's points
/// expiring after the first `before` of them: booked by the expiry task between them if
/// `expiry_task`, else by the first refund that finds them expired. The outcome as of a day
/// after the quarter's end, every refund replayed as first answered, and the audit clean; and
/// the points its refunds left owing or wrote off.
fn replay_timed(
    history: &TimedHistory,
    order: &[(String, String)],
    policy: ShortfallPolicy,
    expiry_task: bool,
) -> (Outcome, i64) {
    let ledger = ledger(policy);
    for (body, now) in &history.trades {
        ledger.post_trade(body, *now);
    }
    let mut answers = Vec::new();
    for (k, (out_refund_no, what)) in order.iter().enumerate() {
        let minutes = chrono::Duration::minutes(k as i64);
        let now = if k < history.before {
            quarter_end() - chrono::Duration::hours(10) + minutes
        } else {
            if k == history.before && expiry_task {
                service::expire_due(&ledger.store, quarter_end() + chrono::Duration::hours(1))
                    .unwrap();
            }
            quarter_end() + chrono::Duration::hours(10) + minutes
        };
        answers.push((
            out_refund_no,
            what,
            now,
            ledger.refund(out_refund_no, what, now, policy),
        ));
    }
    let end = quarter_end() + chrono::Duration::hours(24);
    service::expire_due(&ledger.store, end).unwrap();
    ledger.app.assert_ledger_consistent();
    for (out_refund_no, what, now, first) in &answers {
        let again = ledger.refund(out_refund_no, what, *now, policy);
        assert!(again.replayed);
        assert_eq!(
            Refunded {
                replayed: false,
                ..again
            },
            *first,
            "{order:?}: {out_refund_no} replays otherwise"
        );
    }
    let shortfall = answers
        .iter()
        .map(|(_, _, _, refunded)| refunded.shortfall_points())
        .sum();
    (
        (
            ledger.balance(&history.member, end),
            ledger
                .app
                .lots()
                .into_iter()
                .map(|(point_type, points, remaining, _)| (point_type, points, remaining))
                .collect(),
        ),
        shortfall,
    )
}

fn refunds_across_an_expiry_end_the_same(policy: ShortfallPolicy, seed: u64, histories: usize) {
    let mut rng = Lcg(seed);
    let scratch = ledger(policy);
    let (mut expired_refunds, mut shortfall) = (0, 0);
    for h in 0..histories {
        let history = timed_history(&mut rng, &scratch, h);
        let orders = permutations(&history.refunds);
        let (first, _) = replay_timed(&history, &orders[0], policy, true);
        for (i, order) in orders.iter().enumerate() {
            let (outcome, points) = replay_timed(&history, order, policy, i % 2 == 1);
            shortfall += points;
            let differs = format!(
                "timed history {h} under {policy:?}, {} refunds before the quarter's end: \
                 {order:?} ends otherwise than {:?}",
                history.before, orders[0]
            );
            assert_same_end(&outcome, &first, &differs);
        }
        expired_refunds += history.refunds.len() - history.before;
    }
    // Some refunds came after the quarter's points had expired, and some found their grants'
    // points spent (owed under allow_negative, while the member held other points).
    assert!(expired_refunds > 0);
    assert!(shortfall > 0);
}

fn refunds_across_an_expiry_end_the_same_under_record_shortfall() {
    refunds_across_an_expiry_end_the_same(ShortfallPolicy::RecordShortfall, 31, 6);
}

fn refunds_across_an_expiry_end_the_same_under_allow_negative() {
    refunds_across_an_expiry_end_the_same(ShortfallPolicy::AllowNegative, 32, 6);
}

on_both_backends!(
    refunds_in_any_order_end_the_same_under_record_shortfall,
    refunds_in_any_order_end_the_same_under_allow_negative,
    refunds_across_an_expiry_end_the_same_under_record_shortfall,
    refunds_across_an_expiry_end_the_same_under_allow_negative,
);

//! Evaluating one trade: against the shipped rules, and against generated rulesets of 1,000
//! and 10,000 campaigns; and a trade granted by 1,000 campaigns against copying its grants.
//! `cargo bench --bench rules`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use point_engine::domain::trade::parse_rfc3339;
use point_engine::domain::{
    Amount, CurrencyCode, InvoiceId, OutTradeNo, PaymentMethod, Points, StoreCode, Trade,
    VipAccountNo,
};
use point_engine::rules::{self, Source};
use std::fmt::Write;
use std::path::Path;

fn seed_trade() -> Trade {
    let time = parse_rfc3339("2023-01-20T10:00:00+08:00").unwrap();
    Trade {
        vip_accountno: VipAccountNo::parse("040xxxx").unwrap(),
        out_trade_no: OutTradeNo::parse("XXXX").unwrap(),
        store_code: StoreCode::parse("DP01XXXX").unwrap(),
        invoice_id: InvoiceId::parse("123456").unwrap(),
        total_amount: Amount::parse("1000.00").unwrap(),
        payment_amount: Amount::parse("1000.00").unwrap(),
        payment_method: PaymentMethod::parse("Visa").unwrap(),
        currency: CurrencyCode::parse("HKD").unwrap(),
        sales_time: time,
        submit_time: time,
        approval_time: time,
        burn_point: Points::ZERO,
        resource: String::new(),
        remark: String::new(),
        receipt_image_urls: vec![],
        payment_image_urls: vec![],
        lines: vec![],
        post_fee: Amount::ZERO,
        discount: Amount::ZERO,
    }
}

/// `count` campaigns over 2023: a spread of store patterns, payment methods, windows,
/// minimum spends and awards; about one in fifty matches the seed trade. `spread`: each store
/// prefix has about 20 campaigns, so a larger program covers more stores (as a real one does)
/// instead of piling more campaigns on the same stores.
fn generated(count: usize, spread: bool) -> rules::Ruleset {
    let program =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/program.toml"))
            .unwrap();
    let mut campaigns = String::new();
    let methods = ["Visa", "Master", "Cash", "Octopus", "AlipayHK"];
    for i in 0..count {
        let month = 1 + i % 12;
        let store = if spread {
            if i < 20 {
                "DP01*".to_string()
            } else {
                format!("S{:05}*", i / 20)
            }
        } else if i % 10 == 0 {
            "DP01*".to_string()
        } else {
            format!("S{:03}*", i % 500)
        };
        let award = match i % 3 {
            0 => "{ multiplier_of_e = \"1.5\" }".to_string(),
            1 => "{ points = 1, per_amount = \"20\" }".to_string(),
            _ => format!("{{ fixed = {} }}", 10 + i % 90),
        };
        write!(
            campaigns,
            "[[campaign]]\ncode = \"GEN-{i:05}\"\nremark = \"generated {i}\"\n\
             starts_at = \"2023-{month:02}-01T00:00:00+08:00\"\nends_at = \"2024-01-01T00:00:00+08:00\"\n\
             stores = [\"{store}\"]\npayment_methods = [\"{}\"]\nmin_spend = \"{}\"\npriority = {}\n\
             expiry = \"QUARTER\"\naward = {award}\n\n",
            methods[i % methods.len()],
            (i % 7) * 100,
            i % 100,
        )
        .unwrap();
    }
    rules::from_sources(&[
        Source {
            name: "program.toml".into(),
            text: program,
        },
        Source {
            name: "campaigns.toml".into(),
            text: campaigns,
        },
    ])
    .unwrap()
}

fn evaluate(c: &mut Criterion) {
    let trade = seed_trade();
    let shipped = rules::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap();
    assert_eq!(shipped.evaluate(&trade).unwrap().len(), 2);
    let mut group = c.benchmark_group("evaluate");
    group.bench_function("shipped_rules", |b| {
        b.iter(|| shipped.evaluate(black_box(&trade)).unwrap())
    });
    for (name, spread) in [("generated_campaigns", false), ("spread_over_stores", true)] {
        for count in [1_000, 10_000] {
            let ruleset = generated(count, spread);
            group.bench_with_input(BenchmarkId::new(name, count), &ruleset, |b, ruleset| {
                b.iter(|| ruleset.evaluate(black_box(&trade)).unwrap())
            });
        }
    }
    group.finish();
}

/// A trade granted by every campaign on its stores (1,000 of the 10,000 piled campaigns, the
/// kind of trade behind the piled sets' p99 in `../shared/bench/pe-vs-zen`): pricing it, and
/// only copying the grants it returns (what any engine handing back those grants pays).
fn granted_by_many(c: &mut Criterion) {
    let mut trade = seed_trade();
    let time = parse_rfc3339("2023-12-20T10:00:00+08:00").unwrap();
    (trade.sales_time, trade.submit_time, trade.approval_time) = (time, time, time);
    trade.total_amount = Amount::parse("2000.00").unwrap();
    trade.payment_amount = trade.total_amount;
    let ruleset = generated(10_000, false);
    let grants = ruleset.evaluate(&trade).unwrap();
    assert_eq!(grants.len(), 1 + 1_000, "E and every DP01 campaign");
    let mut group = c.benchmark_group("granted_by_1000");
    group.bench_function("price", |b| {
        b.iter(|| ruleset.evaluate(black_box(&trade)).unwrap())
    });
    group.bench_function("copy_the_grants", |b| b.iter(|| black_box(&grants).clone()));
    group.finish();
}

criterion_group!(benches, evaluate, granted_by_many);
criterion_main!(benches);

//! Fills a SQLite ledger with a history of synthetic trades for timing `rules backtest`:
//!
//! cargo run --release --example backtest_history -- /tmp/history.db 1000000
//! time cargo run --release -- rules backtest --rules rules/ --database /tmp/history.db
//!
//! The trades spread over 2026, 20,000 members and the shipped rules' stores, some with lines.
//! Loading skips the per-trade fsync (`synchronous = OFF`): this is a fixture, not a ledger.

use diesel::connection::SimpleConnection;
use point_engine::domain::trade::parse_rfc3339;
use point_engine::domain::{
    Amount, CurrencyCode, InvoiceId, OutTradeNo, PaymentMethod, Points, Sku, StoreCode, Trade,
    TradeLine, VipAccountNo,
};
use point_engine::ledger::{self, DatabaseUrl};
use point_engine::rules;
use std::path::Path;

const TRADES_MAX: usize = 5_000_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("/tmp/history.db", String::as_str);
    let count: usize = args
        .get(1)
        .map_or(100_000, |a| a.parse().expect("COUNT is a number"))
        .min(TRADES_MAX);
    let sources = rules::read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap();
    let rules = rules::from_sources(&sources).unwrap();
    let pool = ledger::connect(&DatabaseUrl::Sqlite(path.into()), 1).unwrap();
    let mut conn = pool.get().unwrap();
    conn.batch_execute("PRAGMA synchronous = OFF").unwrap();
    // The ruleset that prices the trades, kept as the server keeps it: the audit (and
    // `migrate-to`'s) prices each trade again under it.
    let sources_json = point_engine::service::sources_json(&sources);
    ledger::save_ruleset(&mut conn, &rules.version, sources_json, chrono::Utc::now()).unwrap();
    let stores = [
        "HC-001",
        "HC-002",
        "AP-T1-DF01",
        "AP-T2-0001",
        "DP01XXXX",
        "X001",
    ];
    let methods = ["Visa", "Master", "Cash"];
    let started = std::time::Instant::now();
    let now = chrono::Utc::now();
    for i in 0..count {
        let day = 1 + (i * 7919) % 330;
        let date = chrono::NaiveDate::from_yo_opt(2026, day as u32).unwrap();
        let time =
            parse_rfc3339(&format!("{date}T{:02}:{:02}:00+08:00", 6 + i % 16, i % 60)).unwrap();
        let amount = Amount::from_minor(1_000 + ((i * 104_729) % 500_000) as i64).unwrap();
        let lines = if i % 4 == 0 {
            vec![TradeLine::new(
                Sku::parse("TEA-OOLONG").unwrap(),
                "",
                2 + (i % 3) as i64,
                amount,
            )
            .unwrap()]
        } else {
            vec![]
        };
        let trade = Trade {
            vip_accountno: VipAccountNo::parse(&format!("M{}", i % 20_000)).unwrap(),
            out_trade_no: OutTradeNo::parse(&format!("H{i}")).unwrap(),
            store_code: StoreCode::parse(stores[i % stores.len()]).unwrap(),
            invoice_id: InvoiceId::parse("1").unwrap(),
            total_amount: amount,
            payment_amount: amount,
            payment_method: PaymentMethod::parse(methods[i % methods.len()]).unwrap(),
            currency: CurrencyCode::parse("HKD").unwrap(),
            sales_time: time,
            submit_time: time,
            approval_time: time,
            burn_point: Points::ZERO,
            resource: String::new(),
            remark: String::new(),
            receipt_image_urls: vec![],
            payment_image_urls: vec![],
            lines,
            post_fee: Amount::ZERO,
            discount: Amount::ZERO,
        };
        let needs = rules.needs(&trade).unwrap();
        ledger::post_trade(
            &mut conn,
            &trade,
            ledger::Replay::unknown(&trade.fingerprint()),
            &needs,
            |ctx| rules.price(&trade, ctx),
            &rules.version,
            now,
        )
        .unwrap();
        if (i + 1) % 50_000 == 0 {
            eprintln!("{} trades, {:.0} s", i + 1, started.elapsed().as_secs_f64());
        }
    }
    println!(
        "{count} trades in {path} ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

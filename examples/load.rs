//! HTTP load: posts new trades to a running server and reports throughput and latency.
//! Loopback only, bounded in count and time.
//!
//! cargo run --release -- serve --database /tmp/load.db &
//! cargo run --release --example load -- [PORT] [REQUESTS] [CONCURRENCY]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECONDS_MAX: u64 = 120;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .map_or(8080, |a| a.parse().expect("PORT is a number"));
    let requests: usize = args
        .get(1)
        .map_or(5_000, |a| a.parse().expect("REQUESTS is a number"))
        .min(1_000_000);
    let concurrency: usize = args
        .get(2)
        .map_or(16, |a| a.parse().expect("CONCURRENCY is a number"))
        .clamp(1, 256);
    let url = format!("http://127.0.0.1:{port}/v1/point-engine/trade-create");
    let run = std::process::id();
    let next = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(SECONDS_MAX);
    let started = Instant::now();
    let mut latencies_us: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests || Instant::now() > deadline {
                            return latencies;
                        }
                        let body = serde_json::json!({
                            "vip_accountno": format!("LOAD-{}", i % 1000),
                            "out_trade_no": format!("LOAD-{run}-{i}"),
                            "store_code": "DP01LOAD", "invoice_id": format!("{i}"),
                            "total_amount": "1000.00", "payment_amount": "1000.00",
                            "payment_method": "Visa", "currency": "HKD",
                            "sales_time": "2023-01-20T10:00:00+08:00",
                            "submit_time": "2023-01-20T10:00:00+08:00",
                            "approval_time": "2023-01-20T10:00:00+08:00"
                        });
                        let sent = Instant::now();
                        let response = agent
                            .post(&url)
                            .set("Content-Type", "application/json")
                            .send_string(&body.to_string());
                        assert!(response.is_ok(), "request {i} failed: {response:?}");
                        latencies.push(sent.elapsed().as_micros() as u64);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        latencies_us[((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1)] as f64
            / 1000.0
    };
    println!(
        "{} trades, concurrency {concurrency}: {:.0} trades/s; latency ms p50 {:.2}, p99 {:.2}, max {:.2}",
        latencies_us.len(),
        latencies_us.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

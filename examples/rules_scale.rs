//! How the rules engine scales with the number of campaigns: build time and memory of a
//! generated program, and what a hot reload of it costs the trades priced meanwhile.
//!
//! `cargo run --release --example rules_scale -- [--campaigns 100000] [--form list|prefix]`
//!
//! The campaigns are `benches/rules.rs`'s piled set (a tenth on DP01 stores, the rest over 500
//! store groups of 5), naming stores by prefix (`S003*`) or as an exact list of the group's 5
//! codes (`list`: what a marketer writes for "these stores"). The reload test prices trades on
//! one thread, one after another, while another thread loads the whole folder again with one
//! campaign changed and swaps it in: the trades' worst latency is printed beside their median.

use point_engine::domain::trade::parse_rfc3339;
use point_engine::domain::{
    Amount, CurrencyCode, InvoiceId, OutTradeNo, PaymentMethod, Points, StoreCode, Trade,
    VipAccountNo,
};
use point_engine::rules::{self, live::folder_stamp, LiveRules};
use std::fmt::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn campaigns_toml(count: usize, list: bool, remark_suffix: &str) -> String {
    let methods = ["Visa", "Master", "Cash", "Octopus", "AlipayHK"];
    let mut out = String::with_capacity(count * 320);
    for i in 0..count {
        let month = 1 + i % 12;
        let (prefix, size) = if i % 10 == 0 {
            ("DP01".to_string(), 20)
        } else {
            (format!("S{:03}", i % 500), 5)
        };
        let stores = if list {
            (0..size)
                .map(|n| match size {
                    20 => format!("\"{prefix}{n:02}\""),
                    _ => format!("\"{prefix}{n}\""),
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("\"{prefix}*\"")
        };
        let award = match i % 3 {
            0 => "{ multiplier_of_e = \"1.5\" }".to_string(),
            1 => "{ points = 1, per_amount = \"20\" }".to_string(),
            _ => format!("{{ fixed = {} }}", 10 + i % 90),
        };
        let remark = if i == 0 { remark_suffix } else { "" };
        write!(
            out,
            "[[campaign]]\ncode = \"GEN-{i:06}\"\nremark = \"generated {i}{remark}\"\n\
             starts_at = \"2023-{month:02}-01T00:00:00+08:00\"\nends_at = \"2024-01-01T00:00:00+08:00\"\n\
             stores = [{stores}]\npayment_methods = [\"{}\"]\nmin_spend = \"{}\"\npriority = {}\n\
             expiry = \"QUARTER\"\naward = {award}\n\n",
            methods[i % methods.len()],
            (i % 7) * 100,
            i % 100,
        )
        .unwrap();
    }
    out
}

/// Writes the campaigns in files of 5,000 (a rule file holds at most 4 MiB).
fn write_campaigns(dir: &Path, text: &str) {
    let blocks: Vec<&str> = text.split_inclusive("\n\n").collect();
    for (n, chunk) in blocks.chunks(5000).enumerate() {
        std::fs::write(dir.join(format!("campaigns-{n:03}.toml")), chunk.concat()).unwrap();
    }
}

fn trade(k: u64) -> Trade {
    let store = match k % 10 {
        0 | 1 => format!("DP01{:02}", k % 20),
        9 => format!("ZZ{:04}", k % 10_000),
        _ => format!("S{:03}{}", (k * 7) % 500, k % 5),
    };
    let time = parse_rfc3339(&format!(
        "2023-{:02}-{:02}T12:00:00+08:00",
        1 + k % 12,
        1 + k % 28
    ))
    .unwrap();
    let amount = Amount::from_minor(((k * 7919) % 200_000) as i64).unwrap();
    Trade {
        vip_accountno: VipAccountNo::parse("040xxxx").unwrap(),
        out_trade_no: OutTradeNo::parse(&format!("SCALE-{k}")).unwrap(),
        store_code: StoreCode::parse(&store).unwrap(),
        invoice_id: InvoiceId::parse("1").unwrap(),
        total_amount: amount,
        payment_amount: amount,
        payment_method: PaymentMethod::parse(["Visa", "Master", "Cash"][(k % 3) as usize]).unwrap(),
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

/// Resident memory of this process, in MB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let count: usize = value("--campaigns").map_or(100_000, |v| v.parse().unwrap());
    let list = value("--form").as_deref() == Some("list");
    let program =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/program.toml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("program.toml"), &program).unwrap();
    let text = campaigns_toml(count, list, "");
    write_campaigns(dir.path(), &text);
    println!(
        "{count} campaigns ({} stores), {:.1} MB of TOML",
        if list { "exact lists" } else { "prefixes" },
        text.len() as f64 / 1e6
    );

    let before = rss_mb();
    let started = Instant::now();
    let sources = rules::read_dir(dir.path()).unwrap();
    let ruleset = rules::from_sources(&sources).unwrap();
    let build = started.elapsed();
    let peak = rss_mb();
    drop(sources);
    // What stays: the set itself, once the parse's garbage is given back (as a reload does).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
    let after = rss_mb();
    println!(
        "build: {:.0} ms (read, parse, compile, index); resident memory {before:.0} MB, {peak:.0} MB at the end of the build, {after:.0} MB once freed memory is returned (the set: about {:.0} MB)",
        build.as_secs_f64() * 1e3,
        after - before
    );
    if args.iter().any(|a| a == "--build-only") {
        return;
    }

    let trades: Vec<Trade> = (0..20_000).map(trade).collect();
    let mut lat = Vec::with_capacity(trades.len());
    for t in &trades {
        let at = Instant::now();
        std::hint::black_box(ruleset.evaluate(std::hint::black_box(t)).unwrap());
        lat.push(at.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    println!(
        "pricing, quiet: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        *lat.last().unwrap() as f64 / 1000.0
    );

    if args.iter().any(|a| a == "--profile-pricing") {
        // Only pricing, for a profiler: the trades at DP01 stores (many grants each).
        let heavy: Vec<&Trade> = trades
            .iter()
            .filter(|t| t.store_code.as_str().starts_with("DP01"))
            .collect();
        let started = Instant::now();
        let mut grants = 0;
        for _ in 0..20 {
            for t in &heavy {
                grants += ruleset.evaluate(t).unwrap().len();
            }
        }
        let n = heavy.len() * 20;
        println!(
            "{n} DP01 trades: {:.2} µs each, {:.1} grants each",
            started.elapsed().as_secs_f64() * 1e6 / n as f64,
            grants as f64 / n as f64
        );
        return;
    }

    // A hot reload while a thread prices trades one after another.
    let stamp = folder_stamp(dir.path());
    let live = Arc::new(LiveRules::new(dir.path().to_path_buf(), ruleset, stamp));
    let done = Arc::new(AtomicBool::new(false));
    let pricing = {
        let (live, done) = (live.clone(), done.clone());
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut k = 0;
            while !done.load(Ordering::Relaxed) {
                let t = &trades[k % trades.len()];
                let at = Instant::now();
                let rules = live.current();
                std::hint::black_box(rules.evaluate(t).unwrap());
                drop(rules);
                lat.push(at.elapsed().as_nanos() as u64);
                k += 1;
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    write_campaigns(dir.path(), &campaigns_toml(count, list, " (changed)"));
    let started = Instant::now();
    let outcome = live.reload(|_, _| Ok::<(), String>(())).unwrap();
    let reload = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let mut lat = pricing.join().unwrap();
    lat.sort_unstable();
    println!(
        "hot reload: {:.0} ms ({outcome:?}); {} trades priced meanwhile: p50 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs",
        reload.as_secs_f64() * 1e3,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.999),
        *lat.last().unwrap() as f64 / 1000.0
    );
}

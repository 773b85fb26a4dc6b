use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use point_engine::config::Settings;
use point_engine::domain::ShortfallPolicy;
pub use point_engine::ledger::PooledConn;
use point_engine::ledger::{self, DatabaseUrl};
use point_engine::startup::Application;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

/// The seed document's "with receipt" request, verbatim.
pub const SEED_WITH_RECEIPT: &str = r#"{
"vip_accountno": "040xxxx",
"out_trade_no": "XXXX",
"store_code": "DP01XXXX",
"invoice_id": "123456",
"total_amount": "1000.00",
"payment_amount": "1000.00",
"payment_method": "Visa",
"currency": "HKD",
"sales_time": "2023-01-20T10:00:00+08:00",
"submit_time": "2023-01-20T10:00:00+08:00",
"approval_time": "2023-01-20T10:00:00+08:00",
"burn_point": "0",
"resource": "",
"remark": "",
"receipt_image_url": [
"https://xxxx"
],
"payment_image_url": [
"https://xxxx"
]
}"#;

/// The seed document's "without receipt" request, verbatim.
pub const SEED_WITHOUT_RECEIPT: &str = r#"{
"vip_accountno": "040xxxx",
"out_trade_no": "XXXX",
"store_code": "DP01XXXX",
"invoice_id": "123456",
"total_amount": "1000.00",
"payment_amount": "1000.00",
"payment_method": "Visa",
"currency": "HKD",
"sales_time": "2023-01-20T10:00:00+08:00",
"submit_time": "2023-01-20T10:00:00+08:00",
"approval_time": "2023-01-20T10:00:00+08:00",
"burn_point": "0",
"resource": "",
"remark": ""
}"#;

pub fn seed() -> Value {
    serde_json::from_str(SEED_WITH_RECEIPT).unwrap()
}

/// The seed request, moved to `sales_time` and given its own order number and member.
pub fn trade(out_trade_no: &str, vip: &str, sales_time: &str) -> Value {
    let mut body = seed();
    body["out_trade_no"] = out_trade_no.into();
    body["vip_accountno"] = vip.into();
    for field in ["sales_time", "submit_time", "approval_time"] {
        body[field] = sales_time.into();
    }
    body
}

/// An RFC 3339 time `hours` hours before now, in +08:00.
pub fn hours_ago(hours: i64) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (chrono::Utc::now() - chrono::Duration::hours(hours))
        .with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The shipped rules with the examples chosen (`rules/*.toml` and `rules/examples/*.toml` in
/// one folder), as a marketer trying them has them: the tests use the example campaigns.
pub fn shipped_rules() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "shipped-rules-with-examples-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for folder in [repo.clone(), repo.join("examples")] {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        dir
    })
    .clone()
}

/// The database backend a test runs on: SQLite always, PostgreSQL when
/// `POINT_ENGINE_TEST_POSTGRES_URL` is set (see `on_both_backends!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// The PostgreSQL server tests may use: a libpq URL such as `postgres://postgres@127.0.0.1/test`.
pub fn postgres_base_url() -> Option<String> {
    std::env::var("POINT_ENGINE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Runs a test on one backend. On PostgreSQL without `POINT_ENGINE_TEST_POSTGRES_URL` the test
/// says so and passes; `.ci/run` always sets it, so CI never skips.
pub fn run_on(backend: Backend, test: fn()) {
    if backend == Backend::Postgres && postgres_base_url().is_none() {
        // Once, past the test harness's capture (it captures `eprintln!`, not the stream).
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nnote: the postgres:: copies of the integration tests pass without running: \
                 POINT_ENGINE_TEST_POSTGRES_URL is not set. To run them: \
                 POINT_ENGINE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test\n"
            );
        });
        return;
    }
    BACKEND.with(|b| b.set(backend));
    test();
}

/// Makes each named test function a test on SQLite (`sqlite::name`) and on PostgreSQL
/// (`postgres::name`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                $crate::helpers::run_on($crate::helpers::Backend::Sqlite, super::$name)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                $crate::helpers::run_on($crate::helpers::Backend::Postgres, super::$name)
            })*
        }
    };
}

pub fn backend() -> Backend {
    BACKEND.with(|b| b.get())
}

/// A fresh, empty ledger database on the backend under test: a SQLite file in a temp folder,
/// or a PostgreSQL schema of its own. Gone when dropped.
pub struct TestDb {
    pub url: DatabaseUrl,
    schema: Option<(String, String)>,
    _dir: TempDir,
}

impl TestDb {
    /// A SQLite ledger file that is already there (a backup, say); the test keeps the file.
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            url: DatabaseUrl::Sqlite(path.to_path_buf()),
            schema: None,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend() {
            Backend::Sqlite => Self {
                url: DatabaseUrl::Sqlite(dir.path().join("ledger.db")),
                schema: None,
                _dir: dir,
            },
            Backend::Postgres => {
                static SCHEMAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let base = postgres_base_url().expect("run_on checked it");
                let schema = format!(
                    "pe_test_{}_{}_{}",
                    std::process::id(),
                    SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    chrono::Utc::now().timestamp_micros()
                );
                let mut admin = PgConnection::establish(&base)
                    .unwrap_or_else(|e| panic!("PostgreSQL at {base} cannot be reached: {e}"));
                admin
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .unwrap();
                let separator = if base.contains('?') { '&' } else { '?' };
                Self {
                    url: DatabaseUrl::Postgres(format!(
                        "{base}{separator}options=-csearch_path%3D{schema}"
                    )),
                    schema: Some((base, schema)),
                    _dir: dir,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema {
            if let Ok(mut admin) = PgConnection::establish(base) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The ledger's URL, as `--database` takes it.
    pub database: String,
    agent: ureq::Agent,
    server: actix_web::dev::ServerHandle,
    /// Last: dropped after the server has stopped.
    _db: Option<TestDb>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server, so its pool closes its connections before the database goes.
        actix_web::rt::System::new().block_on(self.server.stop(false));
    }
}

pub fn spawn_app() -> TestApp {
    spawn_app_with_rules(&shipped_rules())
}

/// The shipped program with one campaign, JACKPOT: 600,000,000,000 points for any trade at a
/// J* store, more than half the most a member may hold.
pub fn jackpot_rules() -> TempDir {
    let program = std::fs::read_to_string(shipped_rules().join("program.toml")).unwrap();
    rules_dir(&[
        ("program.toml", &program),
        (
            "campaigns.toml",
            r#"
[[campaign]]
code = "JACKPOT"
name = "Jackpot"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["J*"]
expiry = "KDP"
award = { fixed = 600000000000 }
"#,
        ),
    ])
}

/// Writes rule files into a fresh folder: `[(file name, text)]`.
pub fn rules_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The adapters' test credentials: POS tokens "pos-token" (store POS-001) and
/// "other-pos-token" (POS-002), cblink app "cb17333123" with secret
/// "63d2ccdcdc8916daxasdadsab043f0948" (the document's example) and app "cb-other" with
/// "other-app-secret".
/// The native API's test keys, one per scope (see `TEST_CLIENTS`).
pub const ADMIN_KEY: &str = "test-admin-key";
pub const STORE_KEY: &str = "test-store-key";
pub const MARKETER_KEY: &str = "test-marketer-key";
pub const FINANCE_KEY: &str = "test-finance-key";

/// `Authorization: Bearer <key>`.
pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `TEST_CLIENTS`'s keys, as `keys create --append` writes them.
pub fn test_key_lines() -> String {
    [
        ("test admin", ADMIN_KEY, "admin"),
        ("test store", STORE_KEY, "store"),
        ("test marketer", MARKETER_KEY, "marketer"),
        ("test finance", FINANCE_KEY, "finance"),
    ]
    .iter()
    .map(|(name, key, scope)| {
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "[[api_key]]\nname = \"{name}\"\nkey_sha256 = \"{digest}\"\nscopes = [\"{scope}\"]\n\n"
        )
    })
    .collect()
}

/// The test clients: the keys of every scope and the adapters' clients.
pub fn test_clients_text() -> String {
    test_key_lines()
        + &TEST_CLIENTS
            .replace(
                "PUBLIC_KEY",
                include_str!("../../config/test-keys/merchant_public_key.pem"),
            )
            .replace(
                "CERTIFICATE",
                include_str!("../../config/test-keys/merchant_cert.pem"),
            )
            .replace(
                "PLATFORM_KEY_FILE",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/config/test-keys/wechatpay_platform_key.pem"
                ),
            )
}

/// The id the test platform key signs discount-card answers under (`Wechatpay-Serial`).
pub const PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_TEST_PLATFORM";

/// A port for a server started as a process. Ports the kernel picks (`bind` to
/// port 0: the in-process servers, every outgoing connection) come from the
/// ephemeral range, 32768–60999 on Linux, so a port picked that way and then let
/// go can be taken before the process binds it, or be another test's server by
/// then. These come from 20000–29999, each once in a test run (from a start that
/// differs between runs), and only if nothing listens there now.
pub fn process_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 100 * 100;
    loop {
        let port = 20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A clients file with the test clients, for a server started as a process (`--clients`).
pub fn test_clients_file(dir: &Path) -> PathBuf {
    let path = dir.join("clients.toml");
    std::fs::write(&path, test_clients_text()).unwrap();
    path
}

pub const TEST_CLIENTS: &str = r#"
[[pos_client]]
name = "test POS"
token_sha256 = "744ae1aa6bd53faa387e2f9489bfa9d881698e9674f4f67d079edc8f7a7c2285"
store_code = "POS-001"

[[pos_client]]
name = "other POS"
token_sha256 = "f32a2a0e2c49db76c8a64fd4cd532faceefac9cec1084dbb8e53509af1d6adac"
store_code = "POS-002"

[[discount_card_merchant]]
mchid = "1900000001"
serial_no = "TEST-SERIAL-1"
public_key_pem = """
PUBLIC_KEY"""

# The same key pair, registered by its certificate (serial 0157F09E…B8E1).
[[discount_card_merchant]]
mchid = "1900000002"
certificate_pem = """
CERTIFICATE"""

[wechatpay_platform]
public_key_id = "PUB_KEY_ID_TEST_PLATFORM"
private_key_file = "PLATFORM_KEY_FILE"

[[cblink_app]]
app_id = "cb17333123"
secret_sha256 = "8bd2e72dbbac9d509147c70c5ade6d0af8bff8209b92981e993ef468ff378c40"
store_prefix = "CB-"

[[cblink_app]]
app_id = "cb-other"
secret_sha256 = "d76df4278d559f9f3852ca433320d8274643625005a5eb8a801363e7bd41323e"
store_prefix = "CBO-"
"#;

pub fn test_settings(rules: &Path, db: &TestDb) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        database: db.url.clone(),
        rules_dir: rules.to_path_buf(),
        workers: 2,
        pool_size: 8,
        writer: Default::default(),
        recent_trades_max: point_engine::ledger::recent::RECENT_TRADES_MAX_DEFAULT,
        balances_lots_max: point_engine::ledger::balances::BALANCES_LOTS_MAX_EXAMPLE,
        history_movements_max: point_engine::ledger::pages::HISTORY_MOVEMENTS_MAX_DEFAULT,
        answers_memory_bytes_max: point_engine::ledger::ANSWERS_MEMORY_BYTES_DEFAULT,
        clock_skew_s_max: 300,
        card_count_max: 1000,
        expire_interval_s: 0,
        rules_reload_interval_ms: 0,
        body_bytes_max: Settings::BODY_BYTES_MAX,
        refund_shortfall_policy: ShortfallPolicy::RecordShortfall,
        point_cost: Some("0.005".parse().unwrap()),
        clients: point_engine::clients::Clients::parse(&test_clients_text()).unwrap(),
        insecure_no_auth: false,
        shutdown_grace_s: 5,
        rate_limit: None,
    }
}

pub fn spawn_app_with_rules(rules: &Path) -> TestApp {
    let db = TestDb::new();
    let settings = test_settings(rules, &db);
    spawn_in(settings, Some(db))
}

/// Starts the server with these settings; the test keeps their database (a `TestDb`) alive.
pub fn spawn_app_with_settings(settings: Settings) -> TestApp {
    spawn_in(settings, None)
}

/// A server on `db`, which lives (and is dropped) with the server.
pub fn spawn_app_in(settings: Settings, db: TestDb) -> TestApp {
    spawn_in(settings, Some(db))
}

fn spawn_in(settings: Settings, db: Option<TestDb>) -> TestApp {
    let database = match &settings.database {
        DatabaseUrl::Sqlite(path) => path.display().to_string(),
        DatabaseUrl::Postgres(url) => url.clone(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(&settings).expect("the app builds");
            tx.send((app.port(), app.handle())).unwrap();
            app.run_until_stopped().await
        })
    });
    let (port, server) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server starts");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        database,
        agent: admin_agent(),
        server,
        _db: db,
    }
}

/// An HTTP client that sends the admin key to the native API unless a request sets its own
/// `Authorization` (`Authorization: none` sends none).
#[allow(clippy::result_large_err)] // ureq's middleware signature
pub fn admin_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .middleware(
            |request: ureq::Request,
             next: ureq::MiddlewareNext|
             -> Result<ureq::Response, ureq::Error> {
                let request = match request.header("Authorization") {
                    None if request.url().contains("/v1/point-engine/") => {
                        request.set("Authorization", &bearer(ADMIN_KEY))
                    }
                    Some("none") => {
                        // ureq cannot unset a header: rebuild the request without it.
                        let mut bare = ureq::request(request.method(), request.url());
                        for name in request.header_names() {
                            if !name.eq_ignore_ascii_case("authorization") {
                                bare = bare.set(&name, request.header(&name).unwrap());
                            }
                        }
                        bare
                    }
                    _ => request,
                };
                next.handle(request)
            },
        )
        .build()
}

/// Status and JSON body of a response, whatever its status.
fn read(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

impl TestApp {
    pub fn post_trade(&self, body: &Value) -> (u16, Value) {
        self.post_raw("application/json", &body.to_string())
    }

    pub fn post_raw(&self, content_type: &str, body: &str) -> (u16, Value) {
        self.post_to("/v1/point-engine/trade-create", content_type, body)
    }

    pub fn post_refund(&self, body: &Value) -> (u16, Value) {
        self.post_to(
            "/v1/point-engine/trade-refund",
            "application/json",
            &body.to_string(),
        )
    }

    /// A POST of a raw body with extra headers (JSON content type).
    pub fn post_with_headers(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, Value) {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.address))
            .set("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.set(name, value);
        }
        read(request.send_string(body))
    }

    /// Any request, answered with its status, headers (names in lower case) and body text.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, std::collections::BTreeMap<String, String>, String) {
        let mut request = self
            .agent
            .request(method, &format!("{}{path}", self.address))
            .set("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.send_string(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let headers = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default().to_string();
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        (response.status(), headers, response.into_string().unwrap())
    }

    pub fn post_to_path(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_to(path, "application/json", &body.to_string())
    }

    fn post_to(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        read(
            self.agent
                .post(&format!("{}{path}", self.address))
                .set("Content-Type", content_type)
                .send_string(body),
        )
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        read(self.agent.get(&format!("{}{path}", self.address)).call())
    }

    /// A GET and its answer's status, content type and body as sent (byte for byte).
    pub fn get_text(&self, path: &str) -> (u16, String, String) {
        let response = match self.agent.get(&format!("{}{path}", self.address)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let status = response.status();
        let content_type = response.content_type().to_string();
        (status, content_type, response.into_string().unwrap())
    }

    /// A request with this `Authorization` (`"none"`: none at all), and its answer.
    pub fn call_as(
        &self,
        authorization: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.address))
            .set("Authorization", authorization);
        read(match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        })
    }

    pub fn balance(&self, vip: &str, as_of: Option<&str>) -> (u16, Value) {
        let mut request = self.agent.get(&format!(
            "{}/v1/point-engine/members/{vip}/balance",
            self.address
        ));
        if let Some(as_of) = as_of {
            request = request.query("as_of", as_of);
        }
        read(request.call())
    }

    /// The value `/metrics` shows for the series `name` (with its labels, if it has any).
    pub fn metric(&self, name: &str) -> Option<String> {
        let text = ureq::get(&format!("{}/metrics", self.address))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let line = text.lines().find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' '))
        });
        line.map(|l| l.rsplit(' ').next().unwrap().to_string())
    }

    /// A connection of its own to the app's ledger.
    pub fn conn(&self) -> PooledConn {
        self.pool().get().unwrap()
    }

    /// A pool on the app's ledger, opened as the server and the CLI open theirs.
    pub fn pool(&self) -> ledger::Pool {
        ledger::connect(&DatabaseUrl::parse(&self.database).unwrap(), 2).unwrap()
    }

    /// The ledger opened as another process would open it: its own pool and its own writer.
    pub fn store(&self) -> ledger::Store {
        ledger::Store::open(
            &DatabaseUrl::parse(&self.database).unwrap(),
            2,
            Default::default(),
        )
        .unwrap()
    }

    /// Row counts of (trades, lots, entries, members).
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        use point_engine::ledger::schema::{entries, lots, members, trades};
        let mut conn = self.conn();
        (
            trades::table.count().get_result(&mut conn).unwrap(),
            lots::table.count().get_result(&mut conn).unwrap(),
            entries::table.count().get_result(&mut conn).unwrap(),
            members::table.count().get_result(&mut conn).unwrap(),
        )
    }

    /// The `trade_no` the ledger recorded for a store's `out_trade_no`.
    pub fn trade_no(&self, out_trade_no: &str) -> String {
        use point_engine::ledger::schema::trades;
        let recorded: String = trades::table
            .filter(trades::out_trade_no.eq(out_trade_no))
            .select(trades::trade_no)
            .get_result(&mut self.conn())
            .unwrap();
        minted(&recorded)
    }

    /// (point_type, points, remaining, expire_date) of every lot, in id order.
    pub fn lots(&self) -> Vec<(String, i64, i64, Option<String>)> {
        use point_engine::ledger::schema::lots;
        lots::table
            .order(lots::id)
            .select((
                lots::point_type,
                lots::points,
                lots::remaining,
                lots::expire_date,
            ))
            .load(&mut self.conn())
            .unwrap()
    }

    /// (kind, points) of every entry, in id order.
    pub fn entries(&self) -> Vec<(String, i64)> {
        use point_engine::ledger::schema::entries;
        entries::table
            .order(entries::id)
            .select((entries::kind, entries::points))
            .load(&mut self.conn())
            .unwrap()
    }

    /// Fails the test if any ledger invariant is broken.
    /// Every invariant holds and every trade's grants are what its rules give (the audit).
    pub fn assert_ledger_consistent(&self) {
        let violations = point_engine::service::audit(&self.store())
            .unwrap()
            .violations;
        assert!(
            violations.is_empty(),
            "ledger invariants broken: {violations:#?}"
        );
    }
}

/// A refund request of `amount` now.
pub fn refund(out_refund_no: &str, out_trade_no: &str, amount: &str) -> Value {
    serde_json::json!({
        "out_refund_no": out_refund_no,
        "out_trade_no": out_trade_no,
        "refund_amount": amount,
        "refund_time": hours_ago(0),
    })
}

/// The shipped program (1 E point per HKD 10, floor, KDP end of the 24th month) with three
/// campaigns that never end: DOUBLE (x2 E at D* stores), BIG (50 points from HKD 800 at D*
/// stores) and QTR (40 points at Q* stores, expiring at the end of the quarter).
pub fn refund_rules(double: &str) -> TempDir {
    let program = std::fs::read_to_string(shipped_rules().join("program.toml")).unwrap();
    let campaigns = format!(
        r#"
[[campaign]]
code = "DOUBLE"
name = "Double points"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["D*"]
priority = 20
expiry = "KDP"
award = {{ multiplier_of_e = "{double}" }}

[[campaign]]
code = "BIG"
name = "Big spender bonus"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["D*"]
min_spend = "800"
priority = 10
expiry = "KDP"
award = {{ fixed = 50 }}

[[campaign]]
code = "QTR"
name = "Quarter bonus"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["Q*"]
expiry = "QUARTER"
award = {{ fixed = 40 }}
"#
    );
    rules_dir(&[("program.toml", &program), ("campaigns.toml", &campaigns)])
}

/// `trade_no` back, once it is checked to be a number point-engine mints: `PE` and 24
/// uppercase hex digits (the posting time's 11, then 13 of the store's order number's hash).
pub fn minted(trade_no: &str) -> String {
    let digits = trade_no
        .strip_prefix("PE")
        .unwrap_or_else(|| panic!("{trade_no}"));
    assert!(
        digits.len() == 24 && digits.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')),
        "not a minted trade_no: {trade_no}"
    );
    trade_no.to_string()
}

/// The native error body.
pub fn error_body(code: u32, msg: &str) -> Value {
    serde_json::json!({ "code": code, "msg": msg, "data": null })
}

/// A small deterministic generator (64-bit LCG): the same sequence on every run.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The point-engine binary run with `args` (RUST_LOG=warn): (succeeded, stdout, stderr).
pub fn point_engine_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

//! The native API's keys: nothing without a key, each scope exactly its endpoints, and a server
//! that will not listen on the network with no keys.

use crate::helpers::*;
use serde_json::Value;

/// Every native endpoint: (method, path, body, the scopes that may call it besides admin).
fn endpoints() -> Vec<(&'static str, String, Option<Value>, &'static [&'static str])> {
    let sale = trade("AUTH-1", "M-AUTH", &hours_ago(1));
    vec![
        (
            "POST",
            "/trade-create".into(),
            Some(sale.clone()),
            &["store"],
        ),
        (
            "POST",
            "/trade-refund".into(),
            Some(refund("AUTH-R1", "AUTH-1", "1.00")),
            &["store"],
        ),
        (
            "POST",
            "/trade-simulate".into(),
            Some(sale),
            &["store", "marketer"],
        ),
        ("GET", "/rules".into(), None, &["marketer"]),
        ("GET", "/members/M-AUTH/balance".into(), None, &["store"]),
        (
            "POST",
            "/members/M-AUTH/identities".into(),
            Some(serde_json::json!({"kind": "card_code", "value": "AUTH-CARD"})),
            &["store"],
        ),
        ("GET", "/members/M-AUTH/entries".into(), None, &["finance"]),
        ("GET", "/trades/AUTH-1".into(), None, &["finance"]),
        ("GET", "/audit".into(), None, &["finance"]),
        ("GET", "/reports/liability".into(), None, &["finance"]),
        (
            "GET",
            format!(
                "/reports/movements?from={}",
                hours_ago(48).replace('+', "%2B")
            ),
            None,
            &["finance"],
        ),
    ]
}

fn every_native_endpoint_refuses_a_caller_without_a_valid_key() {
    let app = spawn_app();
    for (method, path, body, _) in endpoints() {
        let path = format!("/v1/point-engine{path}");
        for authorization in [
            "none",
            "Bearer",
            "Bearer wrong-key",
            "Basic dGVzdA==",
            STORE_KEY,
        ] {
            let (status, answer) = app.call_as(authorization, method, &path, body.as_ref());
            assert_eq!(
                status, 401,
                "{method} {path} with {authorization:?}: {answer}"
            );
            let msg = answer["msg"].as_str().unwrap();
            assert_eq!(answer, error_body(40100, msg), "{method} {path}");
            assert!(
                msg == "an API key is required: Authorization: Bearer <key>"
                    || msg == "the API key is not valid",
                "{msg}"
            );
        }
    }
    // Nothing was written by any of them.
    assert_eq!(app.counts(), (0, 0, 0, 0));
    // The scheme is case-insensitive, as HTTP says.
    let (status, _) = app.call_as(
        &format!("bearer {MARKETER_KEY}"),
        "GET",
        "/v1/point-engine/rules",
        None,
    );
    assert_eq!(status, 200);
}

fn each_scope_calls_exactly_its_endpoints() {
    let app = spawn_app();
    let keys = [
        ("store", STORE_KEY),
        ("marketer", MARKETER_KEY),
        ("finance", FINANCE_KEY),
        ("admin", ADMIN_KEY),
    ];
    for (method, path, body, scopes) in endpoints() {
        let path = format!("/v1/point-engine{path}");
        for (scope, key) in keys {
            let (status, answer) = app.call_as(&bearer(key), method, &path, body.as_ref());
            if scope == "admin" || scopes.contains(&scope) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{scope} on {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{scope} on {method} {path}: {answer}");
                let needs = scopes.join(" or ");
                assert_eq!(
                    answer,
                    error_body(
                        40300,
                        &format!(
                            "the key \"test {scope}\" may not call this endpoint: it needs the scope {needs} (or admin)"
                        )
                    ),
                );
            }
        }
    }
    // The store key's trade was granted once; the admin's copy was a replay.
    assert_eq!(app.counts().0, 1);
}

fn a_server_without_keys_says_how_to_make_one() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.clients = point_engine::clients::Clients::default();
    let app = spawn_app_with_settings(settings);
    let (status, answer) = app.call_as("none", "GET", "/v1/point-engine/rules", None);
    assert_eq!(status, 401);
    assert!(
        answer["msg"]
            .as_str()
            .unwrap()
            .starts_with("this server has no API keys: create one with `point-engine keys create"),
        "{answer}"
    );
    let (status, _) = app.post_trade(&trade("NOKEY-1", "M-1", &hours_ago(1)));
    assert_eq!(status, 401);
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn insecure_no_auth_opens_the_native_api() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.clients = point_engine::clients::Clients::default();
    settings.insecure_no_auth = true;
    let app = spawn_app_with_settings(settings);
    let (status, answer) = app.call_as(
        "none",
        "POST",
        "/v1/point-engine/trade-create",
        Some(&trade("OPEN-1", "M-1", &hours_ago(1))),
    );
    assert_eq!(status, 200, "{answer}");
}

on_both_backends!(
    every_native_endpoint_refuses_a_caller_without_a_valid_key,
    each_scope_calls_exactly_its_endpoints,
    a_server_without_keys_says_how_to_make_one,
    insecure_no_auth_opens_the_native_api,
);

fn point_engine(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `serve` will not listen beyond loopback with no keys, and says how to make one.
#[test]
fn serve_refuses_the_network_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let out = point_engine(&[
        "serve",
        "--bind",
        "0.0.0.0:0",
        "--database",
        &db.display().to_string(),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("refusing to listen on 0.0.0.0:0 with no API keys")
            && text.contains(
                "point-engine keys create --name NAME --scope admin --append config/clients.toml"
            )
            && text.contains("--insecure-no-auth"),
        "{text}"
    );
    assert!(!db.exists(), "nothing was created");
}

/// `keys create --append` writes a key the server admits, with exactly its scopes; the key is
/// printed once and only its digest is in the file.
#[test]
fn a_created_key_is_admitted_with_its_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.toml");
    std::fs::write(&clients, "# the chain's clients\n").unwrap();
    let create = |name: &str, scopes: &[&str]| {
        let mut args = vec!["keys", "create", "--name", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let clients = clients.display().to_string();
        args.extend(["--append", &clients]);
        let out = point_engine(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let tills = create("DP01-tills", &["store"]);
    let books = create("finance team", &["finance", "marketer"]);
    let file = std::fs::read_to_string(&clients).unwrap();
    assert!(
        file.starts_with("# the chain's clients\n\n[[api_key]]\nname = \"DP01-tills\"\n"),
        "{file}"
    );
    assert!(!file.contains(&tills) && !file.contains(&books));
    // A name already in the file is refused, and the file is left as it was.
    let out = point_engine(&[
        "keys",
        "create",
        "--name",
        "DP01-tills",
        "--scope",
        "store",
        "--append",
        &clients.display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_key \"DP01-tills\" is listed twice"));
    assert_eq!(std::fs::read_to_string(&clients).unwrap(), file);
    // An unknown scope is refused by the command line.
    let out = point_engine(&["keys", "create", "--name", "x", "--scope", "root"]);
    assert!(!out.status.success());

    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.clients = point_engine::clients::Clients::load(&clients).unwrap();
    let app = spawn_app_with_settings(settings);
    let sale = trade("KEY-1", "M-1", &hours_ago(1));
    let as_tills = |method, path: &str, body: Option<&Value>| {
        app.call_as(&bearer(&tills), method, path, body).0
    };
    let as_books = |method, path: &str, body: Option<&Value>| {
        app.call_as(&bearer(&books), method, path, body).0
    };
    assert_eq!(
        as_tills("POST", "/v1/point-engine/trade-create", Some(&sale)),
        200
    );
    assert_eq!(as_tills("GET", "/v1/point-engine/audit", None), 403);
    assert_eq!(as_books("GET", "/v1/point-engine/audit", None), 200);
    assert_eq!(as_books("GET", "/v1/point-engine/rules", None), 200);
    assert_eq!(
        as_books("POST", "/v1/point-engine/trade-create", Some(&sale)),
        403
    );
}

//! Generated bodies against every write endpoint: mutations of each contract's valid request
//! (fields removed, emptied, retyped, oversized, out of range) and bodies of the wrong kind.
//! None may answer 5xx, and every answer is in its contract's own shape.

use crate::helpers::*;
use serde_json::{json, Map, Value};

/// A small deterministic generator (64-bit LCG): the same bodies on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Values that break parsers: wrong types, edges of ranges, odd text.
fn odd_value(rng: &mut Lcg) -> Value {
    let choices = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(-0.000001),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(""),
        json!(" "),
        json!("x".repeat(300)),
        json!("💥\u{0}\u{7}"),
        json!("2100-01-01T00:00:00+08:00"),
        json!("1970-01-01 00:00:00"),
        json!("-100"),
        json!("99999999999999999999.99"),
        json!("NaN"),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"nested": {"deeper": [1]}}),
    ];
    choices[rng.below(choices.len())].clone()
}

/// Every path to a value in `value`, as keys and indexes.
fn paths(value: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(json!(key));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(json!(i));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Value::String(key) => v.get_mut(key.as_str()),
        Value::Number(i) => v.get_mut(i.as_u64()? as usize),
        _ => None,
    })
}

/// One to three mutations of `seed`, or (one time in ten) a body of the wrong kind.
fn mutate(seed: &Value, rng: &mut Lcg) -> Value {
    if rng.below(10) == 0 {
        return odd_value(rng);
    }
    let mut body = seed.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        paths(&body, &mut Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let path = all[rng.below(all.len())].clone();
        if rng.below(4) == 0 {
            // Remove the field (or the array item).
            let (last, parent) = path.split_last().unwrap();
            match (at_mut(&mut body, parent), last) {
                (Some(Value::Object(map)), Value::String(key)) => {
                    map.remove(key.as_str());
                }
                (Some(Value::Array(items)), Value::Number(i)) => {
                    let i = i.as_u64().unwrap() as usize;
                    if i < items.len() {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        } else if let Some(slot) = at_mut(&mut body, &path) {
            *slot = odd_value(rng);
        }
    }
    body
}

fn object_with(keys: &[&str], value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map: &Map<String, Value>| keys.iter().all(|k| map.contains_key(*k)))
}

const BODIES_PER_ENDPOINT: usize = 600;

fn generated_bodies_never_answer_5xx_and_keep_each_contracts_shape() {
    let app = spawn_app();
    let mut rng = Lcg(20261201);
    let check = |endpoint: &str, body: &Value, (status, answer): (u16, Value), shape: &[&str]| {
        assert!(status < 500, "{endpoint}: {status} {answer} for {body}");
        assert!(
            object_with(shape, &answer) || (status == 204 && answer.is_null()),
            "{endpoint}: {status} {answer} is not in the contract's shape, for {body}"
        );
    };

    let native = trade("FUZZ", "M-FUZZ", &hours_ago(1));
    for i in 0..BODIES_PER_ENDPOINT {
        let mut body = mutate(&native, &mut rng);
        if body.get("out_trade_no").is_some_and(Value::is_string) {
            body["out_trade_no"] = json!(format!("FUZZ-{i}"));
        }
        let answer = app.post_trade(&body);
        check("trade-create", &body, answer, &["code", "msg", "data"]);
        let answer = app.post_to_path("/v1/point-engine/trade-simulate", &body);
        check("trade-simulate", &body, answer, &["code", "msg", "data"]);
    }
    let native_refund = refund("FUZZ-R", "FUZZ-1", "10");
    for i in 0..BODIES_PER_ENDPOINT {
        let mut body = mutate(&native_refund, &mut rng);
        if body.get("out_refund_no").is_some_and(Value::is_string) {
            body["out_refund_no"] = json!(format!("FUZZ-R-{i}"));
        }
        let answer = app.post_refund(&body);
        check("trade-refund", &body, answer, &["code", "msg", "data"]);
    }

    let link = json!({"kind": "card_code", "value": "FUZZ-CARD"});
    for member in ["M-FUZZ", "TEL:85290000000", "NOBODY"] {
        for _ in 0..BODIES_PER_ENDPOINT / 3 {
            let body = mutate(&link, &mut rng);
            let path = format!("/v1/point-engine/members/{member}/identities");
            let answer = app.post_to_path(&path, &body);
            check("identities", &body, answer, &["code", "msg", "data"]);
        }
    }

    let pos = crate::transaction_sync::seed();
    for i in 0..BODIES_PER_ENDPOINT {
        let mut body = mutate(&pos, &mut rng);
        if body.get("transaction_id").is_some_and(Value::is_string) {
            body["transaction_id"] = json!(format!("FUZZ-{i}"));
        }
        let answer = crate::transaction_sync::sync(&app, Some("pos-token"), &body.to_string());
        check("POS", &body, answer, &["status", "result"]);
    }

    let cblink = crate::cblink::seed();
    for _ in 0..BODIES_PER_ENDPOINT {
        let body = mutate(&cblink, &mut rng);
        let (status, answer) = crate::cblink::send(&app, &body);
        let shape: &[&str] = if status == 200 {
            &["code", "data"]
        } else {
            &["err_code", "msg"]
        };
        check("cblink", &body, (status, answer), shape);
    }

    let card = crate::discount_card::seed();
    for _ in 0..BODIES_PER_ENDPOINT {
        let body = mutate(&card, &mut rng);
        let answer = crate::discount_card::send(&app, crate::discount_card::CARD, &body);
        check("discount card", &body, answer, &["code", "message"]);
    }
    app.assert_ledger_consistent();
}

on_both_backends!(generated_bodies_never_answer_5xx_and_keep_each_contracts_shape,);

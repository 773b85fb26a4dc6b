use crate::helpers::*;
use serde_json::{json, Value};

/// The document's request, verbatim (its tab and its " 中国" included).
const SEED: &str = r#"{
    "transaction_id": "12345wefr23r",
    "customer_identifier": "13592619028",
    "purchase_time": "2016-03-24 10:10:00",
    "purchase_amount": 14.1,
    "coupon_detail_id": 123456,
    "coupon_amount": 0.8,
    "wx_coupon_amount": 0,
    "gender": 1,
    "customer_nick_name": "ethan",
    "customer_country": " 中国",
    "customer_province": "广东",
    "customer_city": "深圳",
	"goods_list":[
		{
            "goods_id": 1,
            "goods_name": "鱼香茄子",
            "quantity": 1,
            "unit_price": 12.0
        },{
            "goods_id": 2,
            "goods_name": "肉末麻婆豆腐",
            "quantity": 2,
            "unit_price": 12.0
        }
     ],
     "coupon_id_list":["abc","12a"]
}"#;

const PATH: &str = "/tp/services/transaction";

pub(crate) fn sync(app: &TestApp, token: Option<&str>, body: &str) -> (u16, Value) {
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("Authorization", format!("bearer {t}"))])
        .unwrap_or_default();
    app.post_with_headers(PATH, &headers, body)
}

fn error(code: &str, message: &str) -> Value {
    json!({"status": {"code": code, "message": message}, "result": null})
}

pub(crate) fn seed() -> Value {
    serde_json::from_str(SEED).unwrap()
}

fn the_documents_example_earns_and_creates_the_customer() {
    let app = spawn_app();
    let (status, body) = sync(&app, Some("pos-token"), SEED);
    assert_eq!(status, 200, "{body}");
    let id = body["result"].as_i64().unwrap();
    assert_eq!(
        body,
        json!({"status": {"code": "200", "message": "success"}, "result": id})
    );
    // Byte for byte, in the document's field order (a replay answers the same).
    let raw = ureq::post(&format!("{}{PATH}", app.address))
        .set("Authorization", "bearer pos-token")
        .set("Content-Type", "application/json")
        .send_string(SEED)
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        raw,
        format!(r#"{{"status":{{"code":"200","message":"success"}},"result":{id}}}"#)
    );
    // HKD 14.10 earns 1 E point; the two signature dishes (3 units) 9 more. (A sale of 2016:
    // the points are long expired, so the balance is 0.)
    let (_, trade) = app.get("/v1/point-engine/trades/TS-test_POS-12345wefr23r");
    assert_eq!(trade["data"]["vip_accountno"], json!("TEL:13592619028"));
    assert_eq!(trade["data"]["total_point"], json!(10));
    assert_eq!(
        trade["data"]["grants"][1]["campaign_code"],
        json!("POS-DISHES")
    );
    assert_eq!(
        (
            &trade["data"]["store_code"],
            &trade["data"]["payment_amount"],
            &trade["data"]["total_amount"],
            &trade["data"]["sales_time"],
        ),
        (
            &json!("POS-001"),
            &json!("14.10"),
            &json!("14.90"),
            &json!("2016-03-24T10:10:00+08:00")
        )
    );
    // The profile and the coupon fields are kept.
    use diesel::prelude::*;
    use point_engine::ledger::schema::{external_orders, member_profiles};
    let profile: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = member_profiles::table
        .select((
            member_profiles::nick_name,
            member_profiles::gender,
            member_profiles::country,
            member_profiles::city,
        ))
        .first(&mut app.conn())
        .unwrap();
    assert_eq!(
        profile,
        (
            Some("ethan".into()),
            Some("male".into()),
            Some("中国".into()),
            Some("深圳".into())
        )
    );
    let record: String = external_orders::table
        .select(external_orders::body)
        .first(&mut app.conn())
        .unwrap();
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["coupon_id_list"], json!(["abc", "12a"]));
    assert_eq!(record["coupon_detail_id"], json!(123456));
    app.assert_ledger_consistent();
}

fn a_resent_transaction_answers_the_same_and_a_changed_one_conflicts() {
    let app = spawn_app();
    let first = sync(&app, Some("pos-token"), SEED);
    assert_eq!(first.0, 200);
    assert_eq!(sync(&app, Some("pos-token"), SEED), first);
    assert_eq!(app.counts().0, 1);
    let mut changed = seed();
    changed["purchase_amount"] = json!(15);
    assert_eq!(
        sync(&app, Some("pos-token"), &changed.to_string()),
        (
            409,
            error(
                "409",
                "transaction_id was already used with a different request"
            )
        )
    );
    // A purchase later than the server's clock allows (300 s of skew): refused, as on the
    // native endpoint.
    let mut future = seed();
    future["transaction_id"] = json!("from-the-future");
    future["purchase_time"] = json!("2100-01-01 00:00:00");
    assert_eq!(
        sync(&app, Some("pos-token"), &future.to_string()),
        (
            400,
            error(
                "400",
                "purchase_time 2100-01-01T00:00:00+08:00 is in the future (more than 300 s ahead of the server's clock)"
            )
        )
    );
    // Another POS client's transaction with the same id is its own: a trade of its own, no
    // conflict, and no way to read or replay the first client's answer.
    let (status, other) = sync(&app, Some("other-pos-token"), SEED);
    assert_eq!(status, 200, "{other}");
    assert_ne!(other["result"], first.1["result"]);
    // The same conflict for a customer never seen: refused whole, no member is made for them.
    let mut stranger = changed.clone();
    stranger["customer_identifier"] = json!("13500000000");
    assert_eq!(sync(&app, Some("pos-token"), &stranger.to_string()).0, 409);
    assert_eq!(app.counts().3, 1);
    assert_eq!(app.counts().0, 2);
    // Gender as the words the table shows.
    let mut worded = seed();
    worded["transaction_id"] = json!("second");
    worded["gender"] = json!("female");
    assert_eq!(sync(&app, Some("pos-token"), &worded.to_string()).0, 200);
}

fn credentials_are_checked() {
    let app = spawn_app();
    let refused = error(
        "401",
        "Authorization must be \"bearer\" and a valid access_token",
    );
    assert_eq!(sync(&app, None, SEED), (401, refused.clone()));
    // Authenticated first: a bad or oversized body from a stranger learns nothing about it.
    assert_eq!(sync(&app, None, "{not json"), (401, refused.clone()));
    let oversized = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    assert_eq!(sync(&app, None, &oversized), (401, refused.clone()));
    // With the token: in the contract's own shape.
    assert_eq!(
        sync(&app, Some("pos-token"), &oversized),
        (413, error("413", "the body is larger than 65536 bytes"))
    );
    assert_eq!(
        sync(&app, Some("pos-token"), &format!("[{SEED}]")),
        (
            400,
            error(
                "400",
                "the body is not a valid JSON object: it must be an object"
            )
        )
    );
    assert_eq!(
        sync(&app, Some("wrong-token"), SEED),
        (401, refused.clone())
    );
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn every_required_field_missing_or_malformed_is_named() {
    let app = spawn_app();
    for field in [
        "transaction_id",
        "customer_identifier",
        "purchase_time",
        "purchase_amount",
    ] {
        let mut body = seed();
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(
            sync(&app, Some("pos-token"), &body.to_string()),
            (400, error("400", &format!("{field} is required"))),
            "{field}"
        );
    }
    // Each required field with a value of the wrong kind.
    for (field, message) in [
        (
            "transaction_id",
            "transaction_id must be a string, got an object",
        ),
        (
            "customer_identifier",
            "customer_identifier must be a string, got an object",
        ),
        (
            "purchase_time",
            "purchase_time must be a string, got an object",
        ),
        (
            "purchase_amount",
            "purchase_amount must be a decimal amount, got an object",
        ),
    ] {
        let mut body = seed();
        body[field] = json!({"x": 1});
        assert_eq!(
            sync(&app, Some("pos-token"), &body.to_string()),
            (400, error("400", message)),
            "{field}"
        );
    }
    for field in ["goods_id", "goods_name", "quantity", "unit_price"] {
        let mut body = seed();
        body["goods_list"][1].as_object_mut().unwrap().remove(field);
        assert_eq!(
            sync(&app, Some("pos-token"), &body.to_string()),
            (
                400,
                error("400", &format!("goods_list item 1: {field} is required"))
            ),
            "{field}"
        );
    }
    let malformed: [(&str, Value, &str); 7] = [
        (
            "purchase_time",
            json!("2016-03-24T10:10:00"),
            "purchase_time must be yyyy-mm-dd HH:mm:ss, got \"2016-03-24T10:10:00\"",
        ),
        (
            "purchase_amount",
            json!("abc"),
            "purchase_amount must be a decimal amount such as \"1000.00\", got \"abc\"",
        ),
        (
            "purchase_amount",
            json!(-1),
            "purchase_amount must not be negative, got -1",
        ),
        (
            "gender",
            json!(7),
            "gender must be \"male\", \"female\", 1 or 2, got \"7\"",
        ),
        (
            "customer_identifier",
            json!(""),
            "customer_identifier must not be empty",
        ),
        (
            "goods_list",
            json!([{"goods_id": 1, "goods_name": "x", "quantity": 0, "unit_price": 1}]),
            "goods_list item 0: quantity must be from 1 to 1000000, got 0",
        ),
        (
            "goods_list",
            json!([{"goods_name": "x", "quantity": 1, "unit_price": 1}]),
            "goods_list item 0: goods_id is required",
        ),
    ];
    for (field, value, message) in malformed {
        let mut body = seed();
        body[field] = value;
        assert_eq!(
            sync(&app, Some("pos-token"), &body.to_string()),
            (400, error("400", message)),
            "{field}"
        );
    }
    assert_eq!(
        sync(&app, Some("pos-token"), "{not json"),
        (
            400,
            error(
                "400",
                "the body is not a valid JSON object: Json deserialize error: key must be a string at line 1 column 2"
            )
        )
    );
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

on_both_backends!(
    the_documents_example_earns_and_creates_the_customer,
    a_resent_transaction_answers_the_same_and_a_changed_one_conflicts,
    credentials_are_checked,
    every_required_field_missing_or_malformed_is_named,
    coupons_are_not_taken_off_the_payment_twice,
);

/// A program earning on the payment and excluding discounts: the POS payment is already net of
/// its coupons, so they are not taken off again (HKD 90 paid after a HKD 10 coupon earns 9).
fn coupons_are_not_taken_off_the_payment_twice() {
    let program = std::fs::read_to_string(shipped_rules().join("program.toml"))
        .unwrap()
        .replace(
            "exclude = [\"post_fee\"]",
            "exclude = [\"post_fee\", \"discount\"]",
        );
    assert!(program.contains("\"discount\"]"));
    let rules = rules_dir(&[("program.toml", &program)]);
    let app = spawn_app_with_rules(rules.path());
    let mut body = seed();
    body["transaction_id"] = json!("COUPON-1");
    body["purchase_time"] = json!(chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string());
    body["purchase_amount"] = json!(90);
    body["coupon_amount"] = json!(10);
    body["wx_coupon_amount"] = json!(0);
    body.as_object_mut().unwrap().remove("goods_list");
    let (status, answer) = sync(&app, Some("pos-token"), &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let (_, trade) = app.get("/v1/point-engine/trades/TS-test_POS-COUPON-1");
    assert_eq!(trade["data"]["total_point"], json!(9), "{trade}");
}

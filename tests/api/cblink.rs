use crate::helpers::*;
use serde_json::{json, Value};

/// The document's example, verbatim.
const SEED: &str = r#"{
  "tid": "5cC4A4Bc-c4aA-8ecB-5C52-c48e7E1882cC",
  "shop_id": 20,
  "serial_number": 1,
  "transaction_tid": "bbf7896E-dDc3-DA4B-e985-7dDe1D6d3D7c",
  "type": "COD",
  "title": "半什持并去任学",
  "total_fee": 75.08,
  "payment": 26.01,
  "post_fee": 5,
  "discount_fee": 9.73,
  "adjust_fee": 8,
  "remark": "留言信息",
  "pay_type": "OFFLINE",
  "handled": 1,
  "status": "TRADE_BUYER_SIGNED",
  "shipping_type": "express",
  "refund_status": null,
  "pay_at": null,
  "created_at": "2018-04-02 14:44:46",
  "updated_at": "2018-04-02 14:44:46",
  "member": {
    "weixin_openid": "weixin_openid",
    "name": "张三",
    "mobile_phone": 13333333333,
    "gender": 1,
    "receiver_province": "福建",
    "receiver_city": "昌平区",
    "receiver_district": "回龙观",
    "receiver_address": "南安市水头镇福兴街"
  },
  "orders": [
    {
      "product_id": 11,
      "status": "FINISH",
      "num": 12,
      "product_specification": "大",
      "title": "堕落虾",
      "pic_thumb_url": "http://baidu.com",
      "price": 200,
      "total_fee": 400,
      "payment": 300
    }
  ]
}"#;

const APP_ID: &str = "cb17333123";
const APP_SECRET: &str = "63d2ccdcdc8916daxasdadsab043f0948";

pub(crate) fn send(app: &TestApp, body: &Value) -> (u16, Value) {
    app.post_with_headers(
        "/openapi/trade",
        &[
            ("App-Id", APP_ID.to_string()),
            ("App-Secret", APP_SECRET.to_string()),
            ("Accept", "application/json".to_string()),
        ],
        &body.to_string(),
    )
}

pub(crate) fn seed() -> Value {
    serde_json::from_str(SEED).unwrap()
}

fn ok() -> (u16, Value) {
    (200, json!({"code": 200, "data": ""}))
}

fn the_documents_example_is_received_and_earns() {
    let app = spawn_app();
    assert_eq!(send(&app, &seed()), ok());
    // HKD 26.01 paid, less the 5.00 delivery the program leaves out: 2 E points.
    let (_, trade) =
        app.get("/v1/point-engine/trades/CB-cb17333123-5cC4A4Bc-c4aA-8ecB-5C52-c48e7E1882cC");
    assert_eq!(
        (
            &trade["data"]["store_code"],
            &trade["data"]["vip_accountno"],
            &trade["data"]["total_point"],
            &trade["data"]["sales_time"]
        ),
        (
            &json!("CB-20"),
            &json!("WX:weixin_openid"),
            &json!(2),
            &json!("2018-04-02T14:44:46+08:00")
        )
    );
    // Re-sent as it is: nothing new.
    assert_eq!(send(&app, &seed()), ok());
    assert_eq!(app.counts().0, 1);
    app.assert_ledger_consistent();
}

/// `yyyy-mm-dd HH:mm:ss` in +08:00, `minutes` ago.
fn local(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn order(status: &str, updated_minutes_ago: i64, pay_minutes_ago: Option<i64>) -> Value {
    let mut body = seed();
    body["tid"] = json!("LIFE-1");
    body["payment"] = json!("505.00");
    body["total_fee"] = json!("600.00");
    body["status"] = json!(status);
    body["created_at"] = json!(local(60));
    body["updated_at"] = json!(local(updated_minutes_ago));
    body["pay_at"] = pay_minutes_ago.map_or(Value::Null, |m| json!(local(m)));
    body
}

fn available(app: &TestApp) -> i64 {
    app.balance("WX:weixin_openid", None).1["data"]["available_point"]
        .as_i64()
        .unwrap_or(0)
}

fn the_whole_lifecycle_grants_on_payment_and_reverses_on_refund() {
    let app = spawn_app();
    // Created, not paid: nothing earned.
    assert_eq!(send(&app, &order("WAIT_BUYER_PAY", 50, None)), ok());
    assert_eq!(app.counts().0, 0);
    // Paid: HKD 505 less 5 delivery earns 50.
    assert_eq!(
        send(&app, &order("WAIT_SELLER_SEND_GOODS", 40, Some(40))),
        ok()
    );
    assert_eq!(available(&app), 50);
    // A stale update (older than the last one seen) changes nothing.
    assert_eq!(send(&app, &order("WAIT_BUYER_PAY", 45, None)), ok());
    assert_eq!(available(&app), 50);
    assert_eq!(send(&app, &order("TRADE_BUYER_SIGNED", 30, Some(40))), ok());
    assert_eq!(app.counts().0, 1);
    // Refunded: the points go back.
    assert_eq!(send(&app, &order("TRADE_BUYER_REFUND", 20, Some(40))), ok());
    assert_eq!(available(&app), 0);
    let (_, trade) = app.get("/v1/point-engine/trades/CB-cb17333123-LIFE-1");
    assert_eq!(
        trade["data"]["refunds"][0]["out_refund_no"],
        json!("CB-cb17333123-LIFE-1-R")
    );
    assert_eq!(
        trade["data"]["refunds"][0]["refund_amount"],
        json!("505.00")
    );
    // And again: nothing more to reverse.
    assert_eq!(send(&app, &order("TRADE_CLOSED", 10, Some(40))), ok());
    let (_, trade) = app.get("/v1/point-engine/trades/CB-cb17333123-LIFE-1");
    assert_eq!(trade["data"]["refunds"].as_array().unwrap().len(), 1);
    app.assert_ledger_consistent();
}

fn every_required_field_missing_and_malformed_is_named_in_the_documents_style() {
    let app = spawn_app();
    for field in [
        "tid",
        "shop_id",
        "serial_number",
        "transaction_tid",
        "type",
        "title",
        "total_fee",
        "payment",
        "post_fee",
        "discount_fee",
        "adjust_fee",
        "remark",
        "pay_type",
        "handled",
        "status",
        "shipping_type",
        "created_at",
        "updated_at",
        "member",
    ] {
        let mut body = seed();
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(
            send(&app, &body),
            (
                400,
                json!({"err_code": 400, "msg": format!("{field} 不能为空。")})
            ),
            "{field}"
        );
    }
    // Each required field with a value of the wrong kind.
    for field in [
        "tid",
        "shop_id",
        "serial_number",
        "transaction_tid",
        "type",
        "title",
        "total_fee",
        "payment",
        "post_fee",
        "discount_fee",
        "pay_type",
        "handled",
        "status",
        "shipping_type",
        "created_at",
        "updated_at",
        "member",
    ] {
        let mut body = seed();
        body[field] = json!([1]);
        assert_eq!(
            send(&app, &body),
            (
                400,
                json!({"err_code": 400, "msg": format!("{field} 格式不正确。")})
            ),
            "{field}"
        );
    }
    // shop_id is an Integer in the document's table.
    let mut body = seed();
    body["shop_id"] = json!("abc");
    assert_eq!(
        send(&app, &body),
        (400, json!({"err_code": 400, "msg": "shop_id 格式不正确。"}))
    );
    for field in [
        "weixin_openid",
        "name",
        "mobile_phone",
        "gender",
        "receiver_province",
        "receiver_city",
        "receiver_district",
    ] {
        let mut body = seed();
        body["member"].as_object_mut().unwrap().remove(field);
        let shown = if field == "weixin_openid" {
            "weixin_open_id"
        } else {
            field
        };
        assert_eq!(
            send(&app, &body),
            (
                400,
                json!({"err_code": 400, "msg": format!("member.{shown} 不能为空。")})
            ),
            "{field}"
        );
    }
    for field in [
        "product_id",
        "num",
        "product_specification",
        "title",
        "pic_thumb_url",
        "price",
        "total_fee",
        "payment",
    ] {
        let mut body = seed();
        body["orders"][0].as_object_mut().unwrap().remove(field);
        assert_eq!(
            send(&app, &body),
            (
                400,
                json!({"err_code": 400, "msg": format!("orders.0.{field} 不能为空。")})
            ),
            "{field}"
        );
    }
    let mut body = seed();
    body.as_object_mut().unwrap().remove("orders");
    assert_eq!(
        send(&app, &body),
        (400, json!({"err_code": 400, "msg": "Orders 不能为空。"}))
    );
    for (path, value, shown) in [
        (vec!["total_fee"], json!("abc"), "total_fee"),
        (vec!["status"], json!("SHIPPED"), "status"),
        (vec!["created_at"], json!("2018/04/02"), "created_at"),
        (vec!["member", "gender"], json!("x"), "member.gender"),
        (vec!["orders", "0", "num"], json!("twelve"), "orders.0.num"),
    ] {
        let mut body = seed();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        at[path[path.len() - 1]] = value;
        assert_eq!(
            send(&app, &body),
            (
                400,
                json!({"err_code": 400, "msg": format!("{shown} 格式不正确。")})
            ),
            "{shown}"
        );
    }
    assert_eq!(app.counts().0, 0);
}

fn every_spelling_the_document_shows_is_accepted() {
    let app = spawn_app();
    let mut body = seed();
    let orders = body.as_object_mut().unwrap().remove("orders").unwrap();
    body["Orders"] = orders;
    body["tid"] = json!("SPELLING");
    let member = body["member"].as_object_mut().unwrap();
    let openid = member.remove("weixin_openid").unwrap();
    member.insert("weixin_open_id".into(), openid);
    member.insert("mobile_phone".into(), json!("13333333333"));
    member.insert("gender".into(), json!("male"));
    body["shop_id"] = json!("20");
    body["total_fee"] = json!("75.08");
    assert_eq!(send(&app, &body), ok());
    assert_eq!(app.counts().0, 1);
}

fn app_credentials_are_checked() {
    let app = spawn_app();
    let refused = (
        401,
        json!({"err_code": 401, "msg": "App-Id 或 App-Secret 错误。"}),
    );
    let wrong = app.post_with_headers(
        "/openapi/trade",
        &[
            ("App-Id", APP_ID.to_string()),
            ("App-Secret", "wrong".to_string()),
        ],
        SEED,
    );
    assert_eq!(wrong, refused);
    assert_eq!(app.post_with_headers("/openapi/trade", &[], SEED), refused);
    // Authenticated first: a bad or oversized body from a stranger is a 401 too.
    assert_eq!(
        app.post_with_headers("/openapi/trade", &[], "{not json"),
        refused
    );
    let oversized = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    assert_eq!(
        app.post_with_headers("/openapi/trade", &[], &oversized),
        refused
    );
    let signed_in = [
        ("App-Id", APP_ID.to_string()),
        ("App-Secret", APP_SECRET.to_string()),
    ];
    assert_eq!(
        app.post_with_headers("/openapi/trade", &signed_in, &oversized),
        (
            413,
            json!({"err_code": 413, "msg": "请求体超过 65536 字节。"})
        )
    );
    assert_eq!(
        app.post_with_headers("/openapi/trade", &signed_in, "{not json"),
        (
            400,
            json!({"err_code": 400, "msg": "请求体不是有效的 JSON。"})
        )
    );
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn one_member_through_two_identities_has_one_balance() {
    let app = spawn_app();
    // cblink knows the member by openid and phone; the POS only by the phone.
    assert_eq!(
        send(&app, &order("WAIT_SELLER_SEND_GOODS", 40, Some(40))),
        ok()
    );
    let pos = json!({
        "transaction_id": "POS-1",
        "customer_identifier": "13333333333",
        "purchase_time": local(30),
        "purchase_amount": 100,
    });
    let (status, _) = app.post_with_headers(
        "/tp/services/transaction",
        &[("Authorization", "Bearer pos-token".to_string())],
        &pos.to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(available(&app), 50 + 10);
    assert_eq!(app.counts().3, 1, "one member");
    // The member is reached by any of its identities: the phone leads to the same balance and
    // entries, under the member's own account number.
    let (status, by_phone) = app.balance("TEL:13333333333", None);
    assert_eq!(status, 200, "{by_phone}");
    assert_eq!(by_phone["data"]["vip_accountno"], json!("WX:weixin_openid"));
    assert_eq!(by_phone["data"]["available_point"], json!(60));
    let (status, entries) = app.get("/v1/point-engine/members/TEL:13333333333/entries");
    assert_eq!(status, 200, "{entries}");
    assert_eq!(entries["data"]["entries"].as_array().unwrap().len(), 2);
    assert_eq!(app.balance("TEL:19999999999", None).0, 404);
    app.assert_ledger_consistent();
}

/// Fifty orders, each sent paid and closed at the same moment from two tills: whatever order
/// they land in, the order ends closed and its points are not held (the close is the later
/// update). One order's updates take turns.
fn concurrent_paid_and_closed_updates_end_as_the_latest_says() {
    let app = std::sync::Arc::new(spawn_app());
    for round in 0..50 {
        let tid = format!("RACE-{round}");
        let mut paid = order("WAIT_SELLER_SEND_GOODS", 2, Some(3));
        paid["tid"] = json!(tid);
        let mut closed = order("TRADE_CLOSED", 1, Some(3));
        closed["tid"] = json!(tid);
        let sends: Vec<_> = [paid, closed]
            .into_iter()
            .map(|body| {
                let app = app.clone();
                std::thread::spawn(move || send(&app, &body))
            })
            .collect();
        for s in sends {
            assert_eq!(s.join().unwrap(), ok());
        }
        assert_eq!(available(&app), 0, "round {round}");
    }
    app.assert_ledger_consistent();
}

/// `updated_at` is compared as a time: the 9th is before the 10th, however it is written
/// (unpadded, "2026-10-9" sorts after "2026-10-10" as text).
fn updates_are_ordered_by_time_not_text() {
    use chrono::Datelike;
    let app = spawn_app();
    // A month about two months back, whatever day the test runs.
    let month =
        (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive() - chrono::Duration::days(60);
    let day = |d: u32, time: &str| format!("{}-{}-{d} {time}", month.year(), month.month());
    let mut paid = order("WAIT_SELLER_SEND_GOODS", 0, Some(0));
    paid["created_at"] = json!(day(9, "09:00:00"));
    paid["pay_at"] = json!(day(9, "09:30:00"));
    paid["updated_at"] = json!(day(10, "10:00:00"));
    assert_eq!(send(&app, &paid), ok());
    assert_eq!(available(&app), 50);
    // An older close, sent late: stale, ignored.
    let mut closed = paid.clone();
    closed["status"] = json!("TRADE_CLOSED");
    closed["updated_at"] = json!(day(9, "10:00:00"));
    assert_eq!(send(&app, &closed), ok());
    assert_eq!(available(&app), 50);
    // The newer one counts.
    closed["updated_at"] = json!(day(11, "10:00:00"));
    assert_eq!(send(&app, &closed), ok());
    assert_eq!(available(&app), 0);
    // An update from beyond the allowed clock skew (300 s) is refused, as on every contract.
    let mut future = closed.clone();
    future["updated_at"] = json!(local(-10));
    assert_eq!(
        send(&app, &future),
        (
            400,
            json!({"err_code": 400, "msg": "updated_at 晚于服务器当前时间。"})
        )
    );
    app.assert_ledger_consistent();
}

/// An order belongs to the app that sent it: another app, with its own valid credentials,
/// sending the same `tid` makes an order of its own and cannot close the first one.
fn another_app_cannot_reach_an_apps_order() {
    let app = spawn_app();
    assert_eq!(
        send(&app, &order("WAIT_SELLER_SEND_GOODS", 40, Some(40))),
        ok()
    );
    assert_eq!(available(&app), 50);
    let other = app.post_with_headers(
        "/openapi/trade",
        &[
            ("App-Id", "cb-other".to_string()),
            ("App-Secret", "other-app-secret".to_string()),
        ],
        &order("TRADE_CLOSED", 10, Some(40)).to_string(),
    );
    assert_eq!(other, ok());
    // The first app's order still holds its points; the other app's order never earned.
    assert_eq!(available(&app), 50);
    let (_, first) = app.get("/v1/point-engine/trades/CB-cb17333123-LIFE-1");
    assert_eq!(first["data"]["refunds"], json!([]));
    let (status, _) = app.get("/v1/point-engine/trades/CB-cb-other-LIFE-1");
    assert_eq!(status, 404);
    app.assert_ledger_consistent();
}

on_both_backends!(
    another_app_cannot_reach_an_apps_order,
    concurrent_paid_and_closed_updates_end_as_the_latest_says,
    updates_are_ordered_by_time_not_text,
    the_documents_example_is_received_and_earns,
    the_whole_lifecycle_grants_on_payment_and_reverses_on_refund,
    every_required_field_missing_and_malformed_is_named_in_the_documents_style,
    every_spelling_the_document_shows_is_accepted,
    app_credentials_are_checked,
    one_member_through_two_identities_has_one_balance,
);

use crate::helpers::*;
use serde_json::{json, Value};

fn link(app: &TestApp, member: &str, kind: &str, value: &str) -> (u16, Value) {
    app.post_to_path(
        &format!("/v1/point-engine/members/{member}/identities"),
        &json!({"kind": kind, "value": value}),
    )
}

fn linked(account: &str, identities: &[(&str, &str)]) -> (u16, Value) {
    let identities: Vec<Value> = identities
        .iter()
        .map(|(kind, value)| json!({"kind": kind, "value": value}))
        .collect();
    (
        200,
        json!({"code": 0, "msg": "success", "data": {"vip_accountno": account, "identities": identities}}),
    )
}

/// A discount card's completion of objective 123456 (20 A points under the shipped rules),
/// recorded an hour ago.
fn completion(serial: &str) -> Value {
    let at = hours_ago(1);
    json!({
        "card_template_id": "87789b2f25177433bcbf407e8e471f95",
        "objective_completion_records": [{
            "objective_completion_serial_no": serial,
            "objective_id": "123456",
            "completion_time": at,
            "completion_type": "INCREASE",
            "description": "pay with the card",
            "completion_count": 1,
        }],
    })
}

fn a_card_linked_to_a_member_earns_for_that_member() {
    let app = spawn_app();
    // A member known by account number (a till), with a phone linked.
    assert_eq!(app.post_trade(&trade("ID-1", "M-ID", &hours_ago(2))).0, 200);
    assert_eq!(
        link(&app, "M-ID", "mobile_phone", "+85291234567"),
        linked("M-ID", &[("mobile_phone", "+85291234567")])
    );
    // The card is linked by the phone: the member's account answers.
    let card = "CARD-LINKED-1";
    assert_eq!(
        link(&app, "TEL:+85291234567", "card_code", card),
        linked(
            "M-ID",
            &[("mobile_phone", "+85291234567"), ("card_code", card)]
        )
    );
    // Linking it again changes nothing and answers the same.
    assert_eq!(
        link(&app, "M-ID", "card_code", card),
        linked(
            "M-ID",
            &[("mobile_phone", "+85291234567"), ("card_code", card)]
        )
    );
    // The card's records now earn for M-ID: 100 E from the trade, 20 A from the card.
    assert_eq!(
        crate::discount_card::send(&app, card, &completion("S-1")).0,
        204
    );
    // Read from the lots, not the balance: the card's 20 A points expire at the end of the
    // quarter they were earned in, which may have passed by now (the clock sweep starts a
    // minute before one).
    let mut granted: Vec<(String, i64)> = app
        .lots()
        .into_iter()
        .map(|(point_type, points, _, _)| (point_type, points))
        .collect();
    granted.sort();
    assert_eq!(granted, vec![("A".to_string(), 20), ("E".to_string(), 100)]);
    let (_, balance) = app.balance("M-ID", None);
    assert_eq!(balance["data"]["vip_accountno"], json!("M-ID"));
    let (_, by_card) = app.balance(&format!("CARD:{card}"), None);
    assert_eq!(by_card["data"]["vip_accountno"], json!("M-ID"));
    assert_eq!(app.counts().0, 2);
    // No member was made for the card.
    let (status, _) = app.balance("CARD:NEVER-SEEN", None);
    assert_eq!(status, 404);
    app.assert_ledger_consistent();
}

fn an_identity_held_by_another_member_is_a_conflict() {
    let app = spawn_app();
    assert_eq!(app.post_trade(&trade("ID-A", "M-A", &hours_ago(2))).0, 200);
    assert_eq!(app.post_trade(&trade("ID-B", "M-B", &hours_ago(2))).0, 200);
    assert_eq!(link(&app, "M-A", "weixin_openid", "oWX-1").0, 200);
    assert_eq!(
        link(&app, "M-B", "weixin_openid", "oWX-1"),
        (
            409,
            error_body(
                40900,
                "weixin_openid oWX-1 is held by another member, M-A: members are not merged"
            )
        )
    );
    // A card first seen by the card endpoint made its own member: held too.
    assert_eq!(
        crate::discount_card::send(&app, "CARD-OWN", &completion("S-2")).0,
        204
    );
    assert_eq!(
        link(&app, "M-A", "card_code", "CARD-OWN"),
        (
            409,
            error_body(
                40900,
                "card_code CARD-OWN is held by another member, CARD:CARD-OWN: members are not merged"
            )
        )
    );
    // Nothing of the refused links was written.
    assert_eq!(
        link(&app, "M-B", "mobile_phone", "85290000000"),
        linked("M-B", &[("mobile_phone", "85290000000")])
    );
}

fn bad_links_are_refused_by_name() {
    let app = spawn_app();
    assert_eq!(app.post_trade(&trade("ID-C", "M-C", &hours_ago(2))).0, 200);
    assert_eq!(
        link(&app, "NOBODY", "card_code", "C1"),
        (404, error_body(40400, "member NOBODY not found"))
    );
    for (kind, value, message) in [
        (
            "vip",
            "M-D",
            "kind vip is the member's account number: it is not linked",
        ),
        (
            "email",
            "a@b.c",
            "kind must be mobile_phone, weixin_openid or card_code, got \"email\"",
        ),
        (
            "mobile_phone",
            "call me",
            "value a phone number must be 7 to 15 digits, with an optional leading +",
        ),
        ("card_code", "", "value must not be empty"),
    ] {
        assert_eq!(
            link(&app, "M-C", kind, value),
            (400, error_body(40001, message)),
            "{kind} {value}"
        );
    }
    let path = "/v1/point-engine/members/M-C/identities";
    assert_eq!(
        app.post_to_path(path, &json!({"kind": "card_code"})),
        (400, error_body(40001, "value is required"))
    );
    assert_eq!(
        app.post_to_path(path, &json!({"kind": ["card_code"], "value": "x"})),
        (
            400,
            error_body(40001, "kind must be a string, got an array")
        )
    );
    // At most 16 identities a member.
    for i in 0..16 {
        assert_eq!(link(&app, "M-C", "card_code", &format!("C-{i}")).0, 200);
    }
    assert_eq!(
        link(&app, "M-C", "card_code", "C-16"),
        (
            400,
            error_body(
                40001,
                "member M-C holds 16 identities already, the most it may"
            )
        )
    );
    // One already held is still answered.
    assert_eq!(link(&app, "M-C", "card_code", "C-3").0, 200);
}

/// Two tills link one card to two members at once, many times: exactly one member gets it each
/// time, and the other is told who holds it.
fn concurrent_links_of_one_identity_give_it_to_one_member() {
    let app = spawn_app();
    for round in 0..32 {
        // A new pair every 8 rounds, so neither member reaches its 16 identities.
        let (e, f) = (format!("M-E{}", round / 8), format!("M-F{}", round / 8));
        if round % 8 == 0 {
            for member in [&e, &f] {
                let out_trade_no = format!("ID-{member}");
                assert_eq!(
                    app.post_trade(&trade(&out_trade_no, member, &hours_ago(2)))
                        .0,
                    200
                );
            }
        }
        let card = format!("RACE-{round}");
        let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&e, &f, &e, &f]
                .into_iter()
                .map(|member| {
                    let (app, card) = (&app, &card);
                    scope.spawn(move || link(app, member, "card_code", card))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: std::collections::BTreeSet<String> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body["data"]["vip_accountno"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let winner = winners.into_iter().next().unwrap();
        for (status, body) in &answers {
            match status {
                200 => {}
                409 => assert_eq!(
                    body["msg"],
                    json!(format!(
                        "card_code {card} is held by another member, {winner}: members are not merged"
                    ))
                ),
                other => panic!("round {round}: {other} {body}"),
            }
        }
        let (_, by_card) = app.balance(&format!("CARD:{card}"), None);
        assert_eq!(by_card["data"]["vip_accountno"], json!(winner));
    }
}

on_both_backends!(
    a_card_linked_to_a_member_earns_for_that_member,
    an_identity_held_by_another_member_is_a_conflict,
    bad_links_are_refused_by_name,
    concurrent_links_of_one_identity_give_it_to_one_member,
);

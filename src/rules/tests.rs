//! Evaluation and loader tests. Evaluation cases are a table over one ruleset that exercises
//! every award, condition and stacking rule.

use super::*;
use crate::domain::trade::tests::sample_trade;
use crate::domain::{Amount, CurrencyCode, MemberContext, PaymentMethod, StoreCode, Trade};

const PROGRAM: &str = r#"
[program]
name = "Test"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10", remark = "base" }
kdp = { policy = "end_of_nth_year", years = 1 }
currencies = { HKD = "1", USD = "7.8" }
"#;

const CAMPAIGNS: &str = r#"
[[campaign]]
code = "DOUBLE"
remark = "x2"
starts_at = "2023-01-01T00:00:00+08:00"
ends_at = "2023-04-01T00:00:00+08:00"
stores = ["DP01*"]
payment_methods = ["VISA"]
priority = 100
expiry = "QUARTER"
award = { multiplier_of_e = "2" }

[[campaign]]
code = "BIG-SPENDER"
starts_at = "2023-01-01T00:00:00+08:00"
ends_at = "2024-01-01T00:00:00+08:00"
min_spend = "5000"
priority = 50
expiry = "KDP"
award = { points = 1, per_amount = "3", rounding = "ceil" }

[[campaign]]
code = "USD-BONUS"
starts_at = "2023-01-01T00:00:00+08:00"
ends_at = "2024-01-01T00:00:00+08:00"
currencies = ["USD"]
priority = 40
expiry = "QUARTER"
quarters_ahead = 1
award = { fixed = 25 }

[[campaign]]
code = "MALL-ONLY"
starts_at = "2023-06-01T00:00:00+08:00"
ends_at = "2023-07-01T00:00:00+08:00"
stores = ["MALL-?"]
priority = 30
exclusive = true
expiry = "QUARTER"
award = { fixed = 10 }

[[campaign]]
code = "SHADOWED"
starts_at = "2023-06-01T00:00:00+08:00"
ends_at = "2023-07-01T00:00:00+08:00"
priority = 10
expiry = "QUARTER"
award = { fixed = 1 }
"#;

fn ruleset() -> Ruleset {
    from_sources(&[
        Source {
            name: "program.toml".into(),
            text: PROGRAM.into(),
        },
        Source {
            name: "campaigns.toml".into(),
            text: CAMPAIGNS.into(),
        },
    ])
    .unwrap()
}

struct Case {
    name: &'static str,
    store: &'static str,
    method: &'static str,
    currency: &'static str,
    amount: &'static str,
    sales_time: &'static str,
    /// (type, points, expire_type, expire_date, campaign) of each grant, in order.
    grants: &'static [(&'static str, i64, &'static str, &'static str, &'static str)],
}

fn trade_for(case: &Case) -> Trade {
    let mut trade = sample_trade();
    trade.store_code = StoreCode::parse(case.store).unwrap();
    trade.payment_method = PaymentMethod::parse(case.method).unwrap();
    trade.currency = CurrencyCode::parse(case.currency).unwrap();
    trade.total_amount = Amount::parse(case.amount).unwrap();
    trade.payment_amount = Amount::parse(case.amount).unwrap();
    trade.sales_time = chrono::DateTime::parse_from_rfc3339(case.sales_time).unwrap();
    trade
}

#[test]
fn evaluation_table() {
    let cases = [
        Case {
            name: "the seed: E plus twice E as A to the quarter end",
            store: "DP01XXXX",
            method: "Visa",
            currency: "HKD",
            amount: "1000.00",
            sales_time: "2023-01-20T10:00:00+08:00",
            grants: &[
                ("E", 100, "KDP", "2024-12-31", ""),
                ("A", 200, "QUARTER", "2023-03-31", "DOUBLE"),
            ],
        },
        Case {
            name: "payment methods compare without case; E rounds down",
            store: "DP01A",
            method: "visa",
            currency: "HKD",
            amount: "19.99",
            sales_time: "2023-02-01T00:00:00+08:00",
            grants: &[
                ("E", 1, "KDP", "2024-12-31", ""),
                ("A", 2, "QUARTER", "2023-03-31", "DOUBLE"),
            ],
        },
        Case {
            name: "another store: no DOUBLE",
            store: "DP02A",
            method: "Visa",
            currency: "HKD",
            amount: "1000.00",
            sales_time: "2023-02-01T00:00:00+08:00",
            grants: &[("E", 100, "KDP", "2024-12-31", "")],
        },
        Case {
            name: "another payment method: no DOUBLE",
            store: "DP01A",
            method: "Cash",
            currency: "HKD",
            amount: "1000.00",
            sales_time: "2023-02-01T00:00:00+08:00",
            grants: &[("E", 100, "KDP", "2024-12-31", "")],
        },
        Case {
            name: "the window's end is exclusive",
            store: "DP01A",
            method: "Visa",
            currency: "HKD",
            amount: "1000.00",
            sales_time: "2023-04-01T00:00:00+08:00",
            grants: &[("E", 100, "KDP", "2024-12-31", "")],
        },
        Case {
            name: "the window's start is inclusive, in UTC as in +08:00",
            store: "DP01A",
            method: "Visa",
            currency: "HKD",
            amount: "1000.00",
            sales_time: "2022-12-31T16:00:00Z",
            grants: &[
                ("E", 100, "KDP", "2024-12-31", ""),
                ("A", 200, "QUARTER", "2023-03-31", "DOUBLE"),
            ],
        },
        Case {
            name: "minimum spend reached: per-amount award with its own rounding, KDP expiry",
            store: "X",
            method: "Cash",
            currency: "HKD",
            amount: "5000.00",
            sales_time: "2023-05-01T00:00:00+08:00",
            grants: &[
                ("E", 500, "KDP", "2024-12-31", ""),
                ("A", 1667, "KDP", "2024-12-31", "BIG-SPENDER"),
            ],
        },
        Case {
            name: "minimum spend missed by a cent",
            store: "X",
            method: "Cash",
            currency: "HKD",
            amount: "4999.99",
            sales_time: "2023-05-01T00:00:00+08:00",
            grants: &[("E", 499, "KDP", "2024-12-31", "")],
        },
        Case {
            name: "USD converts to HKD for E and minimum spend; USD bonus one quarter ahead",
            store: "X",
            method: "Cash",
            currency: "USD",
            amount: "1000.00",
            sales_time: "2023-05-01T00:00:00+08:00",
            grants: &[
                ("E", 780, "KDP", "2024-12-31", ""),
                ("A", 2600, "KDP", "2024-12-31", "BIG-SPENDER"),
                ("A", 25, "QUARTER", "2023-09-30", "USD-BONUS"),
            ],
        },
        Case {
            name: "an exclusive campaign stops the ones after it",
            store: "MALL-1",
            method: "Cash",
            currency: "HKD",
            amount: "100.00",
            sales_time: "2023-06-15T00:00:00+08:00",
            grants: &[
                ("E", 10, "KDP", "2024-12-31", ""),
                ("A", 10, "QUARTER", "2023-06-30", "MALL-ONLY"),
            ],
        },
        Case {
            name: "without the exclusive one, the lower priority applies",
            store: "MALL-12",
            method: "Cash",
            currency: "HKD",
            amount: "100.00",
            sales_time: "2023-06-15T00:00:00+08:00",
            grants: &[
                ("E", 10, "KDP", "2024-12-31", ""),
                ("A", 1, "QUARTER", "2023-06-30", "SHADOWED"),
            ],
        },
        Case {
            name: "nothing to earn: no grants at all",
            store: "X",
            method: "Cash",
            currency: "HKD",
            amount: "9.99",
            sales_time: "2023-05-01T00:00:00+08:00",
            grants: &[],
        },
    ];
    let rules = ruleset();
    for case in &cases {
        let grants = rules.evaluate(&trade_for(case)).unwrap();
        let got: Vec<(&str, i64, &str, String, String)> = grants
            .iter()
            .map(|g| {
                (
                    g.point_type.as_str(),
                    g.points.value(),
                    g.expire_type.as_str(),
                    g.expire_date.map(|d| d.to_string()).unwrap_or_default(),
                    g.campaign_code
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect();
        let want: Vec<(&str, i64, &str, String, String)> = case
            .grants
            .iter()
            .map(|(t, p, e, d, c)| (*t, *p, *e, d.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want, "{}", case.name);
    }
}

#[test]
fn grants_carry_the_instant_they_stop_being_available() {
    let rules = ruleset();
    let grants = rules.evaluate(&sample_trade()).unwrap();
    let quarter = &grants[1];
    assert_eq!(
        quarter.expires_at.unwrap().to_rfc3339(),
        "2023-03-31T16:00:00+00:00"
    );
    assert_eq!(&*quarter.remark, "x2");
    assert_eq!(&*grants[0].remark, "base");
}

#[test]
fn an_unaccepted_currency_is_an_error() {
    let mut trade = sample_trade();
    trade.currency = CurrencyCode::parse("EUR").unwrap();
    assert_eq!(
        ruleset().evaluate(&trade).unwrap_err(),
        EvaluateError::UnsupportedCurrency(CurrencyCode::parse("EUR").unwrap())
    );
}

#[test]
fn the_version_is_a_content_hash() {
    let a = ruleset();
    assert_eq!(a.version.len(), 32);
    assert_eq!(a.version, ruleset().version);
    let changed = from_sources(&[
        Source {
            name: "program.toml".into(),
            text: PROGRAM.into(),
        },
        Source {
            name: "campaigns.toml".into(),
            text: CAMPAIGNS.replace("fixed = 25", "fixed = 26"),
        },
    ])
    .unwrap();
    assert_ne!(a.version, changed.version);
}

#[test]
fn the_shipped_rules_load_without_the_examples() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = load_dir(&folder).unwrap();
    assert_eq!(rules.program.name, "Demo Mall Rewards");
    // Only the seed's campaign is live; the examples are not unless chosen.
    let codes: Vec<&str> = rules.campaigns.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["Q1-2023-VISA-DP01"]);
    assert!(rules.objectives.is_empty());
    // Chosen (copied beside the program), they load and their [[test]] receipts pass.
    let mut sources = crate::rules::read_dir(&folder).unwrap();
    sources.extend(crate::rules::read_dir(&folder.join("examples")).unwrap());
    let with_examples = from_sources(&sources).unwrap();
    assert_eq!(with_examples.campaigns.len(), 14);
    assert_eq!(with_examples.objectives.len(), 1);
    assert_eq!(with_examples.tests.len(), 14);
    assert_eq!(with_examples.run_tests(), Vec::<String>::new());
}

/// The first problem a ruleset of (program, campaigns) has, as "line:column: message".
#[test]
fn a_missing_program_is_blamed_on_the_program_file() {
    let load = |program: &str| {
        let error = from_sources(&[
            Source {
                name: "campaigns.toml".into(),
                text: ONE.into(),
            },
            Source {
                name: "program.toml".into(),
                text: program.into(),
            },
        ])
        .unwrap_err();
        error.to_string()
    };
    assert!(
        load(" \n")
            .contains("program.toml:1:1: the file is empty: it must hold the [program] table"),
        "{}",
        load(" \n")
    );
    assert!(load("# nothing yet\n")
        .contains("program.toml:1:1: no [program] table here or in any rule file"));
}

#[test]
fn a_ruleset_without_campaigns_says_so() {
    let empty = from_sources(&[Source {
        name: "program.toml".into(),
        text: PROGRAM.into(),
    }])
    .unwrap();
    let warning =
        "no campaigns: every trade earns its E points only (was a campaigns file emptied?)";
    assert_eq!(empty.alerts(), [warning]);
    assert_eq!(empty.lint(chrono::Utc::now())[0], warning);
}

fn problem(program: &str, campaigns: &str) -> String {
    let error = from_sources(&[
        Source {
            name: "p.toml".into(),
            text: program.into(),
        },
        Source {
            name: "c.toml".into(),
            text: campaigns.into(),
        },
    ])
    .unwrap_err();
    let LoadError::Invalid { problems } = error else {
        panic!("{error}")
    };
    let p = &problems[0];
    format!("{}:{}:{}: {}", p.file, p.line, p.column, p.message)
}

const ONE: &str = r#"
[[campaign]]
code = "ONE"
starts_at = "2023-01-01T00:00:00+08:00"
ends_at = "2023-04-01T00:00:00+08:00"
expiry = "QUARTER"
award = { fixed = 5 }
"#;

const TIERS: &str = r#"
[program.tiers]
qualify_on = "points"
period = "calendar_year"
levels = [{ name = "Silver", from = 0 }, { name = "Gold", from = 5000 }]
"#;

#[test]
fn loader_errors_name_file_line_and_what_is_wrong() {
    let cases: Vec<(String, String, &str)> = vec![
        (PROGRAM.replace("rounding = \"floor\"", "rounding = \"floor\"\ncolour = \"red\""), ONE.into(),
         "p.toml:7:1: unknown field `colour`, expected one of `name`, `time_zone`, `base_currency`, `rounding`, `pending_days`, `earn`, `kdp`, `currencies`, `store_groups`, `holidays`, `tiers`, `store_time_zones`"),
        (PROGRAM.replace("\"+08:00\"", "\"Mars/Base\""), ONE.into(),
         "p.toml:4:1: program.time_zone: must be an offset such as \"+08:00\" or a zone such as \"Asia/Hong_Kong\", got \"Mars/Base\""),
        (PROGRAM.replace("USD = \"7.8\"", "USD = 7.8"), ONE.into(),
         "p.toml:9:33: write decimals as strings, e.g. \"7.8\": a float is not exact"),
        (PROGRAM.replace("HKD = \"1\"", "HKD = \"2\""), ONE.into(),
         "p.toml:9:1: program.currencies.HKD: the base currency's rate must be \"1\", got 2"),
        (PROGRAM.replace("years = 1", "months = 1"), ONE.into(),
         "p.toml:8:1: program.kdp: policy \"end_of_nth_year\" needs years"),
        (PROGRAM.into(), ONE.replace("2023-04-01", "2022-04-01"),
         "c.toml:5:1: campaign \"ONE\": ends_at 2022-04-01 00:00:00 +08:00 is not after starts_at 2023-01-01 00:00:00 +08:00"),
        (PROGRAM.into(), format!("{ONE}{ONE}"),
         "c.toml:9:1: campaign code \"ONE\" is used twice: also in c.toml"),
        (PROGRAM.into(), ONE.replace("{ fixed = 5 }", "{ fixed = 5, multiplier_of_e = \"2\" }"),
         "c.toml:7:1: campaign \"ONE\": award: give exactly one of multiplier_of_e, multiplier_of_e_by_tier, points with per_amount, fixed, points_per_line or points_per_unit"),
        (PROGRAM.into(), ONE.replace("QUARTER", "MONTH"),
         "c.toml:6:1: campaign \"ONE\": expiry: must be \"KDP\" or \"QUARTER\", got \"MONTH\""),
        (PROGRAM.into(), ONE.replace("expiry", "currencies = [\"EUR\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": currencies: EUR has no rate in program.currencies"),
        (PROGRAM.into(), ONE.replace("starts_at", "start_at"),
         "c.toml:4:1: unknown field `start_at`, expected one of `code`, `enabled`, `name`, `remark`, `starts_at`, `ends_at`, `stores`, `payment_methods`, `currencies`, `store_groups`, `excluded_stores`, `excluded_store_groups`, `channels`, `genders`, `tiers`, `birthday_month`, `days_of_week`, `hours`, `blackout_dates`, `min_spend`, `max_spend`, `skus`, `min_quantity`, `excluded_skus`, `basket`, `spend_base`, `first_trade`, `nth_trade`, `every_nth_trade`, `from_nth_trade`, `priority`, `exclusive`, `group`, `expiry`, `quarters_ahead`, `award`, `max_points_per_trade`, `member_limit`, `budget`, `budget_per_day`, `budget_per_month`"),
        (PROGRAM.into(), ONE.replace("expiry", "days_of_week = [\"sat\", \"caturday\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": days_of_week: \"caturday\" is not one of mon, tue, wed, thu, fri, sat, sun"),
        (PROGRAM.into(), ONE.replace("expiry", "hours = [\"14:00-14:00\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": hours: \"14:00-14:00\" starts and ends at the same time (leave hours out for all day)"),
        (PROGRAM.into(), ONE.replace("expiry", "blackout_dates = [\"xmas\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": blackout_dates: \"xmas\" is neither a date (YYYY-MM-DD) nor in program.holidays"),
        (PROGRAM.replace("rounding = \"floor\"", "rounding = \"floor\"\nholidays = { xmas = [\"2026-12-32\"] }"), ONE.into(),
         "p.toml:7:1: program.holidays.xmas: \"2026-12-32\" is not a date such as \"2026-12-25\""),
        (PROGRAM.into(), ONE.replace("expiry", "hours = [\"lunch\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": hours: \"lunch\" is not a window such as \"10:00-14:00\""),
        (PROGRAM.into(), ONE.replace("expiry", "store_groups = [\"moon\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": store_groups: \"moon\" is not in program.store_groups"),
        (PROGRAM.into(), ONE.replace("expiry", "min_spend = \"500\"\nmax_spend = \"100\"\nexpiry"),
         "c.toml:7:1: campaign \"ONE\": max_spend 100 is below min_spend 500"),
        (PROGRAM.into(), ONE.replace("expiry", "min_quantity = 2\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": min_quantity: applies only with skus"),
        (PROGRAM.into(), ONE.replace("{ fixed = 5 }", "{ points_per_unit = 5 }"),
         "c.toml:7:1: campaign \"ONE\": award: points_per_line and points_per_unit need the campaign's skus"),
        (PROGRAM.into(), ONE.replace("expiry", "budget = -1\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": budget: must be from 0 to 1000000000000, got -1"),
        (PROGRAM.into(), ONE.replace("expiry", "member_limit = {}\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": member_limit: give total, per_day, per_week or per_month"),
        (PROGRAM.into(), ONE.replace("expiry", "member_limit = { per_week = -5 }\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": member_limit.per_week: must be from 0 to 1000000000000, got -5"),
        (PROGRAM.into(), ONE.replace("expiry", "excluded_store_groups = [\"moon\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": excluded_store_groups: \"moon\" is not in program.store_groups"),
        (PROGRAM.into(), ONE.replace("expiry", "excluded_stores = [\" \"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": excluded_stores: a pattern must not be empty"),
        (PROGRAM.into(), ONE.replace("expiry", "channels = [\"\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": channels: a channel is from 1 to 64 characters"),
        (PROGRAM.into(), ONE.replace("expiry", "genders = [\"other\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": genders: must be \"male\", \"female\" or \"unknown\", got \"other\""),
        (PROGRAM.into(), ONE.replace("expiry", "basket = [\"\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": basket: a pattern must not be empty"),
        (PROGRAM.into(), ONE.replace("expiry", "excluded_skus = [\"\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": excluded_skus: a pattern must not be empty"),
        (PROGRAM.into(), ONE.replace("expiry", "spend_base = \"matching_lines\"\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": spend_base: \"matching_lines\" needs the campaign's skus"),
        (PROGRAM.into(), ONE.replace("expiry", "spend_base = \"lines\"\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": spend_base: must be \"receipt\" or \"matching_lines\", got \"lines\""),
        (PROGRAM.into(), ONE.replace("expiry", "tiers = [\"Gold\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": tiers: the program has no tiers (program.tiers)"),
        (format!("{PROGRAM}{TIERS}"), ONE.replace("expiry", "tiers = [\"Bronze\"]\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": tiers: \"Bronze\" is not a level of program.tiers"),
        (format!("{PROGRAM}{TIERS}"), ONE.replace("{ fixed = 5 }", "{ multiplier_of_e_by_tier = { Gold = \"0\" } }"),
         "c.toml:7:1: campaign \"ONE\": award: multiplier_of_e_by_tier: Gold: must be above 0 and at most 1000, got 0"),
        (PROGRAM.into(), ONE.replace("{ fixed = 5 }", "{ multiplier_of_e_by_tier = { Gold = \"2\" } }"),
         "c.toml:7:1: campaign \"ONE\": award: multiplier_of_e_by_tier: the program has no tiers (program.tiers)"),
        (format!("{PROGRAM}{}", TIERS.replace("from = 0", "from = 10")), ONE.into(),
         "p.toml:11:1: program.tiers: levels: the first, Silver, is every member's: its from must be 0, got 10"),
        (format!("{PROGRAM}{}", TIERS.replace("from = 5000", "from = 0")), ONE.into(),
         "p.toml:11:1: program.tiers: levels: Gold from 0 is not above Silver from 0"),
        (format!("{PROGRAM}{}", TIERS.replace("\"points\"", "\"visits\"")), ONE.into(),
         "p.toml:11:1: program.tiers: qualify_on must be \"points\" or \"spend\", got \"visits\""),
        (PROGRAM.into(), ONE.replace("expiry", "every_nth_trade = 0\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": every_nth_trade: must be from 1 to 1000000, got 0"),
        (PROGRAM.into(), ONE.replace("expiry", "nth_trade = 2\nfrom_nth_trade = 3\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": nth_trade: give one of nth_trade, every_nth_trade and from_nth_trade"),
        (PROGRAM.into(), ONE.replace("expiry", "nth_trade = 0\nexpiry"),
         "c.toml:6:1: campaign \"ONE\": nth_trade: must be from 1 to 1000000, got 0"),
        (PROGRAM.into(), format!("{ONE}\n[[objective]]\nid = \"7\"\ncode = \"ONE\"\npoints = 5\nexpiry = \"KDP\"\n"),
         "c.toml:9:1: objective code \"ONE\" is used twice: also in c.toml"),
        (PROGRAM.replace("earn = {", "earn = { exclude = [\"tips\"],"), ONE.into(),
         "p.toml:7:1: program.earn.exclude: \"tips\" is not one of \"post_fee\", \"discount\", \"burned_points\""),
        (PROGRAM.replace("earn = {", "earn = { exclude = [\"burned_points\"],"), ONE.into(),
         "p.toml:7:1: program.earn.exclude: \"burned_points\" needs burned_point_value"),
        (PROGRAM.into(), ONE.replace("code = \"ONE\"", "code = [1]"),
         "c.toml:3:8: invalid type: sequence, expected a string"),
        (PROGRAM.replace("rounding = \"floor\"", "rounding = \"floor\"\npending_days = 400"), ONE.into(),
         "p.toml:7:1: program.pending_days: must be from 0 to 366, got 400"),
        ("".into(), ONE.into(), "p.toml:1:1: no [program] table in any rule file (put it in program.toml)"),
        (PROGRAM.into(), PROGRAM.into(), "c.toml:2:1: a second [program]: the first is in p.toml"),
    ];
    for (program, campaigns, want) in cases {
        assert_eq!(problem(&program, &campaigns), want);
    }
}

fn testdata(name: &str, text: &str) -> Ruleset {
    from_sources(&[Source {
        name: name.into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The campaign language, feature by feature: `[[test]]` receipts in TOML beside the campaigns.
#[test]
fn the_campaign_language_table() {
    for (name, text, count) in [
        ("language.toml", include_str!("testdata/language.toml"), 29),
        (
            "exclusions.toml",
            include_str!("testdata/exclusions.toml"),
            2,
        ),
        (
            "line_rounding.toml",
            include_str!("testdata/line_rounding.toml"),
            2,
        ),
        (
            "payment_base.toml",
            include_str!("testdata/payment_base.toml"),
            2,
        ),
        ("budgets.toml", include_str!("testdata/budgets.toml"), 6),
        ("tiers.toml", include_str!("testdata/tiers.toml"), 3),
        ("windows.toml", include_str!("testdata/windows.toml"), 8),
        (
            "selection.toml",
            include_str!("testdata/selection.toml"),
            31,
        ),
    ] {
        let rules = testdata(name, text);
        assert_eq!(rules.tests.len(), count, "{name}");
        assert_eq!(rules.run_tests(), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn explain_says_which_night_and_which_blackout() {
    let rules = testdata("windows.toml", include_str!("testdata/windows.toml"));
    let reasons = |index: usize| {
        let test = &rules.tests[index];
        rules
            .explain(&test.trade, &test.context)
            .unwrap()
            .1
            .campaigns
            .into_iter()
            .map(|o| (o.campaign_code, o.reason))
            .collect::<Vec<_>>()
    };
    // Friday 01:30: Thursday night.
    assert!(reasons(5).contains(&(
        "FRI-NIGHT".to_string(),
        "thu is not one of its days".to_string()
    )));
    // 21:59: no window.
    assert!(reasons(3).contains(&(
        "FRI-NIGHT".to_string(),
        "21:59 is outside its hours".to_string()
    )));
    assert!(reasons(6).contains(&(
        "NO-XMAS".to_string(),
        "2026-12-25 is one of its blackout dates".to_string()
    )));
}

#[test]
fn explain_says_which_store_channel_member_line_and_trade_count_missed() {
    let rules = testdata("selection.toml", include_str!("testdata/selection.toml"));
    let reason = |name: &str, code: &str| {
        let test = rules.tests.iter().find(|t| t.name == name).unwrap();
        let explained = rules.explain(&test.trade, &test.context).unwrap().1;
        explained
            .campaigns
            .into_iter()
            .find(|o| o.campaign_code == code)
            .map(|o| o.reason)
            .unwrap()
    };
    for (test, code, want) in [
        (
            "an excluded store",
            "HK-NOT-AIRPORT",
            "store HK-AIR-3 matches its excluded_stores [\"HK-AIR*\", \"HK-OUT-*\"]",
        ),
        (
            "no channel",
            "APP-ONLY",
            "resource \"\" is not one of its channels [\"APP\", \"WECHAT\"]",
        ),
        (
            "a male member",
            "LADIES-NIGHT",
            "the member's gender is male, not one of [\"female\"]",
        ),
        (
            "a member whose gender is not known",
            "LADIES-NIGHT",
            "the member's gender is unknown, not one of [\"female\"]",
        ),
        (
            "min_spend counts the dairy lines, not the receipt",
            "DAIRY-2X",
            "spend 15 is below min_spend 20",
        ),
        (
            "tobacco leaves the campaign's spend: below its min_spend",
            "NO-TOBACCO",
            "spend 40 is below min_spend 50",
        ),
        (
            "coffee and an excluded bagel",
            "BREAKFAST",
            "no line of its basket's \"BAGEL-*\"",
        ),
        (
            "the 4th trade",
            "EVERY-3RD",
            "the member's trade number 4 in its window: it takes every 3rd",
        ),
        (
            "the 4th trade is before the 5th",
            "FROM-5TH",
            "the member's trade number 4 in its window: it takes number 5 and later",
        ),
        (
            "a week's limit cuts the award",
            "WEEKLY",
            "capped by member_limit.per_week 150 (100 used)",
        ),
    ] {
        assert_eq!(reason(test, code), want, "{test}");
    }
}

#[test]
fn a_failing_rule_test_names_its_file_line_and_what_it_got() {
    let text = include_str!("testdata/language.toml").replace("total = 400", "total = 401");
    let failures = testdata("language.toml", &text).run_tests();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("language.toml:")
            && failures[0].contains("test \"per-trade cap: ten times E is capped at 300\": earns 400 points, expected 401"),
        "{}",
        failures[0]
    );
}

#[test]
fn objectives_grant_every_nth_completion() {
    let rules = testdata("language.toml", include_str!("testdata/language.toml"));
    let id = crate::domain::ObjectiveId::parse("123456").unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00+08:00")
        .unwrap()
        .to_utc();
    assert_eq!(rules.objective_grant(&id, 0, at), None);
    let grant = rules.objective_grant(&id, 1, at).unwrap();
    assert_eq!(
        (
            grant.points.value(),
            grant.campaign_code_text(),
            grant.expire_date_text()
        ),
        (15, "OBJ-REVIEW", "2026-12-31".to_string())
    );
    assert_eq!(rules.objective_grant(&id, 2, at), None);
    let unknown = crate::domain::ObjectiveId::parse("999").unwrap();
    assert_eq!(rules.objective_grant(&unknown, 1, at), None);
}

#[test]
fn explain_says_why_each_campaign_did_or_did_not_apply() {
    let rules = testdata("language.toml", include_str!("testdata/language.toml"));
    let mut trade = sample_trade();
    trade.store_code = StoreCode::parse("GR1").unwrap();
    trade.sales_time = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00+08:00").unwrap();
    let (priced, explanation) = rules.explain(&trade, &MemberContext::default()).unwrap();
    assert_eq!(priced.grants.len(), 2);
    let outcome = |code: &str| {
        explanation
            .campaigns
            .iter()
            .find(|c| c.campaign_code == code)
            .map(|c| (c.outcome, c.points, c.reason.clone()))
            .unwrap()
    };
    assert_eq!(
        outcome("GROUP-DOUBLE"),
        ("granted", 100, "every condition holds".to_string())
    );
    assert_eq!(
        outcome("GROUP-FIXED"),
        (
            "lost_in_group",
            0,
            "GROUP-DOUBLE grants more in group \"best\"".to_string()
        )
    );
    assert_eq!(
        outcome("WEEKEND"),
        (
            "not_matched",
            0,
            "store GR1 matches none of [\"WK*\"]".to_string()
        )
    );
    trade.store_code = StoreCode::parse("WK1").unwrap();
    let (_, explanation) = rules.explain(&trade, &MemberContext::default()).unwrap();
    let weekend = explanation
        .campaigns
        .iter()
        .find(|c| c.campaign_code == "WEEKEND")
        .unwrap();
    assert_eq!(weekend.reason, "tue is not one of its days");
    // Times in the program's zone, as people there read them.
    trade.store_code = StoreCode::parse("GR1").unwrap();
    trade.sales_time = chrono::DateTime::parse_from_rfc3339("2019-12-31T15:59:00Z").unwrap();
    let (_, explanation) = rules.explain(&trade, &MemberContext::default()).unwrap();
    let group = explanation
        .campaigns
        .iter()
        .find(|c| c.campaign_code == "GROUP-DOUBLE")
        .unwrap();
    assert_eq!(
        group.reason,
        "sales_time 2019-12-31 23:59:00 +08:00 is outside [2020-01-01 00:00:00 +08:00, 2100-01-01 00:00:00 +08:00)"
    );
}

#[test]
fn the_index_finds_the_same_grants_as_trying_every_campaign() {
    let rules = testdata("language.toml", include_str!("testdata/language.toml"));
    for test in &rules.tests {
        let indexed = rules.price(&test.trade, &test.context).unwrap();
        let (all, _) = rules.explain(&test.trade, &test.context).unwrap();
        assert_eq!(indexed, all, "{}", test.name);
    }
}

/// The index against a reference: pricing through the index (candidates by store, time and
/// payment method; conditions the index guarantees not checked again) must grant exactly what
/// running every campaign in order, checking every condition, grants (`explain`'s path), over
/// generated rulesets and trades.
mod index_against_every_campaign {
    use super::*;
    use proptest::prelude::*;

    const STORES: [&str; 8] = ["A1", "A12", "A2", "B1", "AB1", "B", "A", "C9"];
    const PATTERNS: [&str; 12] = [
        "A1", "A12", "A*", "A1*", "?1*", "*2", "B*", "A?", "*", "AB*", "B", "A1?",
    ];
    const METHODS: [&str; 5] = ["Visa", "VISA", "cash", "Octopus", "AMEX"];
    const TIMES: [&str; 6] = [
        "2023-01-01T00:00:00+08:00",
        "2023-02-01T00:00:00+08:00",
        "2023-02-01T00:00:00.0000005+08:00",
        "2023-02-01T00:00:00.000001+08:00",
        "2023-03-15T12:30:00+08:00",
        "2023-04-01T00:00:00+08:00",
    ];

    #[derive(Debug, Clone)]
    struct Spec {
        stores: Vec<usize>,
        methods: Vec<usize>,
        starts: usize,
        length: usize,
        min_spend: &'static str,
        priority: u8,
        exclusive: bool,
        group: Option<u8>,
        award: u8,
        /// Patterns of `excluded_stores`.
        excluded: Vec<usize>,
        /// `spend_base = "matching_lines"` on the lines of SKU `L*`.
        on_lines: bool,
    }

    /// Whole amounts, cents, and a minimum finer than the index's millionths.
    const MIN_SPENDS: [&str; 6] = ["0", "500", "1000", "12.34", "999.995", "0.0000001"];

    fn spec() -> impl Strategy<Value = Spec> {
        (
            proptest::collection::vec(0..PATTERNS.len(), 0..3),
            proptest::collection::vec(0..4usize, 0..3),
            0..TIMES.len() - 1,
            1..TIMES.len(),
            0..MIN_SPENDS.len(),
            0..4u8,
            proptest::bool::weighted(0.1),
            proptest::option::weighted(0.2, 0..2u8),
            0..6u8,
            proptest::collection::vec(0..PATTERNS.len(), 0..2),
            proptest::bool::weighted(0.2),
        )
            .prop_map(
                |(
                    stores,
                    methods,
                    starts,
                    length,
                    min_spend,
                    priority,
                    exclusive,
                    group,
                    award,
                    excluded,
                    on_lines,
                )| {
                    Spec {
                        stores,
                        methods,
                        starts,
                        length,
                        min_spend: MIN_SPENDS[min_spend],
                        priority,
                        exclusive,
                        group,
                        award,
                        excluded,
                        on_lines,
                    }
                },
            )
    }

    fn ruleset(specs: &[Spec]) -> Ruleset {
        let mut text = String::new();
        for (i, s) in specs.iter().enumerate() {
            let quoted = |items: Vec<&str>| {
                items
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let stores = quoted(s.stores.iter().map(|p| PATTERNS[*p]).collect());
            let mut methods: Vec<&str> = s.methods.iter().map(|m| METHODS[*m]).collect();
            methods.dedup();
            let ends = (s.starts + s.length).min(TIMES.len() - 1).max(s.starts + 1);
            let award = match s.award {
                0 => "{ multiplier_of_e = \"2\" }",
                1 => "{ points = 1, per_amount = \"20\" }",
                2 => "{ fixed = 7 }",
                // The same multiplier at another scale, and one with a fraction.
                3 if i % 2 == 0 => "{ multiplier_of_e = \"2.0\" }",
                3 => "{ multiplier_of_e = \"1.5\" }",
                // No exact ratio (a division), rounded its own way.
                4 => "{ points = 3, per_amount = \"7\", rounding = \"half_up\" }",
                _ => "{ points = 3, per_amount = \"7\" }",
            };
            text += &format!(
                "[[campaign]]\ncode = \"C{i:02}\"\nstarts_at = \"{}\"\nends_at = \"{}\"\n\
                 min_spend = \"{}\"\npriority = {}\nexclusive = {}\nexpiry = \"QUARTER\"\n\
                 award = {award}\n",
                TIMES[s.starts], TIMES[ends], s.min_spend, s.priority, s.exclusive
            );
            if !s.stores.is_empty() {
                text += &format!("stores = [{stores}]\n");
            }
            if !methods.is_empty() {
                text += &format!("payment_methods = [{}]\n", quoted(methods));
            }
            if let Some(g) = s.group {
                text += &format!("group = \"G{g}\"\n");
            }
            if !s.excluded.is_empty() {
                let excluded = quoted(s.excluded.iter().map(|p| PATTERNS[*p]).collect());
                text += &format!("excluded_stores = [{excluded}]\n");
            }
            if s.on_lines {
                text += "skus = [\"L*\"]\nspend_base = \"matching_lines\"\n";
            }
            text += "\n";
        }
        from_sources(&[
            Source {
                name: "program.toml".into(),
                text: PROGRAM.into(),
            },
            Source {
                name: "campaigns.toml".into(),
                text,
            },
        ])
        .expect("the generated campaigns load")
    }

    fn trade(store: usize, method: usize, time: usize, amount: u32, line: u32) -> Trade {
        let mut trade = sample_trade();
        trade.store_code = StoreCode::parse(STORES[store]).unwrap();
        trade.payment_method = PaymentMethod::parse(METHODS[method]).unwrap();
        let at = crate::domain::trade::parse_rfc3339(TIMES[time]).unwrap();
        trade.sales_time = at;
        trade.submit_time = at;
        trade.approval_time = at;
        // In cents: an amount one cent either side of a minimum.
        let amount = Amount::from_minor(i64::from(amount)).unwrap();
        trade.total_amount = amount;
        trade.payment_amount = amount;
        // A line that may add up to more than the payment (a discounted receipt).
        if line > 0 {
            let sku = crate::domain::Sku::parse("L1").unwrap();
            let amount = Amount::parse(&line.to_string()).unwrap();
            trade.lines = vec![crate::domain::TradeLine::new(sku, "", 1, amount).unwrap()];
        }
        trade
    }

    /// Amounts in cents: any, or one on or a cent either side of a minimum.
    fn cents() -> impl Strategy<Value = u32> {
        proptest::prop_oneof![
            0..200_000u32,
            proptest::sample::select(vec![
                0, 1, 1233, 1234, 1235, 49_999, 50_000, 99_999, 100_000
            ]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn grants_agree(
            specs in proptest::collection::vec(spec(), 1..24),
            trades in proptest::collection::vec(
                (0..STORES.len(), 0..METHODS.len(), 0..TIMES.len(), cents(), 0..2000u32),
                1..16),
        ) {
            let rules = ruleset(&specs);
            for (store, method, time, amount, line) in trades {
                let trade = trade(store, method, time, amount, line);
                let ctx = MemberContext::default();
                let indexed = rules.price(&trade, &ctx).unwrap();
                let (reference, _) = rules.explain(&trade, &ctx).unwrap();
                prop_assert_eq!(indexed, reference, "{:?}", trade);
            }
        }
    }
}

#[test]
fn a_tier_is_qualified_in_its_period_and_kept_until_the_next_review() {
    let at = |text: &str| crate::domain::trade::parse_rfc3339(text).unwrap().to_utc();
    let text = include_str!("testdata/tiers.toml");
    let sale = at("2026-12-02T12:00:00+08:00");
    let yearly = testdata("tiers.toml", text);
    let need = yearly.tier_need(sale).unwrap();
    assert_eq!(need.current, (at("2026-01-01T00:00:00+08:00"), sale));
    assert_eq!(
        need.review,
        (
            at("2025-01-01T00:00:00+08:00"),
            at("2026-01-01T00:00:00+08:00")
        )
    );
    let rolling = testdata(
        "tiers.toml",
        &text.replace("calendar_year", "rolling_12_months"),
    );
    let need = rolling.tier_need(sale).unwrap();
    assert_eq!(need.current, (at("2025-12-02T00:00:00+08:00"), sale));
    assert_eq!(
        need.review,
        (
            at("2025-12-01T00:00:00+08:00"),
            at("2026-12-01T00:00:00+08:00")
        )
    );
    // Gold (5,000) at the last review, 100 since: still Gold. Platinum reached now: at once.
    let tier = |current: i64, review: i64| {
        let ctx = MemberContext {
            qualifying: Some([current.into(), review.into()]),
            ..MemberContext::default()
        };
        let level = yearly.member_tier(&ctx).unwrap();
        yearly
            .program
            .tiers
            .as_ref()
            .unwrap()
            .name(level)
            .to_string()
    };
    assert_eq!(tier(100, 6000), "Gold");
    assert_eq!(tier(25_000, 6000), "Platinum");
    assert_eq!(tier(4999, 0), "Silver");
    assert_eq!(tier(5000, 0), "Gold");
    // Priced at Gold by what qualified the member, the trade records it.
    let trade = &yearly.tests[0].trade;
    let ctx = MemberContext {
        qualifying: Some([5000.into(), 0.into()]),
        ..MemberContext::default()
    };
    let priced = yearly.price(trade, &ctx).unwrap();
    assert_eq!(priced.tier.as_deref(), Some("Gold"));
    assert_eq!(
        priced.grants.iter().map(|g| g.points.value()).sum::<i64>(),
        40
    );
    // Without tiers asked about, nothing is recorded.
    assert_eq!(yearly.evaluate(trade).unwrap().len(), 1);
    assert_eq!(
        yearly.price(trade, &MemberContext::default()).unwrap().tier,
        None
    );
}

#[test]
fn the_tiered_example_program_loads_and_its_tests_pass() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples/tiers");
    let rules = load_dir(&folder).unwrap();
    let tiers = rules.program.tiers.as_ref().unwrap();
    let names: Vec<&str> = tiers.levels.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Classic", "Silver", "Gold", "Black"]);
    assert_eq!(rules.campaigns.len(), 3);
    assert_eq!(rules.tests.len(), 5);
    assert_eq!(rules.run_tests(), Vec::<String>::new());
}

#[test]
fn a_store_groups_time_zone_places_its_hours_days_and_quarter_ends() {
    let text = r#"
[program]
name = "Zones"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "end_of_nth_month", months = 0 }
currencies = { HKD = "1" }
store_groups = { london = ["UK-*"], tokyo = ["JP-*"] }
store_time_zones = { london = "Europe/London", tokyo = "+09:00" }

[[campaign]]
code = "EVENING"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
hours = ["18:00-20:00"]
expiry = "QUARTER"
award = { fixed = 10 }
"#;
    let rules = testdata("zones.toml", text);
    let at = |text: &str| crate::domain::trade::parse_rfc3339(text).unwrap();
    let priced = |store: &str, sold: &str| {
        let mut trade = sample_trade();
        trade.store_code = StoreCode::parse(store).unwrap();
        trade.sales_time = at(sold);
        rules.evaluate(&trade).unwrap()
    };
    // 18:30 in Hong Kong is 10:30 in London and 19:30 in Tokyo.
    assert_eq!(priced("HK-1", "2026-12-02T18:30:00+08:00").len(), 2);
    assert_eq!(priced("UK-1", "2026-12-02T18:30:00+08:00").len(), 1);
    assert_eq!(priced("JP-1", "2026-12-02T18:30:00+08:00").len(), 2);
    assert_eq!(priced("UK-1", "2026-12-03T02:30:00+08:00").len(), 2);
    // New Year's morning in Hong Kong is still 31 December in London: its quarter ends at
    // London's midnight; its KDP points, earned in December, at the end of December there.
    let london = priced("UK-1", "2026-01-01T02:30:00+08:00");
    let expiries: Vec<_> = london
        .iter()
        .map(|g| (g.expire_date.unwrap().to_string(), g.expires_at.unwrap()))
        .collect();
    let london_midnight = at("2026-01-01T00:00:00+00:00").to_utc();
    assert_eq!(
        expiries,
        [
            ("2025-12-31".to_string(), london_midnight),
            ("2025-12-31".to_string(), london_midnight)
        ]
    );
    let hong_kong = priced("HK-1", "2026-01-01T02:30:00+08:00");
    assert_eq!(hong_kong[0].expire_date.unwrap().to_string(), "2026-01-31");
    // A zone needs a group, and a zone that is one.
    let problem = |find: &str, replace: &str| match from_sources(&[Source {
        name: "z.toml".into(),
        text: text.replace(find, replace),
    }]) {
        Err(LoadError::Invalid { problems }) => problems[0].to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        problem("tokyo = \"+09:00\"", "osaka = \"+09:00\""),
        "z.toml:11:1: program.store_time_zones.osaka: \"osaka\" is not in program.store_groups"
    );
    assert!(
        problem("\"Europe/London\"", "\"Europe/Gondor\"")
            .starts_with("z.toml:11:1: program.store_time_zones.london: must be an offset"),
        "{}",
        problem("\"Europe/London\"", "\"Europe/Gondor\"")
    );
}

#[test]
fn campaigns_are_tried_by_priority_then_code_from_any_number_of_files() {
    // 3,000 campaigns over 5 files, priorities and codes in a scrambled order (some priorities
    // shared, so the code decides), and ordered as a plain sort of (priority desc, code) would.
    let mut sources = vec![Source {
        name: "program.toml".into(),
        text: PROGRAM.into(),
    }];
    let mut expected: Vec<(i64, String)> = Vec::new();
    for file in 0..5 {
        let mut text = String::new();
        for k in 0..600 {
            let n = (file * 600 + k) * 7_919 % 3_000;
            let (priority, code) = ((n % 37) as i64 - 18, format!("C{n:04}"));
            text += &format!(
                "[[campaign]]\ncode = \"{code}\"\npriority = {priority}\n\
                 starts_at = \"2026-01-01T00:00:00+08:00\"\n\
                 ends_at = \"2027-01-01T00:00:00+08:00\"\nexpiry = \"QUARTER\"\n\
                 award = {{ fixed = 1 }}\n\n"
            );
            expected.push((priority, code));
        }
        sources.push(Source {
            name: format!("campaigns-{file}.toml"),
            text,
        });
    }
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let ruleset = from_sources(&sources).unwrap();
    let got: Vec<(i64, String)> = ruleset
        .campaigns
        .iter()
        .map(|c| (c.priority, c.code.as_str().to_string()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn problems_of_campaigns_compiled_on_several_threads_come_in_file_order() {
    // 2,100 campaigns (three chunks of work), three of them with a zero fixed award: each is
    // reported at its own line, in the order they are written.
    let bad = [5, 1_500, 2_099];
    let mut text = String::new();
    for n in 0..2_100 {
        let points = if bad.contains(&n) { 0 } else { 1 };
        text += &format!(
            "[[campaign]]\ncode = \"C{n:04}\"\nstarts_at = \"2026-01-01T00:00:00+08:00\"\n\
             ends_at = \"2027-01-01T00:00:00+08:00\"\nexpiry = \"QUARTER\"\n\
             award = {{ fixed = {points} }}\n\n"
        );
    }
    let error = from_sources(&[
        Source {
            name: "program.toml".into(),
            text: PROGRAM.into(),
        },
        Source {
            name: "campaigns.toml".into(),
            text,
        },
    ])
    .unwrap_err();
    let LoadError::Invalid { problems } = error else {
        panic!("{error}")
    };
    // Each campaign takes 7 lines; its award is the sixth.
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, bad.map(|n| n * 7 + 6), "{problems:?}");
}

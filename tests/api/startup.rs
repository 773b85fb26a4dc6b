use crate::helpers::*;
use point_engine::startup::Application;

fn a_broken_rule_file_stops_start_up_with_file_line_and_reason() {
    let broken = r#"[program]
name = "Broken"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }

[[campaign]]
code = "BACKWARDS"
starts_at = "2023-04-01T00:00:00+08:00"
ends_at = "2023-01-01T00:00:00+08:00"
expiry = "QUARTER"
award = { fixed = 5 }
"#;
    let rules = rules_dir(&[("program.toml", broken)]);
    let db = TestDb::new();
    let settings = test_settings(rules.path(), &db);
    let error = actix_web::rt::System::new()
        .block_on(async { Application::build(&settings).err().expect("start-up fails") })
        .to_string();
    let file = rules.path().join("program.toml").display().to_string();
    assert_eq!(
        error,
        format!(
            "the rules do not load:\n{file}:10:1: campaign \"BACKWARDS\": ends_at 2023-01-01 00:00:00 +08:00 is not after starts_at 2023-04-01 00:00:00 +08:00"
        )
    );
}

on_both_backends!(a_broken_rule_file_stops_start_up_with_file_line_and_reason,);

//! Reading loosely typed JSON fields: store systems send numbers as strings and the reverse,
//! so each reader accepts every form a contract shows and names the field when it refuses.

use serde_json::Value;
use std::fmt;

/// A field that is missing or holds a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}

pub type FieldResult<T> = Result<T, FieldError>;

fn error(field: &'static str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: problem.into(),
    }
}

/// How far ahead of the server's clock a time a client sends may be (its clock may run a little
/// fast): the same rule on every contract.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: chrono::DateTime<chrono::Utc>,
    pub skew_s_max: u32,
}

impl Clock {
    /// `Some(problem)` when `at` is later than now plus the allowed skew.
    pub fn future(&self, at: chrono::DateTime<chrono::FixedOffset>) -> Option<String> {
        let latest = self.now + chrono::Duration::seconds(i64::from(self.skew_s_max));
        (at.to_utc() > latest).then(|| {
            format!(
                "{} is in the future (more than {} s ahead of the server's clock)",
                at.to_rfc3339(),
                self.skew_s_max
            )
        })
    }
}

/// Attaches the field's name to a domain parser's error.
pub fn parsed<T>(field: &'static str, result: Result<T, String>) -> FieldResult<T> {
    result.map_err(|problem| error(field, problem))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text of a string field; integers are taken as their digits (an id typed as a number).
fn text(field: &'static str, value: &Value) -> FieldResult<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(error(
            field,
            format!("must be a string, got {}", describe(other)),
        )),
    }
}

pub fn required_text(field: &'static str, value: &Option<Value>) -> FieldResult<String> {
    match value {
        None | Some(Value::Null) => Err(error(field, "is required")),
        Some(v) => text(field, v),
    }
}

/// An optional string field: missing or null is `None`.
pub fn optional_text(field: &'static str, value: &Option<Value>) -> FieldResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text(field, v).map(Some),
    }
}

/// The decimal text of an amount sent as a string (`"1000.00"`) or a JSON number (`1000.00`).
pub fn required_decimal_text(field: &'static str, value: &Option<Value>) -> FieldResult<String> {
    match value {
        None | Some(Value::Null) => Err(error(field, "is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(error(
            field,
            format!("must be a decimal amount, got {}", describe(other)),
        )),
    }
}

/// Whole-number text sent as an integer (`250`) or a numeric string (`"250"`); missing or
/// null is `None`.
pub fn optional_integer_text(
    field: &'static str,
    value: &Option<Value>,
) -> FieldResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(error(
            field,
            format!("must be a whole number, got {}", describe(other)),
        )),
    }
}

/// A list of strings; missing or null is empty. At most `len_max` items.
pub fn optional_text_list(
    field: &'static str,
    value: &Option<Value>,
    len_max: usize,
) -> FieldResult<Vec<String>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > len_max {
                return Err(error(
                    field,
                    format!("must have at most {len_max} items, got {}", items.len()),
                ));
            }
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(error(
                        field,
                        format!("must hold only strings, got {}", describe(other)),
                    )),
                })
                .collect()
        }
        Some(other) => Err(error(
            field,
            format!("must be an array of strings, got {}", describe(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_text_forms() {
        assert_eq!(required_text("f", &Some(json!("a"))).unwrap(), "a");
        assert_eq!(required_text("f", &Some(json!(123456))).unwrap(), "123456");
        assert_eq!(
            required_text("f", &None).unwrap_err().to_string(),
            "f is required"
        );
        assert_eq!(
            required_text("f", &Some(Value::Null))
                .unwrap_err()
                .to_string(),
            "f is required"
        );
        assert_eq!(
            required_text("f", &Some(json!(1.5)))
                .unwrap_err()
                .to_string(),
            "f must be a string, got a number"
        );
        assert_eq!(
            required_text("f", &Some(json!(["a"])))
                .unwrap_err()
                .to_string(),
            "f must be a string, got an array"
        );
    }

    #[test]
    fn decimal_forms() {
        assert_eq!(
            required_decimal_text("f", &Some(json!("1000.00"))).unwrap(),
            "1000.00"
        );
        assert_eq!(
            required_decimal_text("f", &Some(json!(14.1))).unwrap(),
            "14.1"
        );
        assert_eq!(
            required_decimal_text("f", &Some(json!(1000))).unwrap(),
            "1000"
        );
        assert!(required_decimal_text("f", &Some(json!(true))).is_err());
        assert!(required_decimal_text("f", &None).is_err());
    }

    #[test]
    fn integer_forms() {
        assert_eq!(
            optional_integer_text("f", &Some(json!("0")))
                .unwrap()
                .as_deref(),
            Some("0")
        );
        assert_eq!(
            optional_integer_text("f", &Some(json!(250)))
                .unwrap()
                .as_deref(),
            Some("250")
        );
        assert_eq!(optional_integer_text("f", &None).unwrap(), None);
        assert!(optional_integer_text("f", &Some(json!({}))).is_err());
    }

    #[test]
    fn list_forms() {
        assert_eq!(
            optional_text_list("f", &Some(json!(["a", "b"])), 5).unwrap(),
            vec!["a", "b"]
        );
        assert!(optional_text_list("f", &None, 5).unwrap().is_empty());
        assert_eq!(
            optional_text_list("f", &Some(json!(["a", 1])), 5)
                .unwrap_err()
                .to_string(),
            "f must hold only strings, got a number"
        );
        assert_eq!(
            optional_text_list("f", &Some(json!("a")), 5)
                .unwrap_err()
                .to_string(),
            "f must be an array of strings, got a string"
        );
        assert!(optional_text_list("f", &Some(json!(["a", "b"])), 1).is_err());
    }
}

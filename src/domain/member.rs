//! Who a member is to the systems that call us: identities that lead to one member and one
//! balance, and the profile fields they send.

use super::VipAccountNo;

/// The kinds of identity a member can be known by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// The native contract's `vip_accountno`.
    Vip,
    WeixinOpenid,
    MobilePhone,
    /// A discount-card `out_card_code`.
    CardCode,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vip => "vip",
            Self::WeixinOpenid => "weixin_openid",
            Self::MobilePhone => "mobile_phone",
            Self::CardCode => "card_code",
        }
    }

    /// The kind of an identity linked to a member, by name (`mobile_phone`, `weixin_openid`,
    /// `card_code`). The account number (`vip`) is not linked: a member has one.
    pub fn linkable(name: &str) -> Result<Self, String> {
        match name {
            "mobile_phone" => Ok(Self::MobilePhone),
            "weixin_openid" => Ok(Self::WeixinOpenid),
            "card_code" => Ok(Self::CardCode),
            "vip" => Err("vip is the member's account number: it is not linked".into()),
            other => Err(format!(
                "must be mobile_phone, weixin_openid or card_code, got {other:?}"
            )),
        }
    }

    /// The prefix of the account number a member first seen through this identity gets.
    fn account_prefix(self) -> &'static str {
        match self {
            Self::Vip => "",
            Self::WeixinOpenid => "WX:",
            Self::MobilePhone => "TEL:",
            Self::CardCode => "CARD:",
        }
    }
}

/// One identity: a kind and a value (trimmed, 1 to `LEN_MAX` printable characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub kind: IdentityKind,
    value: String,
}

impl Identity {
    pub const LEN_MAX: usize = 58;

    pub fn new(kind: IdentityKind, raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        if value.chars().count() > Self::LEN_MAX {
            return Err(format!("must be at most {} characters", Self::LEN_MAX));
        }
        if value.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self {
            kind,
            value: value.to_string(),
        })
    }

    /// An identity to link to a member. A phone is 7 to 15 digits with an optional leading `+`.
    pub fn linkable(kind: IdentityKind, raw: &str) -> Result<Self, String> {
        let identity = Self::new(kind, raw)?;
        if kind == IdentityKind::MobilePhone && Self::customer(raw)?.kind != kind {
            return Err("a phone number must be 7 to 15 digits, with an optional leading +".into());
        }
        Ok(identity)
    }

    /// A POS `customer_identifier`: "such as a WeChat openid", or a phone number. Digits only
    /// (7 to 15, an optional leading +) are a phone; anything else an openid.
    pub fn customer(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        let digits = value.strip_prefix('+').unwrap_or(value);
        let phone = (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit());
        let kind = if phone {
            IdentityKind::MobilePhone
        } else {
            IdentityKind::WeixinOpenid
        };
        Self::new(kind, value)
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// The account number of a member first seen through this identity.
    pub fn account_number(&self) -> VipAccountNo {
        VipAccountNo::parse(&format!("{}{}", self.kind.account_prefix(), self.value))
            .expect("a bounded identity makes a valid account number")
    }

    /// The identity an account number written as one names (`WX:…`, `TEL:…`, `CARD:…`), if
    /// it is written so: a member can be looked up by any of its identities that way.
    pub fn from_account_number(vip: &VipAccountNo) -> Option<Self> {
        [
            IdentityKind::WeixinOpenid,
            IdentityKind::MobilePhone,
            IdentityKind::CardCode,
        ]
        .into_iter()
        .find_map(|kind| {
            let value = vip.as_str().strip_prefix(kind.account_prefix())?;
            Self::new(kind, value).ok()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
    Unknown,
}

impl Gender {
    /// "male"/"female" (any case), or the number forms 1 (male), 2 (female), 0 (unknown).
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "male" | "m" | "1" => Ok(Self::Male),
            "female" | "f" | "2" => Ok(Self::Female),
            "unknown" | "0" | "" => Ok(Self::Unknown),
            other => Err(format!(
                "must be \"male\", \"female\", 1 or 2, got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Male => "male",
            Self::Female => "female",
            Self::Unknown => "unknown",
        }
    }
}

/// Profile fields as they arrive; `None` leaves a stored value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub nick_name: Option<String>,
    pub gender: Option<Gender>,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
}

impl Profile {
    pub const FIELD_LEN_MAX: usize = 128;

    /// A profile text field: trimmed, at most `FIELD_LEN_MAX` characters, no control
    /// characters; empty is `None`.
    pub fn field(raw: &str) -> Result<Option<String>, String> {
        let value = raw.trim();
        if value.chars().count() > Self::FIELD_LEN_MAX {
            return Err(format!(
                "must be at most {} characters",
                Self::FIELD_LEN_MAX
            ));
        }
        if value.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok((!value.is_empty()).then(|| value.to_string()))
    }
}

/// A member's birthday: a month and day, with the year when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Birthday {
    pub year: Option<i32>,
    pub month: u32,
    pub day: u32,
}

impl Birthday {
    /// "YYYY-MM-DD" (a real date, not in the future of year 9999) or "MM-DD" (29 February
    /// allowed).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        let bad = || format!("must be a date such as \"1990-12-05\" or \"12-05\", got {raw:?}");
        let parts: Vec<&str> = text.split('-').collect();
        let number = |part: &str, digits: usize| -> Option<u32> {
            (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        let (year, month, day) = match parts.as_slice() {
            [y, m, d] => (
                Some(number(y, 4).ok_or_else(bad)? as i32),
                number(m, 2),
                number(d, 2),
            ),
            [m, d] => (None, number(m, 2), number(d, 2)),
            _ => return Err(bad()),
        };
        let (month, day) = (month.ok_or_else(bad)?, day.ok_or_else(bad)?);
        // Any year for a date with one; a leap year for 29 February without.
        let exists = chrono::NaiveDate::from_ymd_opt(year.unwrap_or(2000), month, day).is_some();
        if !exists || year.is_some_and(|y| y < 1900) {
            return Err(bad());
        }
        Ok(Self { year, month, day })
    }

    pub fn text(&self) -> String {
        match self.year {
            Some(year) => format!("{year:04}-{:02}-{:02}", self.month, self.day),
            None => format!("{:02}-{:02}", self.month, self.day),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_identity_names_a_kind_that_can_be_linked() {
        for (name, kind) in [
            ("mobile_phone", IdentityKind::MobilePhone),
            ("weixin_openid", IdentityKind::WeixinOpenid),
            ("card_code", IdentityKind::CardCode),
        ] {
            assert_eq!(IdentityKind::linkable(name), Ok(kind));
        }
        let card = Identity::linkable(IdentityKind::CardCode, " 6e83 ").unwrap();
        assert_eq!((card.kind, card.value()), (IdentityKind::CardCode, "6e83"));
        assert!(Identity::linkable(IdentityKind::MobilePhone, "+85291234567").is_ok());
    }

    #[test]
    fn a_linked_identity_refuses_the_account_number() {
        assert_eq!(
            IdentityKind::linkable("vip").unwrap_err(),
            "vip is the member's account number: it is not linked"
        );
    }

    #[test]
    fn a_linked_identity_refuses_an_unknown_kind() {
        assert_eq!(
            IdentityKind::linkable("email").unwrap_err(),
            "must be mobile_phone, weixin_openid or card_code, got \"email\""
        );
    }

    #[test]
    fn a_linked_phone_must_be_digits() {
        for bad in ["12345", "phone", "+1 555 0100", "1234567890123456"] {
            assert_eq!(
                Identity::linkable(IdentityKind::MobilePhone, bad).unwrap_err(),
                "a phone number must be 7 to 15 digits, with an optional leading +",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_linked_identity_is_bounded_and_printable() {
        assert_eq!(
            Identity::linkable(IdentityKind::CardCode, " ").unwrap_err(),
            "must not be empty"
        );
        assert_eq!(
            Identity::linkable(IdentityKind::CardCode, &"c".repeat(59)).unwrap_err(),
            "must be at most 58 characters"
        );
        assert_eq!(
            Identity::linkable(IdentityKind::CardCode, "a\u{0}b").unwrap_err(),
            "must not contain control characters"
        );
    }

    #[test]
    fn identities() {
        assert_eq!(
            Identity::customer("13592619028").unwrap().kind,
            IdentityKind::MobilePhone
        );
        assert_eq!(
            Identity::customer("+85291234567").unwrap().kind,
            IdentityKind::MobilePhone
        );
        assert_eq!(
            Identity::customer("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
                .unwrap()
                .kind,
            IdentityKind::WeixinOpenid
        );
        assert!(Identity::customer("  ").is_err());
        assert!(Identity::new(IdentityKind::CardCode, &"x".repeat(59)).is_err());
        assert_eq!(
            Identity::new(IdentityKind::MobilePhone, "13333333333")
                .unwrap()
                .account_number()
                .as_str(),
            "TEL:13333333333"
        );
    }

    #[test]
    fn genders() {
        assert_eq!(Gender::parse("Male").unwrap(), Gender::Male);
        assert_eq!(Gender::parse("2").unwrap(), Gender::Female);
        assert_eq!(Gender::parse("0").unwrap(), Gender::Unknown);
        assert!(Gender::parse("3").is_err());
    }

    #[test]
    fn profile_fields() {
        assert_eq!(Profile::field(" 中国").unwrap(), Some("中国".to_string()));
        assert_eq!(Profile::field("").unwrap(), None);
        assert!(Profile::field(&"x".repeat(129)).is_err());
    }

    #[test]
    fn a_birthday_is_a_date_with_or_without_its_year() {
        use super::Birthday;
        let ok = |raw: &str| Birthday::parse(raw).unwrap().text();
        assert_eq!(ok("1990-12-05"), "1990-12-05");
        assert_eq!(ok(" 12-05 "), "12-05");
        assert_eq!(ok("02-29"), "02-29");
        assert_eq!(Birthday::parse("1990-12-05").unwrap().month, 12);
        for bad in [
            "",
            "1990-02-29",
            "13-01",
            "00-10",
            "12-32",
            "1990/12/05",
            "90-12-05",
            "12-5",
            "1850-01-01",
            "1990-12-05-01",
            "１２-０５",
        ] {
            assert!(Birthday::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! The systems allowed to call the adapters, and their credentials: a TOML file of its own
//! (`--clients`), outside the rule files. Secrets are stored as SHA-256 hex digests and
//! compared in constant time.
//!
//! ```toml
//! [[api_key]]                 # the native API, /v1/point-engine/*: Authorization: Bearer KEY
//! name = "DP01-tills"         # in the access log, never the key
//! key_sha256 = "…64 hex…"     # `point-engine keys create --name DP01-tills --scope store`
//! scopes = ["store"]          # store, marketer, finance, admin
//!
//! [[pos_client]]              # POST /tp/services/transaction, Authorization: bearer TOKEN
//! name = "Demo POS"
//! token_sha256 = "…64 hex…"  # echo -n TOKEN | sha256sum
//! store_code = "POS-001"      # the store its trades belong to
//!
//! [[cblink_app]]              # POST /openapi/trade, App-Id and App-Secret headers
//! app_id = "cb17333123"
//! secret_sha256 = "…64 hex…"
//! store_prefix = "CB-"        # shop_id 20 → store CB-20
//!
//! [[discount_card_merchant]]  # POST /v3/discount-card/…, WECHATPAY2-SHA256-RSA2048 signatures
//! mchid = "1900000001"
//! serial_no = "…"             # the certificate serial its requests name
//! public_key_pem = "-----BEGIN PUBLIC KEY-----…"
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use validator::{Validate, ValidationError, ValidationErrors};

/// Order statuses that earn points by default (paid, or further along).
pub const CBLINK_EARNING_STATUSES: [&str; 4] = [
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_BUYER_SIGNED",
    "WAIT_USE",
];
/// Order statuses that take points back by default (closed or refunded after payment).
pub const CBLINK_REVERSING_STATUSES: [&str; 4] = [
    "TRADE_BUYER_REFUND",
    "TRADE_CLOSED",
    "TRADE_CLOSED_BY_USER",
    "TRADE_INVALID",
];

/// What a native API key may do. Each endpoint names the scopes it takes; `admin` takes all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The tills: trade-create, trade-refund, trade-simulate, member balance.
    Store,
    /// The people who write rules: the rules status and trade-simulate.
    Marketer,
    /// Finance: reports, member history, trades, the audit.
    Finance,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Store, Scope::Marketer, Scope::Finance, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Store => "store",
            Scope::Marketer => "marketer",
            Scope::Finance => "finance",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                format!("unknown scope {text:?}: one of store, marketer, finance, admin")
            })
    }
}

/// A key of the native API. Only the SHA-256 of the key is kept.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Who holds it, as the access log names the caller.
    pub name: String,
    key_sha256: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl ApiKey {
    /// Whether this key may call an endpoint that takes any of `allowed`.
    pub fn may(&self, allowed: &[Scope]) -> bool {
        self.scopes
            .iter()
            .any(|s| *s == Scope::Admin || allowed.contains(s))
    }
}

/// The longest name of a key or client, in characters.
pub const NAME_CHARS_MAX: u64 = 64;

/// A new key of the native API: `pe_` and 32 random bytes (base64url), and the lines of the
/// clients file that admit it.
pub fn new_api_key(name: &str, scopes: &[Scope]) -> Result<(String, String), String> {
    RawApiKey {
        name: name.to_string(),
        key_sha256: String::new(),
        scopes: scopes.to_vec(),
    }
    .validate()
    .map_err(|e| refused("api_key", name, &e))?;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no random bytes: {e}"))?;
    let key = format!(
        "pe_{}",
        <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&bytes)
    );
    let mut unique = Vec::new();
    for scope in scopes {
        if !unique.contains(scope) {
            unique.push(*scope);
        }
    }
    let scopes: Vec<String> = unique.iter().map(|s| format!("{:?}", s.name())).collect();
    let lines = format!(
        "[[api_key]]\nname = {}\nkey_sha256 = \"{}\"\nscopes = [{}]\n",
        toml_string(name),
        hex(&sha256(&key)),
        scopes.join(", ")
    );
    Ok((key, lines))
}

fn toml_string(text: &str) -> String {
    // A basic TOML string: JSON's escapes are TOML's for the characters a name may hold.
    serde_json::to_string(text).expect("a string serializes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name as a log line may show it: not blank, no control characters.
fn printable(name: &str) -> Result<(), ValidationError> {
    match name.trim().is_empty() || name.chars().any(char::is_control) {
        true => Err(ValidationError::new("printable")
            .with_message("must not be blank or hold control characters".into())),
        false => Ok(()),
    }
}

/// What is wrong with an entry of the clients file, field by field.
fn refused(section: &str, name: &str, errors: &ValidationErrors) -> String {
    let mut problems: Vec<String> = errors
        .field_errors()
        .iter()
        .flat_map(|(field, errors)| {
            errors.iter().map(move |e| {
                let why = e.message.as_deref().unwrap_or("is not valid");
                format!("{field} {why}")
            })
        })
        .collect();
    problems.sort();
    format!("{section} {name:?}: {}", problems.join("; "))
}

#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// Keys of the native API.
    pub api_keys: Vec<ApiKey>,
    pub pos: Vec<PosClient>,
    pub cblink: Vec<CblinkApp>,
    pub discount_card: Vec<CardMerchant>,
}

/// A merchant of the discount-card contract and the public key its requests are signed with.
#[derive(Debug, Clone)]
pub struct CardMerchant {
    pub mchid: String,
    pub serial_no: String,
    pub public_key: rsa::RsaPublicKey,
}

#[derive(Debug, Clone)]
pub struct PosClient {
    pub name: String,
    /// The client's name as it scopes the client's transaction ids (`TS-<key>-<transaction_id>`):
    /// letters, digits, `.`, `_` and `-`, every other character as `_`. Unique per file.
    pub key: String,
    token_sha256: [u8; 32],
    pub store_code: String,
}

#[derive(Debug, Clone)]
pub struct CblinkApp {
    pub app_id: String,
    secret_sha256: [u8; 32],
    pub store_prefix: String,
    pub earning_statuses: Vec<String>,
    pub reversing_statuses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClients {
    #[serde(default)]
    api_key: Vec<RawApiKey>,
    #[serde(default)]
    pos_client: Vec<RawPosClient>,
    #[serde(default)]
    cblink_app: Vec<RawCblinkApp>,
    #[serde(default)]
    discount_card_merchant: Vec<RawCardMerchant>,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    #[validate(
        length(min = 1, max = NAME_CHARS_MAX, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    name: String,
    key_sha256: String,
    #[validate(length(min = 1, message = "must name at least one scope"))]
    scopes: Vec<Scope>,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct RawCardMerchant {
    #[validate(
        length(min = 1, max = 32, message = "must be 1 to 32 characters"),
        custom(function = "printable")
    )]
    mchid: String,
    #[validate(
        length(min = 1, max = 64, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    serial_no: String,
    public_key_pem: String,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct RawPosClient {
    #[validate(
        length(min = 1, max = NAME_CHARS_MAX, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    name: String,
    token_sha256: String,
    #[validate(
        length(min = 1, max = 32, message = "must be 1 to 32 characters"),
        custom(function = "printable")
    )]
    store_code: String,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct RawCblinkApp {
    #[validate(
        length(min = 1, max = NAME_CHARS_MAX, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    app_id: String,
    secret_sha256: String,
    #[serde(default = "default_prefix")]
    #[validate(length(max = 16, message = "must be at most 16 characters"))]
    store_prefix: String,
    earning_statuses: Option<Vec<String>>,
    reversing_statuses: Option<Vec<String>>,
}

fn default_prefix() -> String {
    "CB-".to_string()
}

fn digest_of_hex(what: &str, hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{what}: must be 64 hex digits (a SHA-256)"));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal digests, compared in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

impl Clients {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawClients = toml::from_str(text).map_err(|e| e.to_string())?;
        let api_keys = raw
            .api_key
            .into_iter()
            .map(|k| {
                k.validate().map_err(|e| refused("api_key", &k.name, &e))?;
                Ok(ApiKey {
                    key_sha256: digest_of_hex(&format!("api_key {}", k.name), &k.key_sha256)?,
                    name: k.name,
                    scopes: k.scopes,
                })
            })
            .collect::<Result<Vec<ApiKey>, String>>()?;
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = api_keys.iter().find(|k| !names.insert(k.name.as_str())) {
            return Err(format!("api_key {:?} is listed twice", twice.name));
        }
        let mut digests = std::collections::HashSet::new();
        if let Some(twice) = api_keys.iter().find(|k| !digests.insert(k.key_sha256)) {
            return Err(format!(
                "api_key {:?}: another api_key has the same key_sha256",
                twice.name
            ));
        }
        let pos = raw
            .pos_client
            .into_iter()
            .map(|c| {
                c.validate()
                    .map_err(|e| refused("pos_client", &c.name, &e))?;
                Ok(PosClient {
                    token_sha256: digest_of_hex(
                        &format!("pos_client {}", c.name),
                        &c.token_sha256,
                    )?,
                    key: c
                        .name
                        .chars()
                        .map(|ch| match ch {
                            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => ch,
                            _ => '_',
                        })
                        .collect(),
                    name: c.name,
                    store_code: c.store_code,
                })
            })
            .collect::<Result<Vec<PosClient>, String>>()?;
        // Each client's ids are its own: two clients must not share a scope.
        let mut keys = std::collections::HashSet::new();
        if let Some(twice) = pos.iter().find(|c| !keys.insert(c.key.as_str())) {
            return Err(format!(
                "pos_client {:?}: another POS client's name scopes transaction ids as {:?} too",
                twice.name, twice.key
            ));
        }
        let cblink = raw
            .cblink_app
            .into_iter()
            .map(|a| {
                a.validate()
                    .map_err(|e| refused("cblink_app", &a.app_id, &e))?;
                Ok(CblinkApp {
                    secret_sha256: digest_of_hex(
                        &format!("cblink_app {}", a.app_id),
                        &a.secret_sha256,
                    )?,
                    app_id: a.app_id,
                    store_prefix: a.store_prefix,
                    earning_statuses: a
                        .earning_statuses
                        .unwrap_or_else(|| CBLINK_EARNING_STATUSES.map(String::from).to_vec()),
                    reversing_statuses: a
                        .reversing_statuses
                        .unwrap_or_else(|| CBLINK_REVERSING_STATUSES.map(String::from).to_vec()),
                })
            })
            .collect::<Result<Vec<CblinkApp>, String>>()?;
        let mut app_ids = std::collections::HashSet::new();
        if let Some(twice) = cblink.iter().find(|a| !app_ids.insert(a.app_id.as_str())) {
            return Err(format!("cblink_app {:?} is listed twice", twice.app_id));
        }
        let discount_card = raw
            .discount_card_merchant
            .into_iter()
            .map(|m| {
                m.validate()
                    .map_err(|e| refused("discount_card_merchant", &m.mchid, &e))?;
                use rsa::pkcs8::DecodePublicKey;
                let public_key = rsa::RsaPublicKey::from_public_key_pem(m.public_key_pem.trim())
                    .map_err(|e| {
                        format!("discount_card_merchant {}: public_key_pem: {e}", m.mchid)
                    })?;
                Ok(CardMerchant {
                    mchid: m.mchid,
                    serial_no: m.serial_no,
                    public_key,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            api_keys,
            pos,
            cblink,
            discount_card,
        })
    }

    /// The discount-card merchant with this id and certificate serial.
    /// The merchant key for this `mchid` and certificate serial. Serials are hexadecimal and
    /// SDKs write them in either case (`wechatpay-node-v3` in lower case): compared ignoring
    /// case.
    pub fn card_merchant(&self, mchid: &str, serial_no: &str) -> Option<&CardMerchant> {
        self.discount_card
            .iter()
            .find(|m| m.mchid == mchid && m.serial_no.eq_ignore_ascii_case(serial_no))
    }

    /// The native API key this is.
    pub fn api_key(&self, presented: &str) -> Option<&ApiKey> {
        let digest = sha256(presented);
        // Every key is compared, so the time taken does not say which one matched.
        let mut found = None;
        for key in &self.api_keys {
            if same(&key.key_sha256, &digest) {
                found = Some(key);
            }
        }
        found
    }

    /// The POS client whose token this is.
    pub fn pos_client(&self, token: &str) -> Option<&PosClient> {
        let digest = sha256(token);
        // Every client is compared, so the time taken does not say which one matched.
        let mut found = None;
        for client in &self.pos {
            if same(&client.token_sha256, &digest) {
                found = Some(client);
            }
        }
        found
    }

    /// The cblink app with this id, if the secret is its secret.
    pub fn cblink_app(&self, app_id: &str, secret: &str) -> Option<&CblinkApp> {
        let digest = sha256(secret);
        let app = self.cblink.iter().find(|a| a.app_id == app_id)?;
        same(&app.secret_sha256, &digest).then_some(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(secret: &str) -> String {
        super::hex(&sha256(secret))
    }

    #[test]
    fn a_new_key_is_admitted_by_the_lines_printed_with_it() {
        let (key, lines) = new_api_key("DP01 \"tills\"", &[Scope::Store, Scope::Store]).unwrap();
        assert!(key.starts_with("pe_") && key.len() == 46, "{key}");
        let clients = Clients::parse(&lines).unwrap();
        let found = clients.api_key(&key).unwrap();
        assert_eq!(found.name, "DP01 \"tills\"");
        assert_eq!(found.scopes, vec![Scope::Store]);
        assert!(clients.api_key("pe_other").is_none());
        let (other, _) = new_api_key("x", &[Scope::Admin]).unwrap();
        assert_ne!(key, other);
    }

    #[test]
    fn keys_do_what_their_scopes_say() {
        let key = |scopes: Vec<Scope>| ApiKey {
            name: "k".into(),
            key_sha256: [0; 32],
            scopes,
        };
        assert!(key(vec![Scope::Store]).may(&[Scope::Store, Scope::Marketer]));
        assert!(!key(vec![Scope::Store]).may(&[Scope::Finance]));
        assert!(key(vec![Scope::Admin]).may(&[Scope::Finance]));
        assert!(key(vec![Scope::Finance, Scope::Marketer]).may(&[Scope::Marketer]));
    }

    #[test]
    fn bad_key_entries_are_refused() {
        let entry = |name: &str, digest: &str, scopes: &str| {
            format!(
                "[[api_key]]\nname = \"{name}\"\nkey_sha256 = \"{digest}\"\nscopes = {scopes}\n"
            )
        };
        let digest = hex("k");
        for (text, error) in [
            (
                entry("", &digest, "[\"store\"]"),
                "api_key \"\": name must be 1 to 64 characters; name must not be blank or hold control characters",
            ),
            (
                entry(" ", &digest, "[\"store\"]"),
                "api_key \" \": name must not be blank or hold control characters",
            ),
            (
                entry(&"x".repeat(65), &digest, "[\"store\"]"),
                "name must be 1 to 64 characters",
            ),
            (
                entry("a", &digest, "[]"),
                "api_key \"a\": scopes must name at least one scope",
            ),
            (
                entry("a", "abc", "[\"store\"]"),
                "api_key a: must be 64 hex",
            ),
            (entry("a", &digest, "[\"root\"]"), "unknown variant `root`"),
            (
                entry("a", &digest, "[\"store\"]") + &entry("a", &hex("j"), "[\"store\"]"),
                "api_key \"a\" is listed twice",
            ),
            (
                entry("a", &digest, "[\"store\"]") + &entry("b", &digest, "[\"store\"]"),
                "api_key \"b\": another api_key has the same key_sha256",
            ),
        ] {
            let refused = Clients::parse(&text).unwrap_err();
            assert!(refused.contains(error), "{refused}");
        }
        assert!(new_api_key("a", &[]).is_err());
        assert!(new_api_key(&"x".repeat(65), &[Scope::Store]).is_err());
    }

    #[test]
    fn credentials_are_checked_against_their_digests() {
        let text = format!(
            "[[pos_client]]\nname = \"pos\"\ntoken_sha256 = \"{}\"\nstore_code = \"POS-1\"\n\
             [[cblink_app]]\napp_id = \"cb1\"\nsecret_sha256 = \"{}\"\n",
            hex("token-1"),
            hex("secret-1")
        );
        let clients = Clients::parse(&text).unwrap();
        assert_eq!(clients.pos_client("token-1").unwrap().store_code, "POS-1");
        assert!(clients.pos_client("token-2").is_none());
        assert!(clients.cblink_app("cb1", "secret-1").is_some());
        assert!(clients.cblink_app("cb1", "secret-2").is_none());
        assert!(clients.cblink_app("cb2", "secret-1").is_none());
        assert_eq!(clients.cblink[0].store_prefix, "CB-");
        assert!(Clients::parse(
            "[[pos_client]]\nname = \"x\"\ntoken_sha256 = \"abc\"\nstore_code = \"S\"\n"
        )
        .is_err());
    }

    #[test]
    fn the_shipped_example_loads() {
        let clients =
            Clients::parse(include_str!("../config/clients.example.toml")).expect("it parses");
        assert_eq!(clients.pos[0].key, "Demo_POS");
        assert!(clients.pos_client("pos-token").is_some());
    }

    #[test]
    fn each_client_scopes_its_ids_alone() {
        let pos = |name: &str, token: &str| {
            format!(
                "[[pos_client]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nstore_code = \"S\"\n",
                hex(token)
            )
        };
        let clients = Clients::parse(&pos("DP01 tills", "a")).unwrap();
        assert_eq!(clients.pos[0].key, "DP01_tills");
        assert_eq!(
            Clients::parse(&(pos("DP01 tills", "a") + &pos("DP01/tills", "b"))).unwrap_err(),
            "pos_client \"DP01/tills\": another POS client's name scopes transaction ids as \"DP01_tills\" too"
        );
        let app = format!(
            "[[cblink_app]]\napp_id = \"cb1\"\nsecret_sha256 = \"{}\"\n",
            hex("s")
        );
        assert_eq!(
            Clients::parse(&format!("{app}{app}")).unwrap_err(),
            "cblink_app \"cb1\" is listed twice"
        );
    }
}

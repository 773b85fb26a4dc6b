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
//! certificate_pem = "-----BEGIN CERTIFICATE-----…"   # its API certificate (key and serial), or:
//! # serial_no = "…"           # the certificate serial its requests name
//! # public_key_pem = "-----BEGIN PUBLIC KEY-----…"
//!
//! [wechatpay_platform]        # the key discount-card responses are signed with
//! public_key_id = "PUB_KEY_ID_…"     # Wechatpay-Serial: merchants' SDKs know the key by it
//! private_key_file = "platform_key.pem"   # PKCS#8 or PKCS#1 PEM, relative to this file
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// The tills: trade-create, trade-refund, trade-simulate, member balance, linking a member's
    /// identities.
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
    /// The key discount-card responses are signed with, as the WeChat Pay platform signs its
    /// own (merchants' SDKs verify every answer).
    pub wechatpay_platform: Option<Arc<WechatpayPlatform>>,
}

/// A merchant of the discount-card contract and the public key its requests are signed with.
#[derive(Debug, Clone)]
pub struct CardMerchant {
    pub mchid: String,
    pub serial_no: String,
    pub public_key: rsa::RsaPublicKey,
}

/// The smallest RSA key, in bits, of a `WECHATPAY2-SHA256-RSA2048` signature.
pub const RSA_KEY_BITS_MIN: usize = 2048;

/// The platform's side of the discount-card contract: point-engine answers in the WeChat Pay
/// platform's place, so it signs every answer as the platform does (`Wechatpay-Signature` over
/// `timestamp\nnonce\nbody\n`), with this key, named by `public_key_id` in `Wechatpay-Serial`.
#[derive(Clone)]
pub struct WechatpayPlatform {
    pub public_key_id: String,
    signing_key: rsa::pkcs1v15::SigningKey<Sha256>,
    /// The public key, for merchants to configure their SDKs with (`SubjectPublicKeyInfo` PEM).
    pub public_key_pem: String,
}

impl std::fmt::Debug for WechatpayPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatpayPlatform")
            .field("public_key_id", &self.public_key_id)
            .finish_non_exhaustive()
    }
}

impl WechatpayPlatform {
    /// Reads the private key (PKCS#8 or PKCS#1 PEM) from `private_key_file`.
    fn load(public_key_id: String, private_key_file: &Path) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let what = format!(
            "wechatpay_platform: private_key_file {}",
            private_key_file.display()
        );
        let pem = std::fs::read_to_string(private_key_file).map_err(|e| format!("{what}: {e}"))?;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem.trim())
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem.trim()))
            .map_err(|_| format!("{what}: not an RSA private key in PKCS#8 or PKCS#1 PEM"))?;
        if key.size() * 8 < RSA_KEY_BITS_MIN {
            return Err(format!(
                "{what}: the key has {} bits; WECHATPAY2-SHA256-RSA2048 needs at least {RSA_KEY_BITS_MIN}",
                key.size() * 8
            ));
        }
        let public_key_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(Self {
            public_key_id,
            signing_key: rsa::pkcs1v15::SigningKey::new(key),
            public_key_pem,
        })
    }

    /// The base64 RSA-SHA256 (PKCS#1 v1.5) signature of `message`, blinded with fresh
    /// randomness.
    pub fn sign(&self, message: &[u8]) -> String {
        use base64ct::Encoding;
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let signature = self
            .signing_key
            .sign_with_rng(&mut rsa::rand_core::OsRng, message);
        base64ct::Base64::encode_string(&signature.to_bytes())
    }
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
    wechatpay_platform: Option<RawWechatpayPlatform>,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct RawWechatpayPlatform {
    #[validate(
        length(min = 1, max = 64, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    public_key_id: String,
    /// Relative to the clients file's folder.
    private_key_file: PathBuf,
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
    /// Required with `public_key_pem`; with `certificate_pem`, read from the certificate (and
    /// if given, it must be the certificate's).
    #[validate(
        length(min = 1, max = 64, message = "must be 1 to 64 characters"),
        custom(function = "printable")
    )]
    serial_no: Option<String>,
    public_key_pem: Option<String>,
    certificate_pem: Option<String>,
}

impl RawCardMerchant {
    /// The serial requests name and the key they are signed with: from the certificate, or
    /// from the serial and public key given.
    fn serial_and_key(&self) -> Result<(String, rsa::RsaPublicKey), String> {
        use rsa::pkcs8::DecodePublicKey;
        let what = format!("discount_card_merchant {}", self.mchid);
        match (&self.public_key_pem, &self.certificate_pem, &self.serial_no) {
            (Some(pem), None, Some(serial)) => {
                let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim())
                    .map_err(|e| format!("{what}: public_key_pem: {e}"))?;
                Ok((serial.clone(), key))
            }
            (Some(_), None, None) => Err(format!(
                "{what}: serial_no is required with public_key_pem (or give certificate_pem)"
            )),
            (None, Some(pem), given) => {
                use x509_cert::der::{DecodePem, Encode};
                let certificate = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
                    .map_err(|e| format!("{what}: certificate_pem is not an X.509 PEM: {e}"))?;
                let tbs = &certificate.tbs_certificate;
                let serial = tbs
                    .serial_number
                    .as_bytes()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>();
                if let Some(given) = given.as_ref().filter(|g| !same_serial(g, &serial)) {
                    return Err(format!(
                        "{what}: serial_no {given} is not the certificate's serial {serial}"
                    ));
                }
                let key = tbs
                    .subject_public_key_info
                    .to_der()
                    .ok()
                    .and_then(|der| rsa::RsaPublicKey::from_public_key_der(&der).ok())
                    .ok_or_else(|| format!("{what}: the certificate's key is not an RSA key"))?;
                Ok((serial, key))
            }
            _ => Err(format!(
                "{what}: give either certificate_pem, or serial_no and public_key_pem"
            )),
        }
    }
}

/// Two certificate serials are one when they name the same number: hexadecimal, in either
/// case, with or without leading zeros (SDKs write them every way); other serials (a public key
/// id) must match exactly but for case.
fn same_serial(a: &str, b: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit());
    match hex(a) && hex(b) {
        true => a
            .trim_start_matches('0')
            .eq_ignore_ascii_case(b.trim_start_matches('0')),
        false => a.eq_ignore_ascii_case(b),
    }
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
    /// The clients file at `path`; files it names are found relative to its folder.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, folder).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A clients file's text; files it names are found relative to the working directory.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_in(text, Path::new("."))
    }

    /// A clients file's text; files it names are found relative to `folder`.
    pub fn parse_in(text: &str, folder: &Path) -> Result<Self, String> {
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
                let (serial_no, public_key) = m.serial_and_key()?;
                Ok(CardMerchant {
                    mchid: m.mchid,
                    serial_no,
                    public_key,
                })
            })
            .collect::<Result<Vec<CardMerchant>, String>>()?;
        let mut merchants = std::collections::HashSet::new();
        if let Some(twice) = discount_card
            .iter()
            .find(|m| !merchants.insert((m.mchid.as_str(), m.serial_no.to_ascii_uppercase())))
        {
            return Err(format!(
                "discount_card_merchant {} with serial_no {} is listed twice",
                twice.mchid, twice.serial_no
            ));
        }
        let wechatpay_platform = match raw.wechatpay_platform {
            None => None,
            Some(p) => {
                p.validate()
                    .map_err(|e| refused("wechatpay_platform", &p.public_key_id, &e))?;
                let file = folder.join(&p.private_key_file);
                Some(Arc::new(WechatpayPlatform::load(p.public_key_id, &file)?))
            }
        };
        Ok(Self {
            api_keys,
            pos,
            cblink,
            discount_card,
            wechatpay_platform,
        })
    }

    /// The merchant key for this `mchid` and certificate serial. Serials are hexadecimal and
    /// SDKs write them in either case (`wechatpay-node-v3` in lower case) and with or without
    /// leading zeros: compared as numbers.
    pub fn card_merchant(&self, mchid: &str, serial_no: &str) -> Option<&CardMerchant> {
        self.discount_card
            .iter()
            .find(|m| m.mchid == mchid && same_serial(&m.serial_no, serial_no))
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

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clients.example.toml")
    }

    #[test]
    fn the_shipped_example_loads() {
        let clients = Clients::load(&example_path()).expect("it loads");
        assert_eq!(clients.pos[0].key, "Demo_POS");
        assert!(clients.pos_client("pos-token").is_some());
        // The merchant registered by its certificate: serial and key read from it.
        let merchant = &clients.discount_card[0];
        assert_eq!(
            merchant.serial_no,
            "0157F09EFDC096DE15EBE81A47057A7232F1B8E1"
        );
        use rsa::pkcs8::DecodePublicKey;
        let published = rsa::RsaPublicKey::from_public_key_pem(include_str!(
            "../config/test-keys/merchant_public_key.pem"
        ))
        .unwrap();
        assert_eq!(merchant.public_key, published);
        assert!(clients.wechatpay_platform.is_some());
    }

    #[test]
    fn certificate_serials_match_in_any_case_with_or_without_leading_zeros() {
        let clients = Clients::load(&example_path()).unwrap();
        for serial in [
            "0157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            "157f09efdc096de15ebe81a47057a7232f1b8e1",
            "000157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        ] {
            assert!(
                clients.card_merchant("1900000002", serial).is_some(),
                "{serial}"
            );
        }
        for wrong in [
            "0157F09EFDC096DE15EBE81A47057A7232F1B8E2",
            "",
            "0",
            "1900000002",
        ] {
            assert!(
                clients.card_merchant("1900000002", wrong).is_none(),
                "{wrong}"
            );
        }
        assert!(clients
            .card_merchant("1900000001", "0157F09EFDC096DE15EBE81A47057A7232F1B8E1")
            .is_none());
        assert!(same_serial("PUB_KEY_ID_01AB", "pub_key_id_01ab"));
        assert!(!same_serial("PUB_KEY_ID_01AB", "PUB_KEY_ID_1AB"));
    }

    #[test]
    fn the_platform_signs_what_its_public_key_verifies() {
        let clients = Clients::load(&example_path()).unwrap();
        let platform = clients.wechatpay_platform.unwrap();
        assert_eq!(
            platform.public_key_id,
            "PUB_KEY_ID_0119000000022026120100000000000001"
        );
        let message = b"1700000000\nNONCE\n{\"code\":\"PARAM_ERROR\"}\n";
        let signature = platform.sign(message);
        use base64ct::Encoding;
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        let key = rsa::RsaPublicKey::from_public_key_pem(&platform.public_key_pem).unwrap();
        let signature = rsa::pkcs1v15::Signature::try_from(
            base64ct::Base64::decode_vec(&signature).unwrap().as_slice(),
        )
        .unwrap();
        let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key);
        assert!(verifier.verify(message, &signature).is_ok());
        assert!(verifier.verify(b"another body", &signature).is_err());
        // The key is never printed.
        assert!(!format!("{platform:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_merchant_needs_a_certificate_or_a_serial_and_key() {
        let cert = include_str!("../config/test-keys/merchant_cert.pem");
        let public = include_str!("../config/test-keys/merchant_public_key.pem");
        let merchant = |fields: &str| {
            Clients::parse(&format!(
                "[[discount_card_merchant]]\nmchid = \"1900000002\"\n{fields}"
            ))
        };
        let refused = |fields: &str| merchant(fields).unwrap_err();
        assert!(merchant(&format!("certificate_pem = \"\"\"\n{cert}\"\"\"\n")).is_ok());
        assert!(merchant(&format!(
            "serial_no = \"157f09efdc096de15ebe81a47057a7232f1b8e1\"\ncertificate_pem = \"\"\"\n{cert}\"\"\"\n"
        ))
        .is_ok());
        assert_eq!(
            refused(&format!(
                "serial_no = \"01\"\ncertificate_pem = \"\"\"\n{cert}\"\"\"\n"
            )),
            "discount_card_merchant 1900000002: serial_no 01 is not the certificate's serial \
             0157F09EFDC096DE15EBE81A47057A7232F1B8E1"
        );
        assert_eq!(
            refused(&format!("public_key_pem = \"\"\"\n{public}\"\"\"\n")),
            "discount_card_merchant 1900000002: serial_no is required with public_key_pem (or \
             give certificate_pem)"
        );
        assert_eq!(
            refused(""),
            "discount_card_merchant 1900000002: give either certificate_pem, or serial_no and \
             public_key_pem"
        );
        assert_eq!(
            refused(&format!(
                "serial_no = \"1\"\npublic_key_pem = \"\"\"\n{public}\"\"\"\ncertificate_pem = \"\"\"\n{cert}\"\"\"\n"
            )),
            "discount_card_merchant 1900000002: give either certificate_pem, or serial_no and \
             public_key_pem"
        );
        assert!(refused(
            "certificate_pem = \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\""
        )
        .starts_with("discount_card_merchant 1900000002: certificate_pem is not an X.509 PEM"));
        let twice = format!("certificate_pem = \"\"\"\n{cert}\"\"\"\n");
        assert_eq!(
            Clients::parse(&format!(
                "[[discount_card_merchant]]\nmchid = \"1\"\n{twice}\n[[discount_card_merchant]]\nmchid = \"1\"\n{twice}"
            ))
            .unwrap_err(),
            "discount_card_merchant 1 with serial_no 0157F09EFDC096DE15EBE81A47057A7232F1B8E1 is \
             listed twice"
        );
    }

    #[test]
    fn the_platform_key_must_be_there_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let platform = |file: &str| {
            Clients::parse_in(
                &format!("[wechatpay_platform]\npublic_key_id = \"PUB_KEY_ID_1\"\nprivate_key_file = \"{file}\"\n"),
                dir.path(),
            )
        };
        let missing = platform("nowhere.pem").unwrap_err();
        assert!(
            missing.starts_with("wechatpay_platform: private_key_file ")
                && missing.contains("nowhere.pem: "),
            "{missing}"
        );
        std::fs::write(dir.path().join("not-a-key.pem"), "hello").unwrap();
        assert!(platform("not-a-key.pem")
            .unwrap_err()
            .ends_with("not an RSA private key in PKCS#8 or PKCS#1 PEM"));
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let short = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        std::fs::write(
            dir.path().join("short.pem"),
            short.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        assert!(platform("short.pem")
            .unwrap_err()
            .ends_with("the key has 1024 bits; WECHATPAY2-SHA256-RSA2048 needs at least 2048"));
        // PKCS#1 is read as well as PKCS#8, relative to the clients file's folder.
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let pkcs1 = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!(
            "../config/test-keys/merchant_key.pem"
        ))
        .unwrap()
        .to_pkcs1_pem(LineEnding::LF)
        .unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        std::fs::write(dir.path().join("pkcs1.pem"), pkcs1.as_bytes()).unwrap();
        assert!(platform("pkcs1.pem").unwrap().wechatpay_platform.is_some());
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

//! The systems allowed to call the adapters, and their credentials: a TOML file of its own
//! (`--clients`), outside the rule files. Secrets are stored as SHA-256 hex digests and
//! compared in constant time.
//!
//! ```toml
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

#[derive(Debug, Clone, Default)]
pub struct Clients {
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
    pos_client: Vec<RawPosClient>,
    #[serde(default)]
    cblink_app: Vec<RawCblinkApp>,
    #[serde(default)]
    discount_card_merchant: Vec<RawCardMerchant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCardMerchant {
    mchid: String,
    serial_no: String,
    public_key_pem: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPosClient {
    name: String,
    token_sha256: String,
    store_code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCblinkApp {
    app_id: String,
    secret_sha256: String,
    #[serde(default = "default_prefix")]
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
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Clients {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawClients = toml::from_str(text).map_err(|e| e.to_string())?;
        let pos = raw
            .pos_client
            .into_iter()
            .map(|c| {
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
        sha256(secret).iter().map(|b| format!("{b:02x}")).collect()
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

//! Signs a discount-card request as a merchant's WeChat Pay SDK does, and prints the
//! `Authorization` header's value, for trying the endpoint with curl:
//!
//! ```sh
//! BODY=examples/requests/discount-card-records.json
//! URL=/v3/discount-card/cards/6e8369071cd942c0476613f9d1ce9ca3/add-user-records
//! AUTH=$(cargo run --release --example sign_discount_card -- --url $URL --body $BODY)
//! curl -s -w '%{http_code}\n' "localhost:8080$URL" -H "Authorization: $AUTH" \
//!   -H 'Content-Type: application/json' --data-binary @$BODY
//! ```
//!
//! The defaults are the published test merchant of `config/clients.example.toml`
//! (`config/test-keys/`): mchid 1900000002, its certificate's serial and private key. The
//! signature covers `POST\nURL\nTIMESTAMP\nNONCE\nBODY\n`, the body byte for byte (send it with
//! `--data-binary`, not `-d`, which drops line ends). Each run makes a new nonce.

use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

const USAGE: &str = "usage: sign_discount_card --url PATH --body FILE [--key PEM] [--mchid ID] [--serial HEX] [--method POST]";

fn main() {
    if let Err(problem) = run(std::env::args().skip(1).collect()) {
        eprintln!("sign_discount_card: {problem}\n{USAGE}");
        std::process::exit(2);
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut url = None;
    let mut body = None;
    let mut key = "config/test-keys/merchant_key.pem".to_string();
    let mut mchid = "1900000002".to_string();
    let mut serial = "0157F09EFDC096DE15EBE81A47057A7232F1B8E1".to_string();
    let mut method = "POST".to_string();
    let mut words = args.into_iter();
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => url = Some(value),
            "--body" => body = Some(value),
            "--key" => key = value,
            "--mchid" => mchid = value,
            "--serial" => serial = value,
            "--method" => method = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let url = url
        .ok_or("--url is required (the path, e.g. /v3/discount-card/cards/C1/add-user-records)")?;
    let body_file = body.ok_or("--body is required (the file curl sends)")?;
    let body = std::fs::read_to_string(&body_file).map_err(|e| format!("{body_file}: {e}"))?;
    let pem = std::fs::read_to_string(&key).map_err(|e| format!("{key}: {e}"))?;
    let private_key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .map_err(|e| format!("{key}: not a PKCS#8 RSA private key: {e}"))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random).map_err(|e| e.to_string())?;
    let nonce: String = random.iter().map(|b| format!("{b:02X}")).collect();
    let message = format!("{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n");
    let signature = SigningKey::<sha2::Sha256>::new(private_key).sign(message.as_bytes());
    use base64ct::Encoding;
    println!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{serial}\",signature=\"{}\"",
        base64ct::Base64::encode_string(&signature.to_vec())
    );
    Ok(())
}

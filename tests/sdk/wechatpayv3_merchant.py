"""A merchant's code, written with the wechatpayv3 SDK (PyPI), against point-engine's discount-card
endpoint: the SDK signs each request and verifies each answer's platform signature, as it does
against WeChat Pay. Run by .ci/wechatpay-sdk against the release server started with
config/clients.example.toml:

    python wechatpayv3_merchant.py http://127.0.0.1:PORT PLATFORM_PUBLIC_KEY.pem PUBLIC_KEY_ID
"""
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import requests
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.type import RequestType
from wechatpayv3.utils import build_authorization, load_private_key

base_url, public_key_file, public_key_id = sys.argv[1:4]
merchant_key = open("config/test-keys/merchant_key.pem").read()
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


# The merchant of config/clients.example.toml, registered there by its certificate; the SDK is
# given the serial as WeChat Pay's merchant platform shows it.
wxpay = WeChatPay(
    wechatpay_type=WeChatPayType.NATIVE,
    mchid="1900000002",
    private_key=merchant_key,
    cert_serial_no="0157F09EFDC096DE15EBE81A47057A7232F1B8E1",
    appid="wxd678efh567hg6787",
    apiv3_key="0" * 32,
    public_key=open(public_key_file).read(),
    public_key_id=public_key_id,
)
core = wxpay._core
core._gate_way = base_url  # the SDK's gateway, pointed at point-engine

card = "sdk" + uuid.uuid4().hex[:20]
path = f"/v3/discount-card/cards/{card}/add-user-records"
now = datetime.now(timezone(timedelta(hours=8))).replace(microsecond=0)


def records(serial, count=1):
    return {
        "card_template_id": "87789b2f25177433bcbf407e8e471f95",
        "objective_completion_records": [{
            "objective_completion_serial_no": serial,
            "objective_id": "123456",
            "completion_time": now.isoformat(),
            "completion_type": "INCREASE",
            "description": "购买商品",
            "completion_count": count,
            "remark": "特价商品",
        }],
    }


def balance():
    answer = requests.get(f"{base_url}/v1/point-engine/members/CARD:{card}/balance")
    return answer.status_code, answer.json()


# 1. Successes: the SDK verifies each 204's signature and raises if it does not hold.
for serial in ["SDK-1", "SDK-2"]:
    try:
        code, message = core.request(path, method=RequestType.POST, data=records(serial))
        check(f"record {serial} answers 204, its signature verified by the SDK", code == 204, f"{code} {message}")
    except Exception as e:  # the SDK's "failed to verify the signature"
        check(f"record {serial} answers 204, its signature verified by the SDK", False, repr(e))
status, body = balance()
earned = body.get("data", {}).get("available_point") if status == 200 else None
check("two completions earned points once each", status == 200 and earned == 40, f"{status} {body}")

# A retry of a record (the SDK signs it again, with a new nonce): 204, nothing more earned.
code, _ = core.request(path, method=RequestType.POST, data=records("SDK-1"))
status, body = balance()
check("a retried record answers 204 and earns nothing more",
      code == 204 and body.get("data", {}).get("available_point") == earned, f"{code} {body}")

# 2. A tampered body: signed for one body, sent with another. Refused, and the refusal is
# signed too (the SDK's own verification holds on it).
body = json.dumps(records("SDK-3"))
authorization = build_authorization(path, "POST", "1900000002",
                                    "0157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                                    load_private_key(merchant_key), data=body)
tampered = body.replace('"completion_count": 1', '"completion_count": 9')
answer = requests.post(base_url + path, data=tampered,
                       headers={"Authorization": authorization, "Content-Type": "application/json"})
check("a tampered body is refused with 401 SIGN_ERROR",
      answer.status_code == 401 and answer.json().get("code") == "SIGN_ERROR", answer.text)
check("the refusal carries a platform signature the SDK verifies",
      core._verify_signature(answer.headers, answer.text))
check("the SDK rejects that signature over another body",
      not core._verify_signature(answer.headers, answer.text + " "))

# 3. A replayed nonce: a second request signed with a nonce already used is refused.
nonce = uuid.uuid4().hex.upper()
first = json.dumps(records("SDK-4"))
second = json.dumps(records("SDK-5"))
for i, body in enumerate([first, second]):
    authorization = build_authorization(path, "POST", "1900000002",
                                        "0157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                                        load_private_key(merchant_key), data=body, nonce_str=nonce)
    answer = requests.post(base_url + path, data=body,
                           headers={"Authorization": authorization, "Content-Type": "application/json"})
    if i == 0:
        check("the first use of a nonce answers 204", answer.status_code == 204, answer.text)
    else:
        check("another request under a used nonce is refused",
              answer.status_code == 401 and answer.json().get("message") == "nonce_str was already used",
              f"{answer.status_code} {answer.text}")
        check("that refusal is signed", core._verify_signature(answer.headers, answer.text))

# 4. The SDK with the wrong platform key reports the answers as forged.
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from cryptography.hazmat.primitives import serialization
other = crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
core._public_key = other
try:
    core.request(path, method=RequestType.POST, data=records("SDK-6"))
    check("an answer signed by another key fails the SDK's check", False, "no exception")
except Exception as e:
    check("an answer signed by another key fails the SDK's check", "verify" in str(e), repr(e))

if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")

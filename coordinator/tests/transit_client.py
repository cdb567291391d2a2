"""Drives the Coordinator's transit engine with hvac, a Vault client library, the way
Vault's and OpenBao's clients use the transit API, and as OpenBao's transit seal does
(PUT, the plaintext only). Asserts what a client relies on; prints, for the Rust side to
check independently, one ciphertext and its plaintext.

Usage: transit_client.py <url> <mesh-ca.pem> <certChain.pem> <key.pem> <own key name>
       <a name that is not this workload's>
"""

import base64
import json
import sys

import hvac
import hvac.exceptions

url, ca, chain, key, name, other = sys.argv[1:7]
client = hvac.Client(url=url, cert=(chain, key), verify=ca)
transit = client.secrets.transit


def b64(data):
    return base64.b64encode(data).decode()


def expect(exception, call, what):
    try:
        call()
    except exception as e:
        return str(e)
    raise AssertionError(f"{what}: expected {exception.__name__}")


# Round trip with the defaults: key version 0.
secret = b"the root key OpenBao unseals with"
encrypted = transit.encrypt_data(name=name, plaintext=b64(secret))["data"]
ciphertext = encrypted["ciphertext"]
assert ciphertext.startswith("vault:v0:"), ciphertext
decrypted = transit.decrypt_data(name=name, ciphertext=ciphertext)["data"]
assert base64.b64decode(decrypted["plaintext"]) == secret, decrypted

# Nonces are random: the same plaintext encrypts differently.
again = transit.encrypt_data(name=name, plaintext=b64(secret))["data"]["ciphertext"]
assert again != ciphertext

# A key version and associated data.
aad = b64(b"bound to this context")
versioned = transit.encrypt_data(
    name=name, plaintext=b64(b"v3"), key_version=3, associated_data=aad
)["data"]["ciphertext"]
assert versioned.startswith("vault:v3:"), versioned
assert (
    transit.decrypt_data(name=name, ciphertext=versioned, associated_data=aad)["data"][
        "plaintext"
    ]
    == b64(b"v3")
)
# Without the associated data, or under another key version, it does not decrypt.
message = expect(
    hvac.exceptions.InvalidRequest,
    lambda: transit.decrypt_data(name=name, ciphertext=versioned),
    "decrypting without the associated data",
)
assert "does not decrypt" in message, message
relabelled = versioned.replace("vault:v3:", "vault:v0:", 1)
expect(
    hvac.exceptions.InvalidRequest,
    lambda: transit.decrypt_data(name=name, ciphertext=relabelled, associated_data=aad),
    "decrypting under another key version",
)

# Another workload's key.
message = expect(
    hvac.exceptions.Forbidden,
    lambda: transit.encrypt_data(name=other, plaintext=b64(secret)),
    "encrypting with a key that is not this workload's",
)
assert "belongs to another workload" in message, message

# Options this engine does not implement are refused, not ignored.
message = expect(
    hvac.exceptions.InvalidRequest,
    lambda: transit.encrypt_data(name=name, plaintext=b64(secret), context=b64(b"ctx")),
    "key derivation context",
)
assert "context: not supported" in message, message

# OpenBao's transit seal: PUT with only the plaintext, then the ciphertext.
session = client.adapter.session
put = session.put(
    f"{url}/v1/transit/encrypt/{name}",
    json={"plaintext": b64(secret)},
    headers={"X-Vault-Request": "true"},
    cert=(chain, key),
    verify=ca,
)
assert put.status_code == 200, put.text
sealed = put.json()["data"]["ciphertext"]
put = session.put(
    f"{url}/v1/transit/decrypt/{name}",
    json={"ciphertext": sealed},
    headers={"X-Vault-Request": "true"},
    cert=(chain, key),
    verify=ca,
)
assert put.status_code == 200, put.text
assert base64.b64decode(put.json()["data"]["plaintext"]) == secret

print(json.dumps({"ciphertext": ciphertext, "plaintext": b64(secret)}))

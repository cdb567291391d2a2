"""C2SP det-keygen (ECDSA) and HKDF-SHA256 written out from their specifications with
Python's hmac/hashlib, to compute the expected values of the Rust known-answer tests.

    python3 det_keygen.py check     # in tests/data/scripts: compares with ../c2sp-det-keygen-ecdsa.json
    python3 det_keygen.py engine    # prints the values asserted in src/engine.rs
"""
import base64, hashlib, hmac, json, sys

CURVES = {
    "secp224r1": (224, int("ffffffffffffffffffffffffffff16a2e0b8f03e13dd29455c5c2a3d", 16), "P-224"),
    "secp256r1": (256, int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16), "P-256"),
    "secp384r1": (384, int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                           "581a0db248b0a77aecec196accc52973", 16), "P-384"),
    "secp521r1": (521, int("01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
                           "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa5186"
                           "8783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409", 16), "P-521"),
}


def H(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def det_keygen(curve, seed):
    qlen, n, name = CURVES[curve]
    nlen = (qlen + 7) // 8
    pers = b"det ECDSA key gen " + name.encode()
    K, V = b"\0" * 32, b"\1" * 32
    K = H(K, V + b"\0" + seed + pers); V = H(K, V)
    K = H(K, V + b"\1" + seed + pers); V = H(K, V)

    def sample():
        nonlocal V
        temp = b""
        while len(temp) < nlen:
            V = H(K, V)
            temp += V
        return int.from_bytes(temp, "big") >> (len(temp) * 8 - qlen)

    d = sample()
    if curve == "secp256r1" and d >= n:
        K = H(K, V + b"\0"); V = H(K, V)
        d = sample()
    assert 0 < d < n
    return d


def hkdf(ikm, salt, info, length):
    prk = H(salt, ikm)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = H(prk, t + info + bytes([i]))
        out += t
        i += 1
    return out[:length]


def check():
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    for e in json.load(open("../c2sp-det-keygen-ecdsa.json")):
        key = load_der_private_key(base64.b64decode(e["private_key_pkcs8"]), None)
        ok = det_keygen(e["curve"], base64.b64decode(e["seed"])) == key.private_numbers().private_value
        print(e["curve"], "ok" if ok else "MISMATCH")


def engine():
    seed, salt = bytes(range(64)), bytes(range(0xA0, 0xC0))
    for info in [b"POD STATE SECRET", b"HISTORY SECRET", b"TRANSACTION SIGNING SECRET", b"ROOT CA SEED"]:
        print(info.decode(), hkdf(seed, salt, info, 64).hex())
    pod = hkdf(seed, salt, b"POD STATE SECRET", 64)
    for wid in ["workload-1", "1_my-secret", "\u00e9t\u00e9 \U0001F600"]:
        print(repr(wid), hkdf(pod, salt, b"WORKLOAD SECRET ID: " + wid.encode(), 64).hex())
    for name, info in [("root CA d", b"ROOT CA SEED"), ("transaction signing d", b"TRANSACTION SIGNING SECRET")]:
        print(name, det_keygen("secp384r1", hkdf(seed, salt, info, 64)).to_bytes(48, "big").hex())


if __name__ == "__main__":
    {"check": check, "engine": engine}[sys.argv[1]]()

# Run in tests/data. Writes seed-shares.json: the seed 0x40..0x7f encrypted to owner a (4096 bits)
# and owner b (2048 bits) with RSA-OAEP SHA-256/MGF1-SHA-256, label b"seedshare", salt
# 0xe0..0xff, formatted like Go's json.MarshalIndent(doc, "", "  ") (no trailing newline).
import base64, json
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
seed = bytes(range(0x40, 0x80)); salt = bytes(range(0xe0, 0x100))
shares = []
for name in ["a", "b"]:
    key = serialization.load_pem_private_key(open(f"seedshare-owner-{name}.pem", "rb").read(), None)
    pub = key.public_key()
    pkcs1 = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    ct = pub.encrypt(seed, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"seedshare"))
    shares.append({"PublicKey": pkcs1.hex(), "EncryptedSeed": base64.b64encode(ct).decode()})
open("seed-shares.json", "w").write(json.dumps({"SeedShares": shares, "salt": base64.b64encode(salt).decode()}, indent=2))

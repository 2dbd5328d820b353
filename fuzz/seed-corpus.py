#!/usr/bin/env python3
"""Writes the committed seed corpus under fuzz/corpus/<target>/ from the repository's own
fixtures: every event in fixtures/events, every body of fixtures/bad-inputs/cases.json that is
small enough for a fuzzer (the megabyte fills are left out), the full appointment payload,
a set of signature headers and myKaarma's date-time forms. File names are the SHA-1 of the
content, as libFuzzer names what it adds, so running this again changes nothing.

Run from anywhere: python3 fuzz/seed-corpus.py
"""

import base64
import hashlib
import hmac
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
# Larger inputs make poor seeds (libFuzzer mutates up to the largest seed's length, slowly);
# the 100000-deep nesting case is replaced by a 1000-deep one, past serde_json's limit of 128.
LARGEST = 16_384


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > LARGEST:
        return
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def bodies():
    for path in sorted((ROOT / "fixtures" / "events").glob("*.json")):
        yield path.read_bytes()
    cases = json.loads((ROOT / "fixtures" / "bad-inputs" / "cases.json").read_text())
    for case in cases["cases"]:
        if "body" in case:
            yield case["body"].encode()
        elif "body_base64" in case:
            yield base64.b64decode(case["body_base64"])
        sign_body = case.get("signature")
        if isinstance(sign_body, dict) and "sign_body" in sign_body:
            yield sign_body["sign_body"].encode()


def payload_texts(body):
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return
    if isinstance(envelope, dict):
        payload = envelope.get("payload")
        if isinstance(payload, str):
            yield payload
        elif isinstance(payload, dict):
            yield json.dumps(payload)


def delivery(secret, header, body):
    """The layout fuzz_targets/signature.rs reads: secret length (1 byte), secret, header
    length (2 bytes, little endian; 0xffff for no header), header, body."""
    data = bytes([len(secret)]) + secret
    if header is None:
        data += struct.pack("<H", 0xFFFF)
    else:
        data += struct.pack("<H", len(header)) + header
    return data + body


def main():
    all_bodies = list(bodies())
    for body in all_bodies:
        write("envelope", body)
        for text in payload_texts(body):
            write("appointment_payload", text)
    write("envelope", "[" * 1000 + "]" * 1000)
    write("envelope", '{"id":"deep","type":"appointments","payload":"' + '[' * 1000 + '"}')
    write("appointment_payload", '{"appointmentInfoResponse":' * 200 + "{}" + "}" * 200)
    write("appointment_payload", (ROOT / "fixtures" / "payloads" / "appointment-full.json").read_bytes())

    secret = b"fixture-secret"
    for body in all_bodies[:12]:
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        for header in [
            f"sha256={digest}",
            f"SHA256={digest.upper()}",
            f"  sha256 = {digest} ",
            digest,
            "sha1=da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "sha256=" + "0" * 64,
            "sha256=abc",
            "",
            None,
        ] + [f"sha256={hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()}" for text in payload_texts(body)]:
            write("signature", delivery(secret, None if header is None else header.encode(), body))

    for text in [
        "2025-01-20T08:00:00",
        "2025-01-20T08:29:59.123",
        "2025-01-20T08:00:00Z",
        "2025-01-20T08:00:00.5+05:30",
        "2025-01-20T08:00:00-0800",
        "2025-01-20 08:00:00",
        "2025-01-20",
        "2025-13-01T00:00:00",
        "+262143-12-31T23:59:59.999999999+23:59",
        "1736933400000",
    ]:
        write("datetime", text)
    write("datetime", struct.pack("<q", 1736933400000))
    write("datetime", struct.pack("<q", -(2**63)))


if __name__ == "__main__":
    main()

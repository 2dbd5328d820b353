//! The `mykaarma-signature-token` header: any header text (or none), any body, any secret,
//! under each signature scope. Nothing may panic; a header that verifies must be the true
//! HMAC of what it claims to cover; and the true signature always verifies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mykaarma::signature::{self, SignatureScope, SignedPart};
use serde_json::value::RawValue;

/// One delivery, read from the fuzzer's bytes as: one byte `n`, `n` bytes of secret, two
/// bytes (little endian) `h`, then `h` bytes of header text (`0xffff`: no header; bytes
/// that are not UTF-8 end the header early), and the rest is the body. A plain layout, so
/// `seed-corpus.py` can write exact seeds.
struct Delivery<'a> {
    secret: &'a [u8],
    header: Option<&'a str>,
    body: &'a [u8],
}

impl<'a> Delivery<'a> {
    fn read(data: &'a [u8]) -> Option<Self> {
        let (&secret_len, rest) = data.split_first()?;
        let (secret, rest) = rest.split_at_checked(usize::from(secret_len))?;
        let (header_len, rest) = rest.split_first_chunk::<2>()?;
        let header_len = u16::from_le_bytes(*header_len);
        let (header, body) = if header_len == u16::MAX {
            (None, rest)
        } else {
            let (header, body) = rest.split_at_checked(usize::from(header_len))?;
            let header = match std::str::from_utf8(header) {
                Ok(header) => header,
                Err(error) => std::str::from_utf8(&header[..error.valid_up_to()]).ok()?,
            };
            (Some(header), body)
        };
        Some(Self { secret, header, body })
    }
}

/// The payload's own text, read as the signature check reads it: the `payload` key alone,
/// unwrapped when it is a string.
fn payload_text(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct PayloadOnly<'a> {
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    let wire: PayloadOnly = serde_json::from_slice(body).ok()?;
    let raw = wire.payload.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else {
        Some(raw.to_owned())
    }
}

/// `sha256=<hex>` with white space and case normalised, as `verify` reads it.
fn normalised(header: &str) -> Option<String> {
    let (algorithm, digest) = header.trim().split_once('=')?;
    Some(format!(
        "{}={}",
        algorithm.trim().to_ascii_lowercase(),
        digest.trim().to_ascii_lowercase()
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some(Delivery { secret, header, body }) = Delivery::read(data) else {
        return;
    };
    let over_body = signature::sign(secret, body);
    let payload = payload_text(body);
    for scope in [SignatureScope::Body, SignatureScope::Payload, SignatureScope::Either] {
        match signature::verify(secret, header, body, scope) {
            Ok(SignedPart::Body) => {
                assert_ne!(scope, SignatureScope::Payload);
                assert_eq!(normalised(header.unwrap()).as_deref(), Some(over_body.as_str()));
            }
            Ok(SignedPart::Payload) => {
                assert_ne!(scope, SignatureScope::Body);
                let payload = payload.as_deref().expect("a verified payload signature has a payload");
                let over_payload = signature::sign(secret, payload.as_bytes());
                assert_eq!(normalised(header.unwrap()).as_deref(), Some(over_payload.as_str()));
            }
            Err(_) => {}
        }
    }
    // The true signatures always verify, whatever the bytes.
    for scope in [SignatureScope::Body, SignatureScope::Either] {
        assert_eq!(
            signature::verify(secret, Some(&over_body), body, scope),
            Ok(SignedPart::Body)
        );
    }
    if let Some(payload) = payload {
        let over_payload = signature::sign(secret, payload.as_bytes());
        assert_eq!(
            signature::verify(secret, Some(&over_payload), body, SignatureScope::Payload),
            Ok(SignedPart::Payload)
        );
    }
});

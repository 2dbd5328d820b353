//! The `mykaarma-signature-token` header: HMAC-SHA256, hex encoded, prefixed `sha256=`.
//!
//! myKaarma's page does not say which bytes are signed (the raw body is the usual pattern and
//! the default here; the inner payload string is the alternative), so the scope is a
//! parameter. Comparison is case-insensitive on the hex and constant-time on the digest.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::payload;

/// The header myKaarma puts the signature in (header names are case-insensitive).
pub const SIGNATURE_HEADER: &str = "mykaarma-signature-token";

/// The header carrying the static token myKaarma shares with the partner in advance.
pub const AUTHORIZATION_HEADER: &str = "x-authorization-token";

type HmacSha256 = Hmac<Sha256>;

/// Which bytes the signature covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScope {
    /// The raw request body, byte for byte (the default).
    #[default]
    Body,
    /// The envelope's `payload` string (the text inside the quotes, unescaped).
    Payload,
    /// Either of the two; for finding out which one a sender uses.
    Either,
}

/// Which part of the delivery a verified signature covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPart {
    /// The whole raw body.
    Body,
    /// The payload string.
    Payload,
}

/// Why a signature was not accepted. The message never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header was sent.
    #[error("missing signature header `{SIGNATURE_HEADER}`")]
    Missing,
    /// The header is not `<algorithm>=<hex digest>`.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than `sha256`.
    #[error("unsupported signature algorithm {0:?}: only sha256 is used by myKaarma")]
    UnsupportedAlgorithm(String),
    /// The digest does not match the signed bytes.
    #[error("signature mismatch")]
    Mismatch,
}

/// Signs `bytes` with `secret`, returning the header value `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], bytes: &[u8]) -> String {
    format!("sha256={}", hex::encode(digest(secret, bytes)))
}

/// Checks `header` (the value of [`SIGNATURE_HEADER`], `None` when absent) against `body`.
///
/// With [`SignatureScope::Payload`] the payload string is read out of `body`; a body without
/// one cannot match and is reported as [`SignatureError::Mismatch`].
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    scope: SignatureScope,
) -> Result<SignedPart, SignatureError> {
    let expected = parse_header(header.ok_or(SignatureError::Missing)?)?;
    let matches = |bytes: &[u8]| bool::from(digest(secret, bytes).ct_eq(&expected));
    if scope != SignatureScope::Payload && matches(body) {
        return Ok(SignedPart::Body);
    }
    if scope != SignatureScope::Body
        && payload::text_in_body(body).is_some_and(|payload| matches(payload.as_bytes()))
    {
        return Ok(SignedPart::Payload);
    }
    Err(SignatureError::Mismatch)
}

fn digest(secret: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// Reads `sha256=<64 hex digits>` (either case, surrounding white space ignored).
fn parse_header(value: &str) -> Result<[u8; 32], SignatureError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(SignatureError::Missing);
    }
    let (algorithm, hex_digest) = value
        .split_once('=')
        .ok_or(SignatureError::Malformed("expected `sha256=<hex digest>`"))?;
    if !algorithm.trim().eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::UnsupportedAlgorithm(
            algorithm.trim().chars().take(32).collect(),
        ));
    }
    let hex_digest = hex_digest.trim();
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed(
            "the digest must be 64 hexadecimal digits",
        ));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest)
        .map_err(|_| SignatureError::Malformed("the digest is not hexadecimal"))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"partner-username";
    const BODY: &[u8] = br#"{"id":"e1","type":"appointments","payload":"{\"uuid\":\"a\"}"}"#;

    #[test]
    fn a_signature_verifies_in_either_case() {
        let header = sign(SECRET, BODY);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert_eq!(header[7..], header[7..].to_lowercase());
        let upper = format!("SHA256={}", header[7..].to_uppercase());
        for value in [header.as_str(), upper.as_str(), &format!("  {header} ")] {
            assert_eq!(
                verify(SECRET, Some(value), BODY, SignatureScope::Body),
                Ok(SignedPart::Body)
            );
        }
    }

    #[test]
    fn each_failure_says_what_is_wrong() {
        let good = sign(SECRET, BODY);
        let cases: [(Option<&str>, SignatureError); 7] = [
            (None, SignatureError::Missing),
            (Some(""), SignatureError::Missing),
            (
                Some(&good[7..]),
                SignatureError::Malformed("expected `sha256=<hex digest>`"),
            ),
            (
                Some("sha256=abc"),
                SignatureError::Malformed("the digest must be 64 hexadecimal digits"),
            ),
            (
                Some("sha256=zz00000000000000000000000000000000000000000000000000000000000000"),
                SignatureError::Malformed("the digest is not hexadecimal"),
            ),
            (
                Some("sha1=00"),
                SignatureError::UnsupportedAlgorithm("sha1".into()),
            ),
            (
                Some("sha256=0000000000000000000000000000000000000000000000000000000000000000"),
                SignatureError::Mismatch,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(SECRET, header, BODY, SignatureScope::Body),
                Err(expected),
                "{header:?}"
            );
        }
        assert_eq!(
            verify(b"other-secret", Some(&good), BODY, SignatureScope::Body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_scope_selects_the_signed_bytes() {
        let over_payload = sign(SECRET, br#"{"uuid":"a"}"#);
        let over_body = sign(SECRET, BODY);
        let check = |header: &str, scope| verify(SECRET, Some(header), BODY, scope);
        assert_eq!(
            check(&over_payload, SignatureScope::Payload),
            Ok(SignedPart::Payload)
        );
        assert_eq!(
            check(&over_payload, SignatureScope::Either),
            Ok(SignedPart::Payload)
        );
        assert_eq!(
            check(&over_payload, SignatureScope::Body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&over_body, SignatureScope::Either),
            Ok(SignedPart::Body)
        );
        assert_eq!(
            check(&over_body, SignatureScope::Payload),
            Err(SignatureError::Mismatch)
        );
    }
}

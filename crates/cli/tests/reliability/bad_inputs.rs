//! The bad-input corpus, `fixtures/bad-inputs/cases.json`, as requests to a running relay:
//! `cases` are deliveries described by body, signature and token (the same corpus the
//! in-process ingest test runs), `http_cases` are requests that go wrong at the HTTP layer
//! (header sizes and counts, framing, methods), written out byte by byte.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};

/// The signature secret the corpus is written for.
pub const SECRET: &str = "fixture-secret";
/// The authorization token the corpus is written for.
pub const TOKEN: &str = "myKaarma_00000000-0000-4000-8000-000000000000";

/// The whole corpus.
pub fn corpus() -> Value {
    let text = crate::relay_process::fixture("bad-inputs/cases.json");
    serde_json::from_slice(&text).expect("cases.json is JSON")
}

/// The body a delivery case describes (`body`, `body_base64` or `body_fill`).
pub fn body_of(case: &Value) -> Vec<u8> {
    if let Some(body) = case["body"].as_str() {
        body.as_bytes().to_vec()
    } else if let Some(encoded) = case["body_base64"].as_str() {
        BASE64.decode(encoded).expect("body_base64 is base64")
    } else {
        let fill = &case["body_fill"];
        let mut body = fill["prefix"]
            .as_str()
            .expect("a prefix")
            .as_bytes()
            .to_vec();
        body.resize(fill["size"].as_u64().expect("a size") as usize, b'a');
        body
    }
}

/// The signature and token headers a delivery case describes (see the corpus's `about`).
pub fn credentials_of(case: &Value, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    let signature = match &case["signature"] {
        Value::Null => Some(signature::sign(SECRET.as_bytes(), body)),
        Value::String(mode) => match mode.as_str() {
            "none" => None,
            "wrong_secret" => Some(signature::sign(b"not-the-secret", body)),
            "valid_without_prefix" => {
                Some(signature::sign(SECRET.as_bytes(), body)[7..].to_owned())
            }
            "over_payload" => {
                let envelope: Value = serde_json::from_slice(body).expect("a JSON body");
                let payload = envelope["payload"].as_str().expect("a payload string");
                Some(signature::sign(SECRET.as_bytes(), payload.as_bytes()))
            }
            other => panic!("unknown signature mode {other}"),
        },
        Value::Object(spec) if spec.contains_key("header") => {
            Some(spec["header"].as_str().expect("a header").to_owned())
        }
        Value::Object(spec) => Some(signature::sign(
            SECRET.as_bytes(),
            spec["sign_body"]
                .as_str()
                .expect("a body to sign")
                .as_bytes(),
        )),
        other => panic!("bad signature spec {other}"),
    };
    if let Some(signature) = signature {
        headers.push((SIGNATURE_HEADER, signature));
    }
    match &case["token"] {
        Value::Null => headers.push((AUTHORIZATION_HEADER, TOKEN.to_owned())),
        Value::String(none) if none == "none" => {}
        Value::Object(spec) => headers.push((
            AUTHORIZATION_HEADER,
            spec["header"].as_str().expect("a token").to_owned(),
        )),
        other => panic!("bad token spec {other}"),
    }
    headers
}

/// The bytes of an HTTP-layer case: its `raw` request head (`{signature}` standing for the
/// signature of its `body`, `{length}` for the body's length, `{fill}` for `fill` bytes of
/// padding) followed by the body, or a signed POST of `body` to the ingest path with
/// `extra_headers` (`count` headers of `size` bytes each) and, when `chunked`, the body in
/// chunked transfer encoding.
pub fn http_request_of(case: &Value) -> Vec<u8> {
    let body = body_of(case);
    let signature = signature::sign(SECRET.as_bytes(), &body);
    if let Some(raw) = case["raw"].as_str() {
        let fill = "u".repeat(case["fill"].as_u64().unwrap_or(0) as usize);
        let mut request = raw
            .replace("{signature}", &signature)
            .replace("{length}", &body.len().to_string())
            .replace("{fill}", &fill)
            .into_bytes();
        request.extend_from_slice(&body);
        return request;
    }
    let mut head = String::from(
        "POST /webhooks/mykaarma HTTP/1.1\r\nhost: relay\r\ncontent-type: text/plain\r\nconnection: close\r\n",
    );
    head.push_str(&format!(
        "{SIGNATURE_HEADER}: {signature}\r\n{AUTHORIZATION_HEADER}: {TOKEN}\r\n"
    ));
    let extra = &case["extra_headers"];
    for n in 0..extra["count"].as_u64().unwrap_or(0) {
        let size = extra["size"].as_u64().unwrap_or(1) as usize;
        head.push_str(&format!("x-extra-{n}: {}\r\n", "e".repeat(size)));
    }
    let mut request;
    if case["chunked"].as_bool() == Some(true) {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        request = head.into_bytes();
        for chunk in body.chunks(64 * 1024) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        request = head.into_bytes();
        request.extend_from_slice(&body);
    }
    request
}

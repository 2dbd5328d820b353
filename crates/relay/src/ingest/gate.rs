//! The checks a delivery passes before anything is kept: source address, body size,
//! `x-authorization-token` and the HMAC signature. Each failure is a [`Rejection`] naming
//! its reason; none echoes a secret.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode};
use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};
use mykaarma::{SignatureError, SignatureScope};
use subtle::ConstantTimeEq;

use crate::config::{IpRange, MykaarmaConfig, Secret};

/// Why a delivery was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The source address is not on the allow-list.
    #[error("source address {0} is not allowed")]
    SourceNotAllowed(IpAddr),
    /// The body is larger than `max_body_bytes`.
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read off the connection.
    #[error("could not read the body: {0}")]
    UnreadableBody(String),
    /// No `x-authorization-token` header, though one is configured.
    #[error("missing header `{AUTHORIZATION_HEADER}`")]
    MissingAuthorizationToken,
    /// The `x-authorization-token` does not match.
    #[error("`{AUTHORIZATION_HEADER}` does not match")]
    WrongAuthorizationToken,
    /// The signature is missing or does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl Rejection {
    /// The HTTP status this rejection is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::SourceNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            Self::MissingAuthorizationToken
            | Self::WrongAuthorizationToken
            | Self::Signature(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// A stable machine-readable name, also the `reason` label of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SourceNotAllowed(_) => "source_not_allowed",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::UnreadableBody(_) => "unreadable_body",
            Self::MissingAuthorizationToken => "missing_authorization_token",
            Self::WrongAuthorizationToken => "wrong_authorization_token",
            Self::Signature(SignatureError::Missing) => "missing_signature",
            Self::Signature(SignatureError::Malformed(_)) => "malformed_signature",
            Self::Signature(SignatureError::UnsupportedAlgorithm(_)) => {
                "unsupported_signature_algorithm"
            }
            Self::Signature(SignatureError::Mismatch) => "signature_mismatch",
        }
    }
}

/// The configured checks.
pub struct Gate {
    signature_secret: Secret,
    authorization_token: Option<Secret>,
    scope: SignatureScope,
    allowed_ips: Vec<IpRange>,
    trusted_proxies: Vec<IpRange>,
    /// Bodies larger than this are refused.
    pub max_body_bytes: usize,
}

impl Gate {
    /// Builds the gate from the `[mykaarma]` table; `None` without a signature secret.
    pub fn new(config: &MykaarmaConfig) -> Option<Self> {
        Some(Self {
            signature_secret: config.signature_secret.clone()?,
            authorization_token: config.authorization_token.clone(),
            scope: config.signature_scope,
            allowed_ips: config.allowed_ips.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Checks the source address: the peer, or the `X-Forwarded-For` client when the peer is
    /// a trusted proxy.
    pub fn check_source(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Rejection> {
        if self.allowed_ips.is_empty() {
            return Ok(());
        }
        let client = self.client_address(peer.ip(), headers);
        if self.allowed_ips.iter().any(|net| net.contains(&client)) {
            Ok(())
        } else {
            Err(Rejection::SourceNotAllowed(client))
        }
    }

    /// The original client: walking `X-Forwarded-For` from the right, the first address
    /// that is not a trusted proxy. Only consulted when the peer itself is trusted.
    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|hop| !trusted(hop))
            .unwrap_or(peer)
    }

    /// Checks the authorization token (when configured) and the signature over `body`.
    pub fn check_credentials(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
        if let Some(expected) = &self.authorization_token {
            let sent = headers
                .get(AUTHORIZATION_HEADER)
                .ok_or(Rejection::MissingAuthorizationToken)?;
            if !bool::from(sent.as_bytes().ct_eq(expected.expose().as_bytes())) {
                return Err(Rejection::WrongAuthorizationToken);
            }
        }
        let header = match headers.get(SIGNATURE_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| SignatureError::Malformed("the header is not visible ASCII"))?,
            ),
        };
        signature::verify(
            self.signature_secret.expose().as_bytes(),
            header,
            body,
            self.scope,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(allowed: &[&str], trusted: &[&str]) -> Gate {
        let config = MykaarmaConfig {
            signature_secret: Some(Secret::new("s")),
            authorization_token: Some(Secret::new("myKaarma_token")),
            allowed_ips: allowed.iter().map(|ip| ip.parse().unwrap()).collect(),
            trusted_proxies: trusted.iter().map(|ip| ip.parse().unwrap()).collect(),
            ..MykaarmaConfig::default()
        };
        Gate::new(&config).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_allow_list_trusts_forwarded_for_only_from_trusted_proxies() {
        let gate = gate(&["54.174.160.138"], &["10.0.0.0/8"]);
        let myk = "54.174.160.138:443".parse().unwrap();
        let proxy: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.7:80".parse().unwrap();
        let forwarded = headers(&[("x-forwarded-for", "54.174.160.138, 10.9.9.9")]);
        assert_eq!(gate.check_source(myk, &HeaderMap::new()), Ok(()));
        assert_eq!(gate.check_source(proxy, &forwarded), Ok(()));
        assert!(gate.check_source(proxy, &HeaderMap::new()).is_err());
        // A stranger cannot claim to be myKaarma by sending the header itself.
        assert_eq!(
            gate.check_source(stranger, &forwarded),
            Err(Rejection::SourceNotAllowed(stranger.ip()))
        );
    }

    #[test]
    fn credentials_are_checked_token_first() {
        let gate = gate(&[], &[]);
        let body = b"{}";
        let signed = signature::sign(b"s", body);
        let cases = [
            (
                headers(&[("mykaarma-signature-token", &signed)]),
                Err(Rejection::MissingAuthorizationToken),
            ),
            (
                headers(&[
                    ("x-authorization-token", "nope"),
                    ("mykaarma-signature-token", &signed),
                ]),
                Err(Rejection::WrongAuthorizationToken),
            ),
            (
                headers(&[("x-authorization-token", "myKaarma_token")]),
                Err(Rejection::Signature(SignatureError::Missing)),
            ),
            (
                headers(&[
                    ("x-authorization-token", "myKaarma_token"),
                    ("mykaarma-signature-token", &signed),
                ]),
                Ok(()),
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                gate.check_credentials(&headers, body),
                expected,
                "{headers:?}"
            );
        }
    }
}

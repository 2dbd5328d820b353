//! A partner's webhook subscription, as myKaarma keeps one: where to post, how to sign, the
//! token to present, and which dealers' events the partner receives.

use serde::{Deserialize, Serialize};

/// One partner endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// A name for logs and the control API.
    #[serde(default)]
    pub name: String,
    /// The partner's URL.
    pub url: String,
    /// The HMAC-SHA256 key of `mykaarma-signature-token` (myKaarma currently uses the
    /// partner's API username). Never shown by the control API.
    #[serde(skip_serializing, default)]
    pub secret: String,
    /// The static `x-authorization-token` (documented as `myKaarma_<uuid>`); not sent when
    /// absent. Never shown by the control API.
    #[serde(skip_serializing, default)]
    pub token: Option<String>,
    /// The dealers subscribed to; empty means every dealer.
    #[serde(default)]
    pub dealers: Vec<String>,
}

impl Subscription {
    /// A subscription of `url` to every dealer.
    pub fn new(url: impl Into<String>, secret: impl Into<String>, token: Option<String>) -> Self {
        Self {
            name: "partner".to_owned(),
            url: url.into(),
            secret: secret.into(),
            token,
            dealers: Vec::new(),
        }
    }

    /// True when the partner receives events of `dealer_uuid`.
    pub fn wants(&self, dealer_uuid: &str) -> bool {
        self.dealers.is_empty() || self.dealers.iter().any(|dealer| dealer == dealer_uuid)
    }
}

//! The relay's configuration: one TOML file, every key overridable by a `KAARMA_RELAY_…`
//! environment variable (nested keys joined by `__`, e.g.
//! `KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET`) and by command-line flags. Secrets may come
//! from files and never appear in `Debug` output or logs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use mykaarma::SignatureScope;
use serde::{Deserialize, Serialize};

use crate::delivery::{DeliveryConfig, RouteConfig};
use crate::pipeline::{PairingRules, ProjectionRules, pointer};
use crate::retention::RetentionConfig;
use crate::store::StoreOptions;

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "KAARMA_RELAY_";

/// `KAARMA_RELAY_…` variables that belong to the command line, not to the configuration.
const COMMAND_LINE_VARIABLES: [&str; 4] = ["config", "log_format", "url", "sign_secret"];

/// The development signature secret `serve --dev` uses; never for production.
pub const DEV_SIGNATURE_SECRET: &str = "kaarma-relay-dev-secret";

/// A secret value: shown as `***` in `Debug` so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An address or a CIDR range: `54.174.160.138` or `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange(IpNet);

impl IpRange {
    /// True when `ip` is in the range.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR range"))
    }
}

impl TryFrom<String> for IpRange {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<IpRange> for String {
    fn from(range: IpRange) -> Self {
        range.0.to_string()
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://PATH` (the embedded default) or `postgres://…`.
    pub database: String,
    /// Apply migrations at start (`kaarma-relay migrate` applies them explicitly).
    pub migrate: bool,
    /// Bearer token for `/api/v1`; without one, only loopback clients may use the API.
    pub admin_token: Option<Secret>,
    /// A file holding the admin token (read at start, trailing newline dropped).
    pub admin_token_file: Option<PathBuf>,
    /// The myKaarma webhook endpoint.
    pub mykaarma: MykaarmaConfig,
    /// How events become appointment state.
    pub processing: ProcessingConfig,
    /// Where changes go (`[[routes]]`).
    pub routes: Vec<RouteConfig>,
    /// Database pool settings.
    pub store: StoreOptions,
    /// Delivery engine settings.
    pub delivery: DeliveryConfig,
    /// How long finished records are kept.
    pub retention: RetentionConfig,
    /// Seconds a request may take before the relay gives up on it (slow clients).
    pub request_timeout_secs: u64,
    /// Seconds a client has to send its request headers.
    pub header_read_timeout_secs: u64,
    /// HTTP connections open at once; more are closed on arrival.
    pub max_http_connections: usize,
    /// Seconds `serve` waits for in-flight work on shutdown.
    pub shutdown_grace_secs: u64,
}

/// The `[mykaarma]` table: how deliveries are verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MykaarmaConfig {
    /// The ingest path.
    pub path: String,
    /// The HMAC-SHA256 key (myKaarma currently uses the partner's API username).
    pub signature_secret: Option<Secret>,
    /// A file holding the signature secret.
    pub signature_secret_file: Option<PathBuf>,
    /// The static `x-authorization-token` myKaarma shares; checked when set.
    pub authorization_token: Option<Secret>,
    /// A file holding the authorization token.
    pub authorization_token_file: Option<PathBuf>,
    /// Which bytes the signature covers: `body` (default), `payload` or `either`.
    pub signature_scope: SignatureScope,
    /// Bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Source addresses or CIDR ranges allowed to post (empty: any). myKaarma documents
    /// 54.174.160.138.
    pub allowed_ips: Vec<IpRange>,
    /// Proxies whose `X-Forwarded-For` is believed when checking `allowed_ips`.
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: "sqlite://kaarma-relay.db".to_owned(),
            migrate: true,
            admin_token: None,
            admin_token_file: None,
            mykaarma: MykaarmaConfig::default(),
            processing: ProcessingConfig::default(),
            routes: Vec::new(),
            store: StoreOptions::default(),
            delivery: DeliveryConfig::default(),
            retention: RetentionConfig::default(),
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            max_http_connections: 1024,
            shutdown_grace_secs: 30,
        }
    }
}

/// The `[processing]` table: how events become appointment state and changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// Events one processing transaction takes.
    pub batch_size: u32,
    /// Fields the DMS owns: a change of only these, right after a myKaarma change, is the
    /// DMS acknowledging it. JSON Pointers into `appointmentInfoResponse` (`/appointmentKey`)
    /// or bare names (`appointmentKey`).
    pub dms_fields: Vec<String>,
    /// Fields whose changes are noise and never count as a change (e.g. `reminderCount`).
    pub volatile_fields: Vec<String>,
    /// How long after a myKaarma change its DMS acknowledgement may come, in seconds.
    pub pairing_window_secs: u64,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            dms_fields: vec!["/appointmentKey".into(), "/dispatchCode".into()],
            volatile_fields: Vec::new(),
            pairing_window_secs: 600,
        }
    }
}

impl ProcessingConfig {
    /// The rules the processor applies.
    pub fn rules(&self) -> ProjectionRules {
        let pointers = |fields: &[String]| -> Vec<String> {
            fields.iter().map(|field| pointer(field)).collect()
        };
        ProjectionRules {
            pairing: PairingRules {
                dms_fields: pointers(&self.dms_fields),
                window_ms: i64::try_from(self.pairing_window_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
            volatile_fields: pointers(&self.volatile_fields),
        }
    }
}

impl Default for MykaarmaConfig {
    fn default() -> Self {
        Self {
            path: "/webhooks/mykaarma".to_owned(),
            signature_secret: None,
            signature_secret_file: None,
            authorization_token: None,
            authorization_token_file: None,
            signature_scope: SignatureScope::Body,
            max_body_bytes: 1024 * 1024,
            allowed_ips: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why the configuration cannot be used. Messages name the file, line or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration (the message carries line and column).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value from the environment or a flag is unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// No signature secret is configured.
    #[error(
        "no signature secret: set `signature_secret` (or `signature_secret_file`) in the [mykaarma] \
         table, or KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET; or run `serve --dev` for a local \
         development secret"
    )]
    MissingSignatureSecret,
}

impl Config {
    /// Reads the file (when given), then the environment, then `overrides` (flags), each
    /// over the last, and reads secret files.
    pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // Parsed on its own first: the toml parser's errors carry line and column.
            toml::from_str::<Config>(&text).map_err(|error| ConfigError::File {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        let config: Config = figment
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .split("__")
                    .ignore(&COMMAND_LINE_VARIABLES),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        config.with_secret_files()
    }

    fn with_secret_files(mut self) -> Result<Self, ConfigError> {
        read_secret_file(&mut self.admin_token, &self.admin_token_file)?;
        let mykaarma = &mut self.mykaarma;
        read_secret_file(
            &mut mykaarma.signature_secret,
            &mykaarma.signature_secret_file,
        )?;
        read_secret_file(
            &mut mykaarma.authorization_token,
            &mykaarma.authorization_token_file,
        )?;
        Ok(self)
    }

    /// Checks what must hold before serving.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mykaarma.signature_secret.is_none() {
            return Err(ConfigError::MissingSignatureSecret);
        }
        if !self.mykaarma.path.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "mykaarma.path must start with `/`, got {:?}",
                self.mykaarma.path
            )));
        }
        if self.mykaarma.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "mykaarma.max_body_bytes must be above 0".into(),
            ));
        }
        Ok(())
    }

    /// Development mode: the printed development secret when none is set, and loopback only.
    pub fn into_dev(mut self) -> Self {
        if self.mykaarma.signature_secret.is_none() {
            self.mykaarma.signature_secret = Some(Secret::new(DEV_SIGNATURE_SECRET));
        }
        if !self.listen.ip().is_loopback() {
            self.listen.set_ip(IpAddr::from([127, 0, 0, 1]));
        }
        self
    }
}

fn read_secret_file(
    secret: &mut Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        *secret = Some(Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct NoOverrides {}

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database, "sqlite://kaarma-relay.db");
        assert_eq!(config.mykaarma.path, "/webhooks/mykaarma");
        assert_eq!(config.mykaarma.max_body_bytes, 1 << 20);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::MissingSignatureSecret)
        ));
    }

    #[test]
    fn file_errors_carry_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[mykaarma]\nmax_body_bytes = \"lots\"\n",
        )
        .unwrap();
        let error = Config::load(Some(&path), &NoOverrides {})
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        std::fs::write(&path, "[mykaarma]\nsignature_secert = \"x\"\n").unwrap();
        let error = Config::load(Some(&path), &NoOverrides {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2") && error.contains("signature_secert"),
            "{error}"
        );
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            format!("[mykaarma]\nsignature_secret_file = {:?}\nallowed_ips = [\"54.174.160.138\", \"10.0.0.0/8\"]\n", secret),
        )
        .unwrap();
        let config = Config::load(Some(&path), &NoOverrides {}).unwrap();
        assert_eq!(
            config.mykaarma.signature_secret.as_ref().unwrap().expose(),
            "s3cr3t"
        );
        assert_eq!(config.mykaarma.allowed_ips.len(), 2);
        assert!(!format!("{config:?}").contains("s3cr3t"));
        config.validate().unwrap();
    }

    #[test]
    fn dev_mode_uses_the_dev_secret_on_loopback() {
        let config = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        }
        .into_dev();
        assert!(config.listen.ip().is_loopback());
        assert_eq!(
            config.mykaarma.signature_secret.unwrap().expose(),
            DEV_SIGNATURE_SECRET
        );
    }
}

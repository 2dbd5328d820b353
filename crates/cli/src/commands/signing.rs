//! `sign`, `verify` and `send`: the sender's side of the signature, for testing by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use mykaarma::SignatureScope;
use mykaarma::signature::{self, AUTHORIZATION_HEADER, SIGNATURE_HEADER};

/// Flags of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The shared secret.
    #[arg(long, env = "KAARMA_RELAY_SIGN_SECRET")]
    secret: String,
    /// The file whose bytes are signed.
    file: PathBuf,
}

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The shared secret.
    #[arg(long, env = "KAARMA_RELAY_SIGN_SECRET")]
    secret: String,
    /// The header value, e.g. `sha256=…`.
    #[arg(long)]
    signature: String,
    /// Which bytes are signed.
    #[arg(long, value_enum, default_value = "body")]
    scope: ScopeArg,
    /// The file that was signed.
    file: PathBuf,
}

/// Flags of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The webhook endpoint, e.g. http://127.0.0.1:8080/webhooks/mykaarma
    #[arg(long)]
    url: String,
    /// The shared secret.
    #[arg(long, env = "KAARMA_RELAY_SIGN_SECRET")]
    secret: String,
    /// The `x-authorization-token` to send.
    #[arg(long)]
    token: Option<String>,
    /// Files holding bodies, sent byte for byte.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `--scope` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    /// The raw body.
    Body,
    /// The payload string.
    Payload,
    /// Either.
    Either,
}

impl From<ScopeArg> for SignatureScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Body => Self::Body,
            ScopeArg::Payload => Self::Payload,
            ScopeArg::Either => Self::Either,
        }
    }
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Prints the signature header value.
pub fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    println!(
        "{}",
        signature::sign(args.secret.as_bytes(), &read(&args.file)?)
    );
    Ok(ExitCode::SUCCESS)
}

/// Says whether the signature verifies; exits non-zero when it does not.
pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let body = read(&args.file)?;
    match signature::verify(
        args.secret.as_bytes(),
        Some(&args.signature),
        &body,
        args.scope.into(),
    ) {
        Ok(part) => {
            println!("ok: the signature covers the {part:?}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("invalid: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Posts each file as myKaarma would and prints each answer; non-zero if any was not 2xx.
pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let mut all_ok = true;
    for file in &args.files {
        let body = read(file)?;
        let mut request = client
            .post(&args.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .header(
                SIGNATURE_HEADER,
                signature::sign(args.secret.as_bytes(), &body),
            );
        if let Some(token) = &args.token {
            request = request.header(AUTHORIZATION_HEADER, token);
        }
        let response = request.body(body).send().await?;
        let status = response.status();
        all_ok &= status.is_success();
        println!(
            "{} {} {}",
            file.display(),
            status.as_u16(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

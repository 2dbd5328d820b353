//! `kaarma-relay serve` as an operator starts it: where its configuration comes from (file,
//! environment, flags, in that order of precedence), what it says when the configuration is
//! unusable, and development mode.

mod relay_process;

use relay_process::{
    ADMIN, EventTemplate, RelayProcess, SECRET, TOKEN, Webhook, command, database_url, finish,
    fixture,
};

#[tokio::test]
async fn serve_without_a_signature_secret_refuses_to_start_and_says_how_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = command(dir.path());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--database"])
        .arg(database_url(dir.path()));
    let output = finish(serve);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started anyway: {stderr}");
    for hint in [
        "signature_secret",
        "KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET",
        "--dev",
    ] {
        assert!(
            stderr.contains(hint),
            "stderr does not mention {hint}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("kaarma-relay listening"),
        "it must not listen without a secret: {stderr}"
    );
}

#[tokio::test]
async fn every_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("from-env.db");
    let mut serve = command(dir.path());
    serve
        .arg("serve")
        .env("KAARMA_RELAY_LISTEN", "127.0.0.1:0")
        .env(
            "KAARMA_RELAY_DATABASE",
            format!("sqlite://{}", database.display()),
        )
        .env("KAARMA_RELAY_ADMIN_TOKEN", ADMIN)
        .env("KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET", SECRET)
        .env("KAARMA_RELAY_MYKAARMA__AUTHORIZATION_TOKEN", TOKEN)
        .env("KAARMA_RELAY_MYKAARMA__MAX_BODY_BYTES", "2000");
    let relay = RelayProcess::start(serve).await;
    assert!(relay.address.ip().is_loopback(), "{}", relay.address);
    assert!(
        database.exists(),
        "the database is where the environment says"
    );

    let webhook = Webhook::new(relay.webhook_url());
    // customer.json is about 1.1 KB, under the limit from the environment.
    let (status, answer) = webhook
        .deliver(fixture("events/customer.json"))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    // An appointment is about 2.7 KB: over it.
    let (status, answer) = webhook
        .deliver(fixture("events/appointment-created.json"))
        .await
        .unwrap();
    assert_eq!(status, 413, "{answer}");

    let small = fixture("events/mpi.json");
    let strangers = [
        Webhook::signed_with(relay.webhook_url(), "another-secret", Some(TOKEN)),
        Webhook::signed_with(relay.webhook_url(), SECRET, None),
        Webhook::signed_with(relay.webhook_url(), SECRET, Some("myKaarma_wrong")),
    ];
    for stranger in strangers {
        let (status, answer) = stranger.deliver(small.clone()).await.unwrap();
        assert_eq!(status, 401, "{answer}");
    }

    let client = reqwest::Client::new();
    let events = format!("{}/api/v1/events", relay.url());
    let unauthorized = client.get(&events).send().await.unwrap();
    assert_eq!(
        unauthorized.status(),
        401,
        "the admin token from the environment is required"
    );
    let stored = relay.stored_events().await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].event_type, "customers");
}

#[tokio::test]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:9\"\ndatabase = {:?}\n\n[mykaarma]\nsignature_secret = \"file-secret\"\nauthorization_token = {TOKEN:?}\n",
            database_url(dir.path())
        ),
    )
    .unwrap();
    let mut serve = command(dir.path());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("KAARMA_RELAY_LISTEN", "127.0.0.1:8")
        .env("KAARMA_RELAY_MYKAARMA__SIGNATURE_SECRET", SECRET);
    let relay = RelayProcess::start(serve).await;
    assert!(
        ![8, 9].contains(&relay.address.port()),
        "--listen must win over the environment and the file: {}",
        relay.address
    );
    assert!(
        dir.path().join("relay.db").exists(),
        "the file's database is used"
    );

    let body = EventTemplate::load("appointment-created").with_id("precedence-1");
    let file_secret = Webhook::signed_with(relay.webhook_url(), "file-secret", Some(TOKEN));
    let (status, _) = file_secret.deliver(body.clone()).await.unwrap();
    assert_eq!(status, 401, "the environment's secret replaces the file's");
    let no_token = Webhook::signed_with(relay.webhook_url(), SECRET, None);
    let (status, _) = no_token.deliver(body.clone()).await.unwrap();
    assert_eq!(status, 401, "the file's authorization token still applies");
    let (status, answer) = Webhook::new(relay.webhook_url())
        .deliver(body)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
}

/// The binary documents these variables itself (`--help` shows them); they share the
/// `KAARMA_RELAY_` prefix with configuration keys but are not keys, and must not stop
/// `serve` from starting.
#[tokio::test]
async fn the_binarys_own_environment_variables_are_not_taken_for_configuration_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        format!("[mykaarma]\nsignature_secret = {SECRET:?}\n"),
    )
    .unwrap();
    let mut serve = command(dir.path());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--database"])
        .arg(database_url(dir.path()))
        .env("KAARMA_RELAY_CONFIG", &file)
        .env("KAARMA_RELAY_LOG_FORMAT", "json")
        .env("KAARMA_RELAY_URL", "http://127.0.0.1:8080")
        .env("KAARMA_RELAY_SIGN_SECRET", SECRET);
    let relay = RelayProcess::start(serve).await;
    let body = EventTemplate::load("appointment-created").with_id("own-variables-1");
    let (status, answer) = Webhook::signed_with(relay.webhook_url(), SECRET, None)
        .deliver(body)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_typo_in_the_config_file_fails_at_start_naming_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[mykaarma]\nsignature_secret = \"s\"\nsignature_secert = \"s\"\n",
            "line 3",
            "signature_secert",
        ),
        (
            "listen = \"127.0.0.1:0\"\n\nadmin_tokn = \"a\"\n[mykaarma]\nsignature_secret = \"s\"\n",
            "line 3",
            "admin_tokn",
        ),
        (
            "[mykaarma]\nsignature_secret = \"s\"\nmax_body_bytes = \"lots\"\n",
            "line 3",
            "max_body_bytes",
        ),
    ];
    for (text, line, key) in cases {
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, text).unwrap();
        let mut serve = command(dir.path());
        serve
            .args(["serve", "--listen", "127.0.0.1:0", "--database"])
            .arg(database_url(dir.path()))
            .arg("--config")
            .arg(&file);
        let output = finish(serve);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {text:?}: {stderr}");
        for needle in [line, key, "relay.toml"] {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
        assert!(!stderr.contains("kaarma-relay listening"), "{stderr}");
    }
}

#[tokio::test]
async fn dev_mode_listens_on_loopback_with_the_dev_secret() {
    const DEV_SECRET: &str = "kaarma-relay-dev-secret";
    let dir = tempfile::tempdir().unwrap();
    let mut serve = command(dir.path());
    // Asked for every interface, dev mode still binds loopback only.
    serve
        .args(["serve", "--dev", "--listen", "0.0.0.0:0", "--database"])
        .arg(database_url(dir.path()));
    let relay = RelayProcess::start(serve).await;
    assert_eq!(
        relay.address.ip().to_string(),
        "127.0.0.1",
        "{}",
        relay.log()
    );
    assert!(
        relay.log().contains(DEV_SECRET),
        "dev mode prints the secret to sign with: {}",
        relay.log()
    );

    let body = EventTemplate::load("appointment-created").with_id("dev-mode-1");
    let (status, _) = Webhook::signed_with(relay.webhook_url(), "not-the-dev-secret", None)
        .deliver(body.clone())
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, answer) = Webhook::signed_with(relay.webhook_url(), DEV_SECRET, None)
        .deliver(body)
        .await
        .unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
}

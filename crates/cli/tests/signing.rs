//! `sign`, `verify` and `send`: the sender's side of the signature, checked against the
//! contract library and against a real `serve`.

mod relay_process;

use std::path::PathBuf;

use relay_process::{
    EventTemplate, RelayProcess, SECRET, TOKEN, command, finish, fixture, fixture_path, serve,
};

const FIXTURES: [&str; 4] = [
    "events/appointment-created.json",
    "events/appointment-legacy-envelope.json",
    "events/customer.json",
    "bad-inputs/cases.json",
];

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn sign_prints_the_header_value_the_contract_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let mut sign = command(dir.path());
        sign.args(["sign", "--secret", SECRET])
            .arg(fixture_path(name));
        let output = finish(sign);
        assert!(output.status.success(), "{name}: {output:?}");
        let printed = stdout(&output);
        let value = printed
            .strip_suffix('\n')
            .expect("one line, newline-terminated");
        assert!(
            !value.contains('\n'),
            "{name}: more than one line: {printed:?}"
        );
        let digest = value.strip_prefix("sha256=").expect("`sha256=` prefix");
        assert!(
            digest.len() == 64 && digest.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{name}: not 64 lowercase hex digits: {digest:?}"
        );
        assert_eq!(
            value,
            mykaarma::signature::sign(SECRET.as_bytes(), &fixture(name)),
            "{name}"
        );
    }
}

#[test]
fn verify_exits_zero_only_for_the_right_signature() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture_path("events/appointment-created.json");
    let body = fixture("events/appointment-created.json");
    let good = mykaarma::signature::sign(SECRET.as_bytes(), &body);
    let tampered_file = dir.path().join("tampered.json");
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    std::fs::write(&tampered_file, &tampered).unwrap();
    let flipped = {
        let mut value = good.clone().into_bytes();
        let last = value.len() - 1;
        value[last] = if value[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(value).unwrap()
    };

    let run = |secret: &str, signature: &str, file: &PathBuf| {
        let mut verify = command(dir.path());
        verify
            .args(["verify", "--secret", secret, "--signature", signature])
            .arg(file);
        finish(verify)
    };
    let cases: [(&str, String, &PathBuf, bool); 7] = [
        ("the right signature", good.clone(), &file, true),
        (
            "upper-case hex",
            good.to_uppercase().replace("SHA256=", "sha256="),
            &file,
            true,
        ),
        (
            "another secret",
            mykaarma::signature::sign(b"other", &body),
            &file,
            false,
        ),
        ("one digit flipped", flipped, &file, false),
        ("a tampered body", good.clone(), &tampered_file, false),
        ("not a signature", "garbage".to_owned(), &file, false),
        (
            "another algorithm",
            good.replace("sha256=", "sha1="),
            &file,
            false,
        ),
    ];
    for (case, signature, file, valid) in cases {
        let output = run(SECRET, &signature, file);
        assert_eq!(output.status.success(), valid, "{case}: {output:?}");
    }
}

#[tokio::test]
async fn send_posts_each_file_and_exits_non_zero_unless_all_were_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start(serve(dir.path())).await;
    let files: Vec<PathBuf> = ["appointment-created", "customer", "mpi"]
        .iter()
        .map(|name| fixture_path(&format!("events/{name}.json")))
        .collect();
    let send = |secret: &str, token: Option<&str>, files: &[PathBuf]| {
        let mut send = command(dir.path());
        send.args(["send", "--url", &relay.webhook_url(), "--secret", secret]);
        if let Some(token) = token {
            send.args(["--token", token]);
        }
        send.args(files);
        let output = finish(send);
        let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
        (output.status.success(), lines)
    };
    let answered = |line: &str, file: &PathBuf, status: &str| {
        line.starts_with(&file.display().to_string()) && line.contains(&format!(" {status} "))
    };

    let (ok, lines) = send(SECRET, Some(TOKEN), &files);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), files.len(), "one line per file: {lines:?}");
    for (line, file) in lines.iter().zip(&files) {
        assert!(
            answered(line, file, "200") && line.contains("accepted"),
            "{line}"
        );
    }

    // Sent again: duplicates are still 2xx.
    let (ok, lines) = send(SECRET, Some(TOKEN), &files[..1]);
    assert!(
        ok && lines.len() == 1 && lines[0].contains("duplicate"),
        "{lines:?}"
    );

    // A verified body that is not an envelope is quarantined: 202, still a success.
    let not_json = dir.path().join("not-json.txt");
    std::fs::write(&not_json, "this is not an envelope").unwrap();
    let (ok, lines) = send(SECRET, Some(TOKEN), std::slice::from_ref(&not_json));
    assert!(ok && answered(&lines[0], &not_json, "202"), "{lines:?}");

    // A wrong secret or a missing token: 401, and the exit status says so, even when
    // another file in the same run went through.
    let fresh = dir.path().join("fresh.json");
    std::fs::write(
        &fresh,
        EventTemplate::load("appointment-rescheduled").with_id("send-fresh-1"),
    )
    .unwrap();
    let (ok, lines) = send("wrong-secret", Some(TOKEN), &files[..1]);
    assert!(!ok && answered(&lines[0], &files[0], "401"), "{lines:?}");
    let (ok, lines) = send(SECRET, None, &files[..1]);
    assert!(!ok && answered(&lines[0], &files[0], "401"), "{lines:?}");
    let (ok, lines) = send(
        SECRET,
        Some(TOKEN),
        &[fresh.clone(), PathBuf::from("/nonexistent")],
    );
    assert!(!ok, "a missing file fails the run: {lines:?}");

    let stored = relay.stored_events().await;
    let counts: Vec<(&str, i64)> = stored
        .iter()
        .map(|event| (event.event_type.as_str(), event.delivery_count))
        .collect();
    assert_eq!(
        &counts[..3],
        [("appointments", 2), ("customers", 1), ("mpis", 1)],
        "{stored:?}"
    );
}

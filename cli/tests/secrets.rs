#![allow(clippy::unwrap_used)]
//! Secrets are never printed (docs/security.md): a job whose credentials
//! come from `${IOTQL_TEST_SECRET}` (a unique string) or are written in the
//! file goes through `iotql explain`, `iotql check --print`, a failing
//! `iotql run` (a webhook that cannot be reached: dead letters) and the
//! REPL's `.inputs` and `.save`; no output, log line, error or dead letter
//! holds a secret. A missing variable is an error with its place.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use expectrl::{Regex, Session};

const SECRET: &str = "uniq-secret-8d41c7a9";
/// Secrets written in the job file itself.
const LITERALS: [&str; 3] = [
    "literal-pg-pw-31b7",
    "T0AAA/B0BBB/literal-slack-9e2",
    "literal-mqtt-pw-55",
];

const READINGS: &str = "device_id,ts,temp
a,2026-01-01T00:00:10Z,40
b,2026-01-01T00:00:20Z,30
";

/// A job with secrets from the environment and in its text.
fn job(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("readings.csv"), READINGS).unwrap();
    let text = format!(
        "CREATE INPUT readings WITH (connector = 'csv', path = 'readings.csv');
CREATE OUTPUT hook WITH (connector = 'webhook', url = 'http://127.0.0.1:1/hook?token=${{IOTQL_TEST_SECRET}}',
    headers = 'Authorization: Bearer ${{IOTQL_TEST_SECRET}}', retries = '0', timeout = '1s', drain_timeout = '1s');
CREATE OUTPUT db WITH (connector = 'postgres', url = 'postgres://iot:{}@127.0.0.1:1/db', table = 't');
CREATE OUTPUT team WITH (connector = 'slack', url = 'https://hooks.slack.com/services/{}');
CREATE OUTPUT broker WITH (connector = 'mqtt', host = '127.0.0.1', port = '1', topic = 'a',
    username = 'iot', password = '{}');

SELECT device_id, temp INTO hook FROM readings WHERE temp > 35;
",
        LITERALS[0], LITERALS[1], LITERALS[2]
    );
    let path = dir.join("job.asaql");
    std::fs::write(&path, text).unwrap();
    path
}

fn iotql(dir: &Path, args: &[&str], secret: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iotql"));
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("IOTQL_LOG", "debug");
    if secret {
        command.env("IOTQL_TEST_SECRET", SECRET);
    } else {
        command.env_remove("IOTQL_TEST_SECRET");
    }
    command.output().unwrap()
}

/// Stdout and stderr of `out`, checked for every secret.
fn assert_no_secret(what: &str, text: &str) {
    for s in std::iter::once(SECRET).chain(LITERALS) {
        assert!(!text.contains(s), "{what} shows `{s}`:\n{text}");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn explain_check_and_a_failing_run_never_print_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path());
    let job = job.to_str().unwrap();

    let out = iotql(dir.path(), &["explain", job], true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_no_secret("explain", &text(&out));

    let out = iotql(dir.path(), &["check", "--print", job], true);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_no_secret("check --print", &shown);
    // Webhook URLs lose their query and token path; the listing says the
    // variable is set.
    assert!(shown.contains("url = 'http://127.0.0.1:1/hook'"), "{shown}");
    assert!(shown.contains("IOTQL_TEST_SECRET (set)"), "{shown}");
    assert!(shown.contains("password = '***'"), "{shown}");

    // The webhook cannot be reached: its rows become dead letters.
    let dead = dir.path().join("dead.jsonl");
    let out = iotql(
        dir.path(),
        &["run", job, "--dead-letter", dead.to_str().unwrap()],
        true,
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("dead letters: 1"), "{shown}");
    assert_no_secret("run", &shown);
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert!(letters.contains("hook"), "{letters}");
    assert_no_secret("the dead letters", &letters);
}

#[test]
fn a_missing_variable_is_an_error_with_its_place_unless_allowed_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path());
    let job = job.to_str().unwrap();
    for args in [vec!["check", job], vec!["run", job]] {
        let out = iotql(dir.path(), &args, false);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(
            shown.contains("job.asaql:2:")
                && shown.contains("output `hook`, option `url`")
                && shown.contains("`IOTQL_TEST_SECRET` is not set"),
            "{shown}"
        );
        // The source lines under the caret hide the file's own secrets.
        assert_no_secret("the diagnostic", &shown);
    }
    let out = iotql(dir.path(), &["check", "--allow-missing-env", job], false);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("IOTQL_TEST_SECRET (not set)"), "{shown}");
    // explain needs no value.
    let out = iotql(dir.path(), &["explain", job], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn the_repl_lists_and_saves_inputs_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    job(dir.path());
    let mut command = Command::new(env!("CARGO_BIN_EXE_iotql"));
    command
        .args([
            "repl",
            "--input",
            "readings=csv:readings.csv",
            "--input",
            "live=kafka://127.0.0.1:1/t?security_protocol=sasl_ssl&sasl_username=iot&sasl_password=${IOTQL_TEST_SECRET}",
        ])
        .current_dir(dir.path())
        .env("IOTQL_TEST_SECRET", SECRET)
        .env("IOTQL_HISTORY", dir.path().join("history"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("IOTQL_LOG", "debug");
    let mut session = Session::spawn(command).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    let mut seen = String::new();
    let mut until = |session: &mut Session, send: Option<&str>, pattern: &str| {
        if let Some(line) = send {
            session.send(line).unwrap();
            session.send("\r").unwrap();
        }
        let found = session.expect(Regex(pattern)).unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(found.before()),
            String::from_utf8_lossy(found.as_bytes())
        );
        seen.push_str(&shown);
        shown
    };
    until(&mut session, None, "iotql> ");
    until(&mut session, Some(".load job.asaql"), "loaded from[^\n]*\n");
    until(&mut session, None, "iotql> ");
    let listed = until(&mut session, Some(".inputs"), "broker[^\n]*declared");
    until(&mut session, None, "iotql> ");
    assert!(
        listed.contains("sasl_password=${IOTQL_TEST_SECRET}"),
        "{listed}"
    );
    assert!(listed.contains("iot:***@127.0.0.1"), "{listed}");
    until(
        &mut session,
        Some("SELECT device_id, temp FROM readings;"),
        "iotql> ",
    );
    until(&mut session, Some(".save saved.asaql"), "iotql> ");
    session.send(".quit\r").unwrap();
    let _ = session.expect(expectrl::Eof);
    assert_no_secret("the REPL", &seen);
    let saved = std::fs::read_to_string(dir.path().join("saved.asaql")).unwrap();
    // `.save` writes the reference, not the value.
    assert!(saved.contains("${IOTQL_TEST_SECRET}"), "{saved}");
    assert!(!saved.contains(SECRET), "{saved}");
}

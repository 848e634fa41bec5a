//! The dashboard over plain HTTP: the page and its JSON with their
//! security headers, no secret in the JSON, and the action routes: absent
//! without `control_token_file`, 401 without the right token (changing
//! nothing), 429 after repeated failures, and a restart with the token.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{get, http, http_body, secs, wait_until, Kelpie, BIN};

const TOKEN: &str = "s3cret-dashboard-token";
/// A value only a program's environment holds; it must never reach the
/// dashboard's JSON.
const ENV_SECRET: &str = "env-value-7f3a9c1e";

fn token_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("  {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config(token: Option<&Path>) -> String {
    let token = token
        .map(|p| format!("control_token_file = {:?}\n", p.to_str().unwrap()))
        .unwrap_or_default();
    format!(
        r#"
[supervisor]
http_listen = "127.0.0.1:0"
{token}
[program.web]
command = ["sleep", "1000"]
start_seconds = "0s"
environment = {{ API_KEY = "{ENV_SECRET}" }}
"#
    )
}

/// `POST path` with `{}` and, if given, `Authorization: Bearer TOKEN`.
fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> common::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    http_body(addr, "POST", path, &headers, "{}")
}

/// kelpie with `config` and an owner-only token file; the directory
/// holding the file lives as long as the returned guard.
fn start_with_token() -> (tempfile::TempDir, Kelpie) {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), 0o600);
    let k = Kelpie::start(&config(Some(&token)));
    (dir, k)
}

fn pid_of(k: &Kelpie) -> i64 {
    k.wait_running("web")[0]
}

fn assert_security_headers(reply: &common::Reply, what: &str) {
    let csp = reply
        .header("Content-Security-Policy")
        .unwrap_or_else(|| panic!("{what}: no CSP in {:?}", reply.headers));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: {directive} missing in {csp}"
        );
    }
    assert_eq!(reply.header("X-Frame-Options"), Some("DENY"), "{what}");
    assert_eq!(
        reply.header("Referrer-Policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        reply.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(reply.header("Cache-Control"), Some("no-store"), "{what}");
}

#[test]
fn page_and_json_have_security_headers_and_no_secrets() {
    let k = Kelpie::start(&config(None));
    let addr = k.http_addr();
    pid_of(&k);
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("/dashboard.js"), "{}", page.body);
    assert_security_headers(&page, "/");
    for asset in ["/dashboard.js", "/dashboard.css"] {
        let reply = get(addr, asset);
        assert_eq!(reply.status, 200, "{asset}");
        assert_security_headers(&reply, asset);
    }
    let json = wait_until("web's pid in /dashboard.json", secs(10.0), || {
        let reply = get(addr, "/dashboard.json?program=web");
        (reply.status == 200 && reply.json()["programs"][0]["instances"][0]["pid"].is_i64())
            .then_some(reply)
    });
    assert_security_headers(&json, "/dashboard.json");
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    let value = json.json();
    assert_eq!(value["programs"][0]["name"], "web");
    assert_eq!(value["programs"][0]["state"], "running");
    assert_eq!(value["actions"], false);
    assert!(!json.body.contains(ENV_SECRET), "{}", json.body);
    assert!(!json.body.contains("API_KEY"), "{}", json.body);
    assert!(
        !json.body.contains("sleep"),
        "the command line leaked: {}",
        json.body
    );
}

#[test]
fn no_action_routes_without_a_token_file() {
    let k = Kelpie::start(&config(None));
    let addr = k.http_addr();
    let before = pid_of(&k);
    for token in [None, Some(TOKEN)] {
        let reply = post(addr, "/api/programs/web/restart", token);
        assert_eq!(reply.status, 404, "{reply:?}");
    }
    assert_eq!(
        http(addr, "GET", "/api/programs/web/restart", &[]).status,
        404
    );
    assert_eq!(pid_of(&k), before);
}

#[test]
fn actions_need_the_token() {
    let (_dir, k) = start_with_token();
    let addr = k.http_addr();
    let before = pid_of(&k);
    wait_until("actions in /dashboard.json", secs(10.0), || {
        let reply = get(addr, "/dashboard.json");
        (reply.status == 200 && reply.json()["actions"] == true).then_some(())
    });

    let none = post(addr, "/api/programs/web/restart", None);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.json()["code"], "unauthorized");
    assert_eq!(none.header("WWW-Authenticate"), Some("Bearer"));
    let wrong = post(addr, "/api/programs/web/restart", Some("not-the-token"));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert_eq!(pid_of(&k), before, "a refused action changed the program");
    // The failure is logged, without what was sent.
    k.wait_nth(2, "two dashboard_auth_failed events", secs(5.0), |e| {
        e["event"] == "dashboard_auth_failed"
    });
    assert!(
        !k.lines().join("\n").contains("not-the-token"),
        "the token reached the log"
    );

    let ok = post(addr, "/api/programs/web/restart", Some(TOKEN));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["ok"], true, "{}", ok.body);
    let after = pid_of(&k);
    assert_ne!(after, before, "the restart did not change the pid");
    assert!(
        !k.lines().join("\n").contains(TOKEN),
        "the token reached the log"
    );
}

#[test]
fn repeated_failures_get_429_with_retry_after() {
    let (_dir, k) = start_with_token();
    let addr = k.http_addr();
    let before = pid_of(&k);
    let statuses: Vec<(u16, Option<String>)> = (0..20)
        .map(|n| {
            let wrong = format!("wrong-{n}");
            let reply = post(addr, "/api/programs/web/stop", Some(&wrong));
            (
                reply.status,
                reply.header("Retry-After").map(str::to_string),
            )
        })
        .collect();
    assert!(
        statuses[..10].iter().all(|(s, _)| *s == 401),
        "{statuses:?}"
    );
    for (status, retry_after) in &statuses[10..] {
        assert_eq!(*status, 429, "{statuses:?}");
        let seconds: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&seconds), "{statuses:?}");
    }
    // Locked out: even the right token waits for the window to end.
    let locked = post(addr, "/api/programs/web/stop", Some(TOKEN));
    assert_eq!(locked.status, 429);
    assert_eq!(pid_of(&k), before);
}

#[test]
fn dashboard_false_turns_the_page_and_the_actions_off() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), 0o600);
    let k = Kelpie::start(
        &config(Some(&token)).replace("[supervisor]\n", "[supervisor]\ndashboard = false\n"),
    );
    let addr = k.http_addr();
    let before = pid_of(&k);
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/dashboard.json").status, 404);
    let refused = post(addr, "/api/programs/web/restart", Some(TOKEN));
    assert_eq!(refused.status, 404, "{refused:?}");
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(pid_of(&k), before, "an action ran with dashboard = false");
}

#[test]
fn a_dashboard_on_a_non_loopback_address_is_warned_about() {
    let exposed = Kelpie::start(&config(None).replace("127.0.0.1:0", "0.0.0.0:0"));
    let warning = exposed.wait_nth(1, "the dashboard_exposed warning", secs(10.0), |e| {
        e["event"] == "dashboard_exposed"
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("set dashboard = false"),
        "{warning}"
    );
    // On loopback, or with the page off, there is nothing to warn about.
    let off = config(None)
        .replace("127.0.0.1:0", "0.0.0.0:0")
        .replace("[supervisor]\n", "[supervisor]\ndashboard = false\n");
    for quiet in [Kelpie::start(&config(None)), Kelpie::start(&off)] {
        quiet.wait_control();
        pid_of(&quiet);
        // Logged after any warning of the start, so the log read this far
        // holds it if there was one.
        quiet.signal("TERM");
        quiet.wait_event("shutdown_complete", "", secs(10.0));
        assert!(
            !quiet.lines().join("\n").contains("dashboard_exposed"),
            "{:?}",
            quiet.lines()
        );
    }
}

#[test]
fn check_refuses_a_token_file_others_can_read() {
    for mode in [0o640, 0o604] {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(dir.path(), mode);
        let config_path = dir.path().join("supervisor.toml");
        std::fs::write(&config_path, config(Some(&token))).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check", "-c"])
            .arg(&config_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        let expected = format!(
            "supervisor.toml:4:22: supervisor.control_token_file: \"{}\": mode {mode:04o} gives group or other users access to the token",
            token.display()
        );
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
    // Owner-only is accepted.
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), 0o600);
    let config_path = dir.path().join("supervisor.toml");
    std::fs::write(&config_path, config(Some(&token))).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The global restart budget: 20 programs crashing together every 100 ms
//! with `restart_budget = { max = 5, per = "1s" }` restart at most 5 times
//! per second in total, and none is lost: once the storm ends, every
//! program is restarted.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{secs, wait_until, Kelpie, Options};

fn config() -> String {
    let mut config = String::from(
        "[supervisor]\nhttp_listen = \"127.0.0.1:0\"\nrestart_budget = { max = 5, per = \"1s\" }\n",
    );
    for n in 0..20 {
        config.push_str(&format!(
            "\n[program.p{n}]\n\
             command = [\"sh\", \"-c\", \"test -e {{dir}}/storm && {{ sleep 0.1; exit 1; }}; exec sleep 1000\"]\n\
             start_seconds = \"0s\"\n\
             backoff = {{ initial = \"10ms\", max = \"10ms\", jitter = 0.0 }}\n\
             max_restarts = 10000\n\
             restart_window = \"1s\"\n"
        ));
    }
    config
}

#[test]
fn a_crash_storm_restarts_at_the_budget_rate_and_loses_no_program() {
    let mut k = Kelpie::start_with(
        &config(),
        Options {
            wrapper: Some("touch storm"),
            ..Options::default()
        },
    );
    k.wait_control();
    let started = |e: &serde_json::Value| e["event"] == "program_started";
    // 20 first starts, then restarts: the 1st and the 26th restart are
    // at least 5 windows of 1 s apart when at most 5 fit in a window.
    let first_restart = k.wait_nth(21, "the first restart", secs(10.0), started);
    let restart_26 = k.wait_nth(46, "the 26th restart", secs(20.0), started);
    let span = common::timestamp(&restart_26)
        .duration_since(common::timestamp(&first_restart))
        .unwrap();
    assert!(
        span >= secs(4.9),
        "26 restarts within {span:?}: more than 5 per second"
    );
    k.wait_event("restart_budget_exhausted", "", secs(1.0));
    let metrics = common::get(k.http_addr(), "/metrics").body;
    assert!(
        metrics.contains("kelpie_restart_budget_available "),
        "the gauge is exposed"
    );
    let delayed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kelpie_restarts_delayed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(delayed > 0.0, "restarts were held back:\n{metrics}");
    // Waiting programs show why.
    let status = k.ctl(&["status", "--json"]).expect(0).json();
    let waiting = status["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["instances"][0]["reason"] == "restart budget exhausted")
        .count();
    assert!(waiting > 0, "{status}");

    // The storm ends: every program gets its turn and stays up.
    std::fs::remove_file(k.path("storm")).unwrap();
    for n in 0..20 {
        k.wait_running(&format!("p{n}"));
    }
    wait_until("every program running", secs(20.0), || {
        let status = k.ctl(&["status", "--json"]).expect(0).json();
        status["programs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running")
            .then_some(())
    });
    k.signal("TERM");
    assert!(k.wait_exit(secs(15.0)).success());
}

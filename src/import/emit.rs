//! A `Draft` as supervisor.toml text. The same draft always gives the same
//! bytes (no timestamps, no absolute paths the source did not write, maps
//! sorted), so a re-import shows in `diff` only what changed in the source.

use std::fmt::Write as _;

use super::draft::{Draft, Dropped, Log, Probe, ProbeTarget, Program};
use super::Format;
use crate::config::print::{duration, float, inline, key, string, strings};
use crate::config::template::escape;
use crate::limits::UNLIMITED;

/// The whole file: a header naming the sources, `[supervisor]` when the
/// source set any of it, then every program and group. Keys dropped from a
/// program are commented at its table; the rest under the header.
pub fn to_toml(draft: &Draft, format: Format, sources: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `kelpie import {}` from {}.",
        format.name(),
        sources.join(", ")
    );
    let _ = writeln!(
        out,
        "# Lines starting \"# kelpie import:\" mark what was translated with a \
         difference or not carried over; see docs/migrating.md."
    );
    let global: Vec<&Dropped> = draft
        .dropped
        .iter()
        .filter(|d| {
            d.program
                .as_ref()
                .is_none_or(|name| !draft.programs.iter().any(|p| &p.name == name))
        })
        .collect();
    for dropped in &global {
        let _ = writeln!(out, "# kelpie import: not carried over: {dropped}");
    }

    let s = &draft.supervisor;
    if s.shutdown_timeout.is_some() || !s.notes.is_empty() {
        let _ = writeln!(out, "\n[supervisor]");
        for note in &s.notes {
            write_comment(&mut out, note);
        }
        if let Some(timeout) = s.shutdown_timeout {
            let _ = writeln!(out, "shutdown_timeout = {}", duration(timeout));
        }
    }

    for program in &draft.programs {
        let dropped: Vec<&Dropped> = draft
            .dropped
            .iter()
            .filter(|d| d.program.as_deref() == Some(program.name.as_str()))
            .collect();
        write_program(&mut out, program, &dropped);
    }

    for group in &draft.groups {
        let _ = writeln!(out, "\n[group.{}]", key(&group.name));
        if let Some(origin) = &group.origin {
            let _ = writeln!(out, "# from {origin}");
        }
        let _ = writeln!(out, "programs = {}", strings(&group.programs));
    }
    out
}

/// A comment, one `#` line per line of `text`.
fn write_comment(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# kelpie import: {line}");
    }
}

fn write_program(out: &mut String, p: &Program, dropped: &[&Dropped]) {
    let table = format!("program.{}", key(&p.name));
    let _ = writeln!(out, "\n[{table}]");
    if let Some(origin) = &p.origin {
        let _ = writeln!(out, "# from {origin}");
    }
    for note in &p.notes {
        write_comment(out, note);
    }
    for d in dropped {
        write_comment(out, &format!("not carried over: {d}"));
    }
    let _ = writeln!(out, "command = {}", strings(&p.command));
    if let Some(dir) = &p.directory {
        let _ = writeln!(out, "directory = {}", string(dir));
    }
    if let Some(file) = &p.env_file {
        let _ = writeln!(out, "env_file = {}", string(file));
    }
    if !p.environment.is_empty() || !p.instance_environment.is_empty() {
        let mut values: std::collections::BTreeMap<&str, String> = p
            .environment
            .iter()
            .map(|(k, v)| (k.as_str(), escape(v)))
            .collect();
        for (k, v) in &p.instance_environment {
            values.insert(k, v.clone());
        }
        let env: Vec<String> = values
            .iter()
            .map(|(k, v)| format!("{} = {}", key(k), string(v)))
            .collect();
        let _ = writeln!(out, "environment = {}", inline(&env));
    }
    if let Some(user) = &p.user {
        let _ = writeln!(out, "user = {}", string(user));
    }
    if let Some(group) = &p.group {
        let _ = writeln!(out, "group = {}", string(group));
    }
    if let Some(umask) = p.umask {
        let _ = writeln!(out, "umask = {}", string(&format!("{umask:03o}")));
    }
    if !p.rlimits.is_empty() {
        let limits: Vec<String> = p
            .rlimits
            .iter()
            .map(|(resource, amount)| match *amount {
                UNLIMITED => format!("{} = \"unlimited\"", resource.name()),
                amount => format!("{} = {amount}", resource.name()),
            })
            .collect();
        let _ = writeln!(out, "rlimits = {}", inline(&limits));
    }
    if let Some(bytes) = p.memory_restart {
        let _ = writeln!(out, "memory_restart = {}", string(&size(bytes)));
    }
    if let Some(n) = p.instances {
        let _ = writeln!(out, "instances = {n}");
    }
    if let Some(on) = p.autostart {
        let _ = writeln!(out, "autostart = {on}");
    }
    if let Some(kind) = p.kind {
        let _ = writeln!(out, "type = {}", string(kind.as_str()));
    }
    if let Some(restart) = p.restart {
        let _ = writeln!(out, "restart = {}", string(restart.as_str()));
    }
    if let Some(codes) = &p.success_codes {
        let codes: Vec<String> = codes.iter().map(u8::to_string).collect();
        let _ = writeln!(out, "success_codes = [{}]", codes.join(", "));
    }
    if let Some(d) = p.start_seconds {
        let _ = writeln!(out, "start_seconds = {}", duration(d));
    }
    if let Some(d) = p.start_timeout {
        let _ = writeln!(out, "start_timeout = {}", duration(d));
    }
    if let Some(b) = &p.backoff {
        let mut entries = vec![
            format!("initial = {}", duration(b.initial)),
            format!("max = {}", duration(b.max)),
        ];
        if let Some(m) = b.multiplier {
            entries.push(format!("multiplier = {}", float(m)));
        }
        if let Some(j) = b.jitter {
            entries.push(format!("jitter = {}", float(j)));
        }
        let _ = writeln!(out, "backoff = {}", inline(&entries));
    }
    if let Some(n) = p.max_restarts {
        let _ = writeln!(out, "max_restarts = {n}");
    }
    if let Some(d) = p.restart_window {
        let _ = writeln!(out, "restart_window = {}", duration(d));
    }
    if p.shutdown_on_failure {
        let _ = writeln!(out, "on_failure = \"shutdown\"");
    }
    if let Some(signal) = &p.stop_signal {
        let _ = writeln!(out, "stop_signal = {}", string(signal));
    }
    if let Some(d) = p.stop_timeout {
        let _ = writeln!(out, "stop_timeout = {}", duration(d));
    }
    if !p.depends_on.is_empty() {
        let deps: Vec<String> = p
            .depends_on
            .iter()
            .map(|(name, condition)| format!("{} = {}", key(name), string(condition.as_str())))
            .collect();
        let _ = writeln!(out, "depends_on = {}", inline(&deps));
    }
    for (block, probe) in [("readiness", &p.readiness), ("liveness", &p.liveness)] {
        if let Some(probe) = probe {
            let _ = writeln!(out, "{block} = {}", probe_table(probe));
        }
    }
    match &p.log {
        None => {}
        Some(Log::Inherit) => {
            let _ = writeln!(out, "log = {{ mode = \"inherit\" }}");
        }
        Some(Log::Discard) => {
            let _ = writeln!(out, "log = {{ mode = \"discard\" }}");
        }
        Some(Log::File {
            file,
            max_size,
            keep,
        }) => {
            let mut entries = vec![
                "mode = \"file\"".to_string(),
                format!("file = {}", string(file)),
            ];
            if let Some(bytes) = max_size {
                entries.push(format!("max_size = {}", string(&bytes.to_string())));
            }
            if let Some(keep) = keep {
                entries.push(format!("keep = {keep}"));
            }
            let _ = writeln!(out, "log = {}", inline(&entries));
        }
    }
}

/// Bytes as kelpie's size string: the largest binary unit that divides
/// them (`"300MiB"`), else plain bytes.
pub fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn probe_table(probe: &Probe) -> String {
    let mut entries = vec![match &probe.target {
        ProbeTarget::Http(url) => format!("http = {}", string(url)),
        ProbeTarget::Tcp(addr) => format!("tcp = {}", string(addr)),
        ProbeTarget::Exec(argv) => format!("exec = {}", strings(argv)),
        ProbeTarget::Log(pattern) => format!("log = {}", string(pattern)),
    }];
    for (name, value) in [
        ("interval", probe.interval),
        ("timeout", probe.timeout),
        ("initial_delay", probe.initial_delay),
    ] {
        if let Some(d) = value {
            entries.push(format!("{name} = {}", duration(d)));
        }
    }
    for (name, value) in [
        ("failure_threshold", probe.failure_threshold),
        ("success_threshold", probe.success_threshold),
    ] {
        if let Some(n) = value {
            entries.push(format!("{name} = {n}"));
        }
    }
    inline(&entries)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{validate, Host, Mode};
    use crate::import::draft::{Backoff, Condition, Group, Kind, Origin, Restart};
    use crate::limits::RlimitResource;

    fn full_program() -> Program {
        Program {
            name: "web app".replace(' ', "-"),
            origin: Some(Origin::new("supervisord.conf", 3)),
            command: vec!["/bin/sh".into(), "-c".into(), "echo \"$HOME\" ${X}".into()],
            directory: Some("/tmp".into()),
            environment: [("A".to_string(), "1 ${literal}".to_string())].into(),
            instance_environment: [("PORT".to_string(), "80${KELPIE_INSTANCE}".to_string())].into(),
            umask: Some(0o22),
            rlimits: [
                (RlimitResource::Nofile, 8192),
                (RlimitResource::Core, UNLIMITED),
            ]
            .into(),
            memory_restart: Some(300 << 20),
            instances: Some(2),
            autostart: Some(false),
            kind: Some(Kind::Service),
            restart: Some(Restart::OnFailure),
            success_codes: Some(vec![0, 2]),
            start_seconds: Some(Duration::from_secs(3)),
            backoff: Some(Backoff::fixed(Duration::from_secs(1))),
            max_restarts: Some(4),
            shutdown_on_failure: true,
            stop_signal: Some("INT".into()),
            stop_timeout: Some(Duration::from_millis(1500)),
            readiness: Some(Probe {
                interval: Some(Duration::from_secs(5)),
                failure_threshold: Some(2),
                ..Probe::new(ProbeTarget::Http(
                    "http://127.0.0.1:8080/${KELPIE_INSTANCE}".into(),
                ))
            }),
            log: Some(Log::File {
                file: "web.log".into(),
                max_size: Some(50_000_000),
                keep: Some(3),
            }),
            notes: vec!["startretries counts differently".into()],
            ..Program::default()
        }
    }

    #[test]
    fn every_key_emitted_is_accepted_by_check() {
        let mut draft = Draft::default();
        draft.programs.push(full_program());
        draft.programs.push(Program {
            name: "db".into(),
            command: vec!["postgres".into()],
            readiness: Some(Probe::new(ProbeTarget::Log("ready to accept".into()))),
            ..Program::default()
        });
        draft.programs[0]
            .depends_on
            .push(("db".into(), Condition::Started));
        draft.groups.push(Group {
            name: "all".into(),
            origin: None,
            programs: vec!["web-app".into(), "db".into()],
        });
        draft.drop_key(
            Origin::new("supervisord.conf", 9),
            Some("web-app"),
            "stdout_events_enabled",
            "kelpie has no event listeners",
        );
        draft.drop_key(
            Origin::new("supervisord.conf", 20),
            None,
            "[eventlistener:x]",
            "kelpie has no event listeners",
        );
        let text = to_toml(&draft, Format::Supervisord, &["supervisord.conf".into()]);
        let validation = validate(
            &text,
            Path::new("/etc/kelpie/supervisor.toml"),
            Mode::Check,
            &Host::current(),
        );
        let errors: Vec<String> = validation.errors().map(|d| d.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}\n{text}");
        let config = validation.config.unwrap_or_else(|| panic!("no config"));
        let web = config
            .program("web-app")
            .unwrap_or_else(|| panic!("{text}"));
        // Literal `${` in the source stays literal.
        assert_eq!(web.environment["A"], "1 $${literal}");
        assert_eq!(web.environment["PORT"], "80${KELPIE_INSTANCE}");
        assert_eq!(web.command[2], "echo \"$HOME\" ${X}");
        assert_eq!(web.instances, 2);
        assert_eq!(web.success_codes, vec![0, 2]);
        assert_eq!(web.stop_timeout, Duration::from_millis(1500));
        let rlimits: Vec<(RlimitResource, u64, u64)> = web
            .limits
            .rlimits
            .iter()
            .map(|r| (r.resource, r.soft, r.hard))
            .collect();
        assert_eq!(
            rlimits,
            [
                (RlimitResource::Core, UNLIMITED, UNLIMITED),
                (RlimitResource::Nofile, 8192, 8192)
            ]
        );
        assert!(
            text.contains("rlimits = { core = \"unlimited\", nofile = 8192 }\n"),
            "{text}"
        );
        let restart = web
            .limits
            .memory_restart
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(
            (restart.threshold, restart.after),
            (300 << 20, crate::limits::MEMORY_RESTART_AFTER)
        );
        assert!(text.contains("memory_restart = \"300MiB\"\n"), "{text}");
        assert!(text.contains("on_failure = \"shutdown\"\n"), "{text}");
        assert!(
            text.contains("readiness = { log = \"ready to accept\" }"),
            "{text}"
        );
        assert!(text.contains(
            "# kelpie import: not carried over: supervisord.conf:9: stdout_events_enabled: kelpie has no event listeners"
        ), "{text}");
        assert!(
            text.contains(
                "# kelpie import: not carried over: supervisord.conf:20: [eventlistener:x]"
            ),
            "{text}"
        );
        assert_eq!(
            text,
            to_toml(&draft, Format::Supervisord, &["supervisord.conf".into()])
        );
    }

    #[test]
    fn sizes_use_the_largest_binary_unit_that_divides_them() {
        let cases = [
            (300 << 20, "300MiB"),
            (1 << 30, "1GiB"),
            (1536 << 20, "1536MiB"),
            (200 << 10, "200KiB"),
            (1000, "1000"),
            (1, "1"),
        ];
        for (bytes, want) in cases {
            assert_eq!(size(bytes), want);
            // kelpie reads it back as the same number of bytes.
            let text = format!(
                "[program.a]\ncommand = [\"/bin/true\"]\nmemory_restart = {}\n",
                string(want)
            );
            let validation = validate(
                &text,
                Path::new("/etc/kelpie/supervisor.toml"),
                Mode::Check,
                &Host::current(),
            );
            let threshold = validation
                .config
                .and_then(|c| c.program("a").and_then(|p| p.limits.memory_restart))
                .map(|r| r.threshold);
            assert_eq!(threshold, Some(bytes), "{want}");
        }
    }
}

//! What `kelpie why` prints: the verdict on one line, then every kept
//! exit, newest first, with the last lines its process wrote indented
//! below it.

use std::time::Duration;

use crate::control::protocol::{ExitInfo, HistoryReply};
use crate::exit_history::duration_text;

/// `web: crash-looping: …`, a blank line, then one block per exit:
///
/// ```text
/// 2026-01-02T03:04:05.678Z  web:0  pid 4242  signal SEGV after 0.2s  -> restart after 1.6s
///     boom
/// ```
pub fn why_lines(reply: &HistoryReply) -> Vec<String> {
    let name = match reply.instance {
        Some(n) => format!("{}:{n}", reply.program),
        None => reply.program.clone(),
    };
    let mut lines = vec![format!("{name}: {}", reply.verdict)];
    if !reply.exits.is_empty() {
        lines.push(String::new());
    }
    for exit in &reply.exits {
        lines.push(exit_line(&reply.program, exit));
        lines.extend(exit.output.iter().map(|l| format!("    {}", l.line)));
    }
    lines
}

fn exit_line(program: &str, exit: &ExitInfo) -> String {
    let mut how = exit.text.clone();
    if exit.oom {
        how.push_str(" (the kernel OOM killer");
        if let Some(cg) = &exit.oom_memcg {
            how.push_str(&format!(", memory cgroup {cg}"));
        }
        how.push(')');
    } else if exit.by_kelpie {
        match &exit.kelpie_reason {
            Some(reason) => how.push_str(&format!(" (sent by kelpie: {reason})")),
            None => how.push_str(" (sent by kelpie)"),
        }
    }
    let ran = duration_text(Duration::from_secs_f64(exit.ran_seconds.max(0.0)));
    format!(
        "{}  {program}:{}  pid {}  {how} after {ran}  -> {}",
        exit.time, exit.instance, exit.pid, exit.decision.text
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ExitDecision, ExitLine};

    fn exit(pid: i32, text: &str, decision: &str) -> ExitInfo {
        ExitInfo {
            time: "2026-01-02T03:04:05.678Z".into(),
            instance: 0,
            pid,
            code: None,
            signal: Some("SEGV".into()),
            kind: "signal".into(),
            text: text.into(),
            by_kelpie: false,
            kelpie_reason: None,
            oom: false,
            oom_evidence: None,
            oom_memcg: None,
            ran_seconds: 0.213,
            decision: ExitDecision {
                action: "restart".into(),
                delay_seconds: Some(1.6),
                reason: None,
                text: decision.into(),
            },
            output: vec![ExitLine {
                stream: "stdout".into(),
                line: "boom".into(),
            }],
        }
    }

    #[test]
    fn the_verdict_comes_first_then_each_exit_with_its_lines() {
        let mut stopped = exit(4200, "signal TERM", "none: stopped on purpose");
        stopped.by_kelpie = true;
        stopped.output.clear();
        let mut oom = exit(4100, "signal KILL", "restart after 1s");
        oom.oom = true;
        oom.oom_memcg = Some("/batch".into());
        let reply = HistoryReply {
            program: "web".into(),
            instance: None,
            state: "stopped".into(),
            verdict: "stopped by kelpie (…)".into(),
            exits: vec![
                stopped,
                exit(4150, "signal SEGV", "restart after 1.6s"),
                oom,
            ],
        };
        assert_eq!(
            why_lines(&reply),
            [
                "web: stopped by kelpie (…)",
                "",
                "2026-01-02T03:04:05.678Z  web:0  pid 4200  signal TERM (sent by kelpie) after 0.2s  -> none: stopped on purpose",
                "2026-01-02T03:04:05.678Z  web:0  pid 4150  signal SEGV after 0.2s  -> restart after 1.6s",
                "    boom",
                "2026-01-02T03:04:05.678Z  web:0  pid 4100  signal KILL (the kernel OOM killer, memory cgroup /batch) after 0.2s  -> restart after 1s",
                "    boom",
            ]
        );
        let quiet = HistoryReply {
            program: "web".into(),
            instance: Some(1),
            state: "running".into(),
            verdict: "running; no exits recorded".into(),
            exits: vec![],
        };
        assert_eq!(why_lines(&quiet), ["web:1: running; no exits recorded"]);
    }
}

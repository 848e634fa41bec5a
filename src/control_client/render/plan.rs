//! What `reload` and `diff` print: the plan, its warnings and a summary.

use crate::control::protocol::ReloadReply;

/// The plan of `reload` / `diff`, one line per program with the names
/// aligned, then each warning, then a summary:
///
/// ```text
/// + api  start
/// - old  stop
/// ~ web  restart (command, environment)
///   db   unchanged
/// warning: supervisor.http_listen changed; the running value stays until kelpie restarts
/// reload applied: 1 to start, 1 to stop, 1 to restart, 1 unchanged
/// ```
///
/// The summary starts with `diff:` instead when nothing was applied.
pub fn plan_lines(reply: &ReloadReply) -> Vec<String> {
    let width = reply
        .plan
        .iter()
        .map(|entry| entry.program.len())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::with_capacity(reply.plan.len() + reply.warnings.len() + 1);
    let mut counts = [0usize; 5];
    for entry in &reply.plan {
        let (mark, slot) = match entry.action.as_str() {
            "start" => ('+', Some(0)),
            "stop" => ('-', Some(1)),
            "restart" => ('~', Some(2)),
            "unchanged" => (' ', Some(3)),
            "roll" => ('~', Some(4)),
            // A newer supervisor may plan something this client does not
            // know: show it rather than hide it.
            _ => ('?', None),
        };
        if let Some(slot) = slot {
            counts[slot] += 1;
        }
        let mut line = format!("{mark} {:<width$}  {}", entry.program, entry.action);
        if !entry.changes.is_empty() {
            line.push_str(&format!(" ({})", entry.changes.join(", ")));
        }
        lines.push(line);
    }
    lines.extend(reply.warnings.iter().map(|w| format!("warning: {w}")));
    let prefix = if reply.applied {
        "reload applied"
    } else {
        "diff"
    };
    // Rolls are listed only when there are any, so the summary of a
    // config without `reload = "rolling"` reads as it always did.
    let rolls = match counts[4] {
        0 => String::new(),
        n => format!(", {n} to roll"),
    };
    lines.push(format!(
        "{prefix}: {} to start, {} to stop, {} to restart{rolls}, {} unchanged",
        counts[0], counts[1], counts[2], counts[3]
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::PlanEntry;

    fn entry(program: &str, action: &str, changes: &[&str]) -> PlanEntry {
        PlanEntry {
            program: program.to_string(),
            action: action.to_string(),
            changes: changes.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn plans_are_aligned_and_summarized() {
        let mut reply = ReloadReply {
            applied: true,
            path: "supervisor.toml".to_string(),
            plan: vec![
                entry("api", "start", &[]),
                entry("old", "stop", &[]),
                entry("web", "restart", &["command", "environment"]),
                entry("db", "unchanged", &[]),
            ],
            warnings: vec!["supervisor.http_listen changed; restart kelpie to apply it".to_string()],
        };
        assert_eq!(
            plan_lines(&reply),
            [
                "+ api  start",
                "- old  stop",
                "~ web  restart (command, environment)",
                "  db   unchanged",
                "warning: supervisor.http_listen changed; restart kelpie to apply it",
                "reload applied: 1 to start, 1 to stop, 1 to restart, 1 unchanged",
            ]
        );
        reply.applied = false;
        reply.warnings.clear();
        reply.plan.push(entry("metrics-exporter", "unchanged", &[]));
        reply.plan.push(entry("x", "rename", &[]));
        let lines = plan_lines(&reply);
        assert_eq!(lines[0], "+ api               start");
        assert_eq!(lines[4], "  metrics-exporter  unchanged");
        assert_eq!(lines[5], "? x                 rename");
        assert_eq!(
            lines[6],
            "diff: 1 to start, 1 to stop, 1 to restart, 2 unchanged"
        );
    }

    #[test]
    fn rolls_are_marked_and_counted_only_when_present() {
        let reply = ReloadReply {
            applied: true,
            path: "supervisor.toml".to_string(),
            plan: vec![
                entry("web", "roll", &["command"]),
                entry("db", "unchanged", &[]),
            ],
            warnings: Vec::new(),
        };
        assert_eq!(
            plan_lines(&reply),
            [
                "~ web  roll (command)",
                "  db   unchanged",
                "reload applied: 0 to start, 0 to stop, 0 to restart, 1 to roll, 1 unchanged",
            ]
        );
    }

    #[test]
    fn an_empty_plan_still_has_a_summary() {
        let reply = ReloadReply {
            applied: false,
            path: "supervisor.toml".to_string(),
            plan: vec![],
            warnings: vec![],
        };
        assert_eq!(
            plan_lines(&reply),
            ["diff: 0 to start, 0 to stop, 0 to restart, 0 unchanged"]
        );
    }
}

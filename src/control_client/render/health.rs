//! What `kelpie ready` and `kelpie health` print: one line answering
//! whether the supervisor (or a program) is ready, or alive at all.

use super::status::format_uptime;
use crate::control::protocol::{HealthReply, ReadyReply};

/// `kelpie ready [NAME]`: `ready`, or `not ready: <reason>`; prefixed
/// with `NAME: ` when asked about one program.
pub fn ready_line(reply: &ReadyReply, program: Option<&str>) -> String {
    let prefix = program.map(|p| format!("{p}: ")).unwrap_or_default();
    match (
        reply.ready,
        reply.reason.as_deref().filter(|r| !r.is_empty()),
    ) {
        (true, _) => format!("{prefix}ready"),
        (false, Some(reason)) => format!("{prefix}not ready: {reason}"),
        (false, None) => format!("{prefix}not ready"),
    }
}

/// `kelpie health`: `ok: kelpie 0.1.0, pid 4100, up 3m12s, config supervisor.toml`.
pub fn health_line(reply: &HealthReply) -> String {
    format!(
        "{}: kelpie {}, pid {}, up {}, config {}",
        reply.status,
        reply.version,
        reply.pid,
        format_uptime(reply.uptime_seconds),
        reply.config
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_health_lines() {
        let ready = ReadyReply {
            ready: true,
            reason: None,
        };
        assert_eq!(ready_line(&ready, None), "ready");
        assert_eq!(ready_line(&ready, Some("db")), "db: ready");
        let not = ReadyReply {
            ready: false,
            reason: Some("web:0 is starting".to_string()),
        };
        assert_eq!(ready_line(&not, None), "not ready: web:0 is starting");
        assert_eq!(
            ready_line(&not, Some("web")),
            "web: not ready: web:0 is starting"
        );
        let health = HealthReply {
            status: "ok".to_string(),
            version: "0.1.0".to_string(),
            pid: 4100,
            uptime_seconds: 192,
            config: "supervisor.toml".to_string(),
        };
        assert_eq!(
            health_line(&health),
            "ok: kelpie 0.1.0, pid 4100, up 3m12s, config supervisor.toml"
        );
    }
}

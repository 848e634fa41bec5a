//! What `kelpie config --running` prints: a header line saying the text is
//! the running supervisor's config and when it was loaded, then the TOML
//! exactly as `kelpie config` prints a file.

use std::time::{Duration, SystemTime};

use super::status::format_uptime;
use crate::control::protocol::ConfigReply;

/// The header and the config; `now` is the client's clock (the supervisor
/// is on the same host).
pub fn running_config_text(reply: &ConfigReply, now: SystemTime) -> String {
    let loaded = Duration::try_from_secs_f64(reply.loaded_at)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d));
    let when = match loaded {
        Some(at) => format!(
            " at {} ({} ago)",
            humantime::format_rfc3339_seconds(at),
            format_uptime(now.duration_since(at).unwrap_or_default().as_secs())
        ),
        None => String::new(),
    };
    format!(
        "# kelpie config --running: the config the running supervisor uses, \
         loaded from {}{when}\n\n{}",
        reply.path, reply.toml
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_source_and_the_load_time() {
        let reply = ConfigReply {
            path: "/etc/kelpie/supervisor.toml".into(),
            loaded_at: 1_700_000_000.0,
            toml: "[supervisor]\nhttp_listen = \"off\"\n".into(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_192);
        assert_eq!(
            running_config_text(&reply, now),
            "# kelpie config --running: the config the running supervisor uses, \
             loaded from /etc/kelpie/supervisor.toml at 2023-11-14T22:13:20Z (3m12s ago)\n\
             \n\
             [supervisor]\nhttp_listen = \"off\"\n"
        );
        let odd = ConfigReply {
            loaded_at: f64::NAN,
            ..reply
        };
        assert!(running_config_text(&odd, now)
            .starts_with("# kelpie config --running: the config the running supervisor uses, loaded from /etc/kelpie/supervisor.toml\n\n"));
    }
}

//! What every control command prints when the supervisor refused or
//! failed a request: one line, then the details it sent.

use crate::control::protocol::ErrorReply;

/// The one-line error: `kelpie: <error>`.
pub fn error_line(error: &ErrorReply) -> String {
    format!("kelpie: {}", error.error)
}

/// `error_line`, then each detail as sent (for a refused reload: every
/// config error as `file:line:col: key: message`, like `kelpie check`).
pub fn error_lines(error: &ErrorReply) -> Vec<String> {
    std::iter::once(error_line(error))
        .chain(error.details.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_then_details() {
        let error = ErrorReply {
            error: "the config is invalid; the running config was kept".to_string(),
            code: "config_invalid".to_string(),
            request_id: "r1".to_string(),
            details: vec!["supervisor.toml:3:11: program.web.restart: invalid value".to_string()],
        };
        assert_eq!(
            error_line(&error),
            "kelpie: the config is invalid; the running config was kept"
        );
        assert_eq!(
            error_lines(&error),
            [
                "kelpie: the config is invalid; the running config was kept",
                "supervisor.toml:3:11: program.web.restart: invalid value",
            ]
        );
    }
}

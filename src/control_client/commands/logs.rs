//! `kelpie logs`: one program, one instance (`web:1`) or every program;
//! the recent lines, then with `-f` new ones until interrupted.

use std::io::Write;

use hyper::Method;

use super::{client, quick, segment, Failure, Outcome};
use crate::cli::ControlOpts;
use crate::control::protocol::{log_event, LogEvent, ProgramInfo, ProgramsReply};
use crate::control_client::render::{self, LogStyle};

pub(super) struct LogsArgs {
    pub name: Option<String>,
    pub follow: bool,
    pub lines: u32,
    pub prefix: bool,
    pub timestamps: bool,
    pub json: bool,
}

/// `web:1` → (`web`, Some(1)). Program names cannot contain ':', so
/// anything else is a name as it is (and then names no program).
fn split_instance(name: &str) -> (&str, Option<u32>) {
    match name.split_once(':') {
        Some((program, index)) => match index.parse() {
            Ok(index) => (program, Some(index)),
            Err(_) => (name, None),
        },
        None => (name, None),
    }
}

pub(super) async fn logs(args: LogsArgs, control: &ControlOpts) -> Outcome {
    // Only the last MAX_LOG_LINES are kept; asking for more shows them all.
    let lines = args.lines.min(crate::cli::MAX_LOG_LINES);
    let follow = args.follow;
    let query = format!("lines={lines}&follow={follow}");
    let mut style = LogStyle {
        prefix: args.prefix,
        timestamps: args.timestamps,
    };
    // With one program shown, its name; every program's lines are then
    // prefixed once a line of another one (added by a reload) arrives.
    let (path, shown) = match &args.name {
        Some(name) => {
            let (program, instance) = split_instance(name);
            let info: ProgramInfo = quick(
                control,
                Method::GET,
                &format!("/v1/programs/{}", segment(program)),
            )
            .await?;
            style.prefix |= instance.is_none() && info.instances.len() > 1;
            let path = format!("/v1/programs/{}/logs?{query}", segment(name));
            (path, Some(program.to_string()))
        }
        None => {
            let reply: ProgramsReply = quick(control, Method::GET, "/v1/programs").await?;
            let one = match reply.programs.as_slice() {
                [only] if only.instances.len() <= 1 => Some(only.name.clone()),
                _ => None,
            };
            style.prefix |= one.is_none();
            (format!("/v1/logs?{query}"), one)
        }
    };
    let client = client(control);
    let mut stream = client.stream(Method::GET, &path, None).await?;
    if !(200..300).contains(&stream.status) {
        return Err(stream.collect_error().await.into());
    }
    let mut stdout = std::io::stdout();
    while let Some(line) = stream.next_line().await? {
        let mut event: LogEvent = match serde_json::from_slice(&line) {
            Ok(event) => event,
            Err(err) => {
                return Err(Failure::new(
                    1,
                    format!("kelpie: bad log record from the supervisor: {err}"),
                ))
            }
        };
        match &mut event {
            LogEvent::Skipped { skipped, .. } => {
                eprintln!("{}", render::skipped_notice(*skipped));
                if !args.json {
                    continue;
                }
            }
            LogEvent::Event { event, program, .. } if event == log_event::REMOVED => {
                eprintln!("{}", render::removed_notice(program));
                if !args.json {
                    continue;
                }
            }
            LogEvent::Line { program, .. } | LogEvent::Event { program, .. } => {
                // A supervisor older than the field names no program.
                if program.is_empty() {
                    if let Some(shown) = &shown {
                        program.clone_from(shown);
                    }
                }
                if shown.as_ref().is_some_and(|shown| shown != program) {
                    style.prefix = true;
                }
            }
        }
        let text = if args.json {
            Some(String::from_utf8_lossy(&line).into_owned())
        } else {
            render::log_line(&event, style)
        };
        if let Some(text) = text {
            // A closed stdout (`| head`) ends the command quietly.
            if writeln!(stdout, "{text}").is_err() {
                return Ok(0);
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_suffixes_are_split_off() {
        assert_eq!(split_instance("web:1"), ("web", Some(1)));
        assert_eq!(split_instance("web"), ("web", None));
        assert_eq!(split_instance("web:x"), ("web:x", None));
    }
}

//! `numprocs` processes as kelpie instances. supervisord numbers them
//! `numprocs_start` … and formats `%(process_num)02d` per process; kelpie
//! numbers instances from 0 and sets `KELPIE_INSTANCE` in each one's
//! environment, expanding `${KELPIE_INSTANCE}` in `environment` values but
//! not in `command` or `directory`. So:
//!
//! - an environment value whose numbers are a fixed prefix followed by the
//!   instance index (`%(process_num)s` from 0, `%(process_num)02d` for at
//!   most 10 processes from 0, …) becomes `"…${KELPIE_INSTANCE}"`;
//! - anything else that differs per process (a command argument, the
//!   directory, a value with an offset or a width kelpie cannot write) is
//!   computed by `/bin/sh` from `$KELPIE_INSTANCE` before it `exec`s the
//!   program, so the program is still the process kelpie signals.

use std::collections::BTreeMap;

use super::expand::{literal, render, Seg, Spec};
use crate::config::template::escape;

/// A program's numbering: `count` processes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    pub start: i64,
    pub count: u32,
}

/// What kelpie's keys end up holding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translated {
    pub command: Vec<String>,
    pub directory: Option<String>,
    /// Literal values.
    pub environment: BTreeMap<String, String>,
    /// Values in kelpie's template syntax (`${KELPIE_INSTANCE}`).
    pub instance_environment: BTreeMap<String, String>,
    pub notes: Vec<String>,
    /// Variables that differ per process but cannot be set by the shell
    /// (their names are not shell names): `(name, why)`.
    pub unset: Vec<(String, String)>,
}

/// The fixed text before the instance index when `spec` formats process
/// number `start + i` as that text followed by `i` for every instance.
fn prefix_of(spec: &Spec, numbering: Numbering) -> Option<String> {
    let first = spec.format_int(numbering.start);
    let prefix = first.strip_suffix('0')?.to_string();
    (0..i64::from(numbering.count))
        .all(|i| spec.format_int(numbering.start + i) == format!("{prefix}{i}"))
        .then_some(prefix)
}

/// `segs` as a kelpie environment template, when every number in it is
/// a prefix and the index.
fn as_template(segs: &[Seg], numbering: Numbering) -> Option<String> {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Lit(t) => out.push_str(&escape(t)),
            Seg::Num(spec) => {
                out.push_str(&escape(&prefix_of(spec, numbering)?));
                out.push_str("${KELPIE_INSTANCE}");
            }
        }
    }
    Some(out)
}

/// `segs` as one shell word, computing numbers from `$KELPIE_INSTANCE`.
fn shell_word(segs: &[Seg], numbering: Numbering) -> String {
    if let Some(text) = literal(segs) {
        let plain = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
        if plain {
            return text;
        }
    }
    let mut out = String::from("\"");
    for seg in segs {
        match seg {
            Seg::Lit(t) => {
                for c in t.chars() {
                    if matches!(c, '"' | '\\' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            Seg::Num(spec) => out.push_str(&shell_number(spec, numbering)),
        }
    }
    out.push('"');
    out
}

fn shell_number(spec: &Spec, numbering: Numbering) -> String {
    if let Some(prefix) = prefix_of(spec, numbering) {
        let mut out = String::new();
        for c in prefix.chars() {
            if matches!(c, '"' | '\\' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        return out + "${KELPIE_INSTANCE}";
    }
    let number = if numbering.start == 0 {
        "$KELPIE_INSTANCE".to_string()
    } else {
        format!("$((KELPIE_INSTANCE + {}))", numbering.start)
    };
    format!("$(printf '{}' \"{number}\")", spec.printf())
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The numbers of the first and the last process, for notes.
fn range(segs: &[Seg], numbering: Numbering) -> String {
    let last = numbering.start + i64::from(numbering.count.max(1)) - 1;
    format!(
        "{:?} … {:?}",
        render(segs, numbering.start),
        render(segs, last)
    )
}

/// Translates argv, directory and environment (already merged, in order).
pub fn translate(
    argv: &[Vec<Seg>],
    directory: Option<&[Seg]>,
    environment: &[(String, Vec<Seg>)],
    numbering: Numbering,
) -> Translated {
    let mut out = Translated::default();
    let mut exports = Vec::new();
    for (key, value) in environment {
        if let Some(text) = literal(value) {
            out.environment.insert(key.clone(), text);
        } else if let Some(template) = as_template(value, numbering) {
            out.instance_environment.insert(key.clone(), template);
        } else if is_shell_name(key) {
            out.notes.push(format!(
                "environment {key} differs per process ({}) in a way ${{KELPIE_INSTANCE}} cannot write (it counts from 0, without padding): /bin/sh sets it before starting the program",
                range(value, numbering)
            ));
            exports.push(format!("export {key}={}", shell_word(value, numbering)));
        } else {
            out.unset.push((
                key.clone(),
                format!(
                    "the value differs per process ({}) and {key:?} is not a name /bin/sh can export",
                    range(value, numbering)
                ),
            ));
        }
    }
    let argv_varies = argv.iter().any(|w| literal(w).is_none());
    let directory_text = directory.map(literal);
    let directory_varies = matches!(directory_text, Some(None));
    if !argv_varies && !directory_varies && exports.is_empty() {
        out.command = argv.iter().filter_map(|w| literal(w)).collect();
        out.directory = directory_text.flatten();
        return out;
    }
    let mut script = exports.join("; ");
    if !script.is_empty() {
        script.push_str("; ");
    }
    match (directory, directory_varies) {
        (Some(dir), true) => {
            out.notes.push(format!(
                "directory differs per process ({}): /bin/sh changes to it before starting the program",
                range(dir, numbering)
            ));
            script.push_str(&format!("cd {} && ", shell_word(dir, numbering)));
        }
        _ => out.directory = directory_text.flatten(),
    }
    let words: Vec<String> = argv.iter().map(|w| shell_word(w, numbering)).collect();
    script.push_str("exec ");
    script.push_str(&words.join(" "));
    if argv_varies {
        out.notes.push(
            "the command differs per process (%(process_num)); kelpie does not expand ${KELPIE_INSTANCE} in `command`, so /bin/sh computes it from $KELPIE_INSTANCE and execs the program".to_string(),
        );
    }
    out.command = vec!["/bin/sh".into(), "-c".into(), script];
    out
}

#[cfg(test)]
mod tests {
    use super::super::expand::{expand, Names, Value};
    use super::*;

    fn segs(text: &str) -> Vec<Seg> {
        let mut names = Names::default();
        names.set("process_num", Value::ProcessNum);
        expand(text, &names).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn numbering(start: i64, count: u32) -> Numbering {
        Numbering { start, count }
    }

    #[test]
    fn numbers_that_are_a_prefix_and_the_index_become_templates() {
        let cases = [
            ("w%(process_num)s", 0, 3, Some("w${KELPIE_INSTANCE}")),
            ("%(process_num)02d", 0, 10, Some("0${KELPIE_INSTANCE}")),
            ("%(process_num)02d", 0, 11, None),
            ("%(process_num)d", 1, 2, None),
            ("%(process_num)d", 10, 10, Some("1${KELPIE_INSTANCE}")),
            ("%(process_num)03d", 100, 5, Some("10${KELPIE_INSTANCE}")),
            (
                "${x}-%(process_num)s",
                0,
                2,
                Some("$${x}-${KELPIE_INSTANCE}"),
            ),
        ];
        for (text, start, count, want) in cases {
            assert_eq!(
                as_template(&segs(text), numbering(start, count)).as_deref(),
                want,
                "{text} from {start} × {count}"
            );
        }
    }

    #[test]
    fn fixed_values_stay_as_they_are() {
        let argv = vec![segs("/usr/bin/worker"), segs("--queue"), segs("jobs")];
        let env = vec![
            ("A".to_string(), segs("1")),
            ("ID".to_string(), segs("w%(process_num)s")),
        ];
        let out = translate(&argv, Some(&segs("/srv/app")), &env, numbering(0, 2));
        assert_eq!(out.command, ["/usr/bin/worker", "--queue", "jobs"]);
        assert_eq!(out.directory.as_deref(), Some("/srv/app"));
        assert_eq!(out.environment["A"], "1");
        assert_eq!(out.instance_environment["ID"], "w${KELPIE_INSTANCE}");
        assert!(out.notes.is_empty());
    }

    #[test]
    fn what_differs_elsewhere_is_computed_by_the_shell() {
        let argv = vec![
            segs("bin/worker"),
            segs("--port=80%(process_num)02d"),
            segs("it's"),
        ];
        let env = vec![("SHARD".to_string(), segs("%(process_num)d"))];
        let out = translate(
            &argv,
            Some(&segs("/srv/w%(process_num)d")),
            &env,
            numbering(1, 2),
        );
        assert_eq!(
            out.command,
            [
                "/bin/sh",
                "-c",
                "export SHARD=\"$(printf '%d' \"$((KELPIE_INSTANCE + 1))\")\"; \
                 cd \"/srv/w$(printf '%d' \"$((KELPIE_INSTANCE + 1))\")\" && \
                 exec bin/worker \"--port=80$(printf '%02d' \"$((KELPIE_INSTANCE + 1))\")\" \"it's\""
            ]
        );
        assert_eq!(out.directory, None);
        assert!(out.environment.is_empty() && out.instance_environment.is_empty());
        assert_eq!(out.notes.len(), 3, "{:?}", out.notes);
        assert!(out.notes[0].contains("\"1\" … \"2\""), "{:?}", out.notes);

        let from_zero = translate(
            &[segs("sleep"), segs("10%(process_num)02d")],
            None,
            &[],
            numbering(0, 2),
        );
        assert_eq!(from_zero.command[2], "exec sleep \"100${KELPIE_INSTANCE}\"");

        let odd = translate(
            &[segs("x")],
            None,
            &[("my.var".into(), segs("%(process_num)d"))],
            numbering(1, 2),
        );
        assert_eq!(odd.command, ["x"]);
        assert_eq!(odd.unset.len(), 1);
    }
}

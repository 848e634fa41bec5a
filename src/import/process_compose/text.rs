//! The expansions process-compose applies to the text of its file: `$VAR`
//! from its environment when it loads the file, and Go template actions
//! (`{{.NAME}}`) when it starts a process. Both are done here, at import,
//! except in commands, whose `$VAR` is left to the shell.

use std::collections::{BTreeMap, HashMap};

/// Whether a shell line uses a variable process-compose would have
/// replaced at load (`$X`, `${X}`; not the escaped `$$X`).
pub(super) fn mentions_variable(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            if bytes.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            if bytes
                .get(i + 1)
                .is_some_and(|&c| c == b'{' || c == b'_' || c.is_ascii_alphabetic())
            {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// `$VAR` and `${VAR}` from `env` (unset: empty), `$$` as `$`, as
/// process-compose expands its file when loading it.
pub(super) fn expand_env(text: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => {
                    out.push_str(env.get(&inner[..end]).map(String::as_str).unwrap_or(""));
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            let len = after
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(env.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Go template actions of the simple kind: `{{.NAME}}` (spaces allowed)
/// from `vars`, and `{{ "literal" }}`, process-compose's escape for a
/// literal `{{`. Anything else cannot be evaluated here.
pub(super) fn render_templates(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = find_action_end(after)
            .ok_or_else(|| format!("unclosed template action in {text:?}"))?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        if let Some(name) = action
            .strip_prefix('.')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            let value = vars.get(name).ok_or_else(|| {
                format!("template {{{{.{name}}}}} names no var (set it in `vars`)")
            })?;
            out.push_str(value);
        } else if action.len() >= 2 && action.starts_with('"') && action.ends_with('"') {
            out.push_str(
                &action[1..action.len() - 1]
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
            );
        } else {
            return Err(format!(
                "the template action {{{{{}}}}} cannot be evaluated by kelpie import; replace it with its value",
                after[..end].trim()
            ));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the `}}` closing an action is, skipping `}}` inside a quoted
/// string (`{{ "{{.X}}" }}`).
fn find_action_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

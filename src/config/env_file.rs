//! `env_file`: `KEY=VALUE` lines, as programs' environment files are
//! commonly written.

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped, an optional
/// `export ` prefix and one pair of surrounding quotes are removed.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((number + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if !valid_key {
            return Err((number + 1, format!("invalid variable name {key:?}")));
        }
        let value = value.trim();
        if value.contains('\0') {
            return Err((number + 1, format!("value of {key} contains a NUL byte")));
        }
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    Ok(vars)
}

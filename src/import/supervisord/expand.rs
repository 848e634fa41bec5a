//! supervisord's `%(name)s` expansions: Python's `%` formatting with a
//! mapping. `%(here)s`, `%(program_name)s`, `%(ENV_HOME)s` … are known at
//! import time and become text; `%(process_num)…` of a program with
//! several processes differs per process, so it stays a symbolic `Num`
//! that the caller writes as `${KELPIE_INSTANCE}` or computes in a shell.
//! `%%` is a literal `%`; any other `%` is an error, as in supervisord.

use std::collections::BTreeMap;

/// A piece of an expanded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Lit(String),
    /// The process number, formatted by the spec.
    Num(Spec),
}

/// What a name expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Int(i64),
    /// Text that may hold the process number (a program's own environment
    /// values, for `%(ENV_X)s` in its command).
    Segs(Vec<Seg>),
    /// The process number of a program with several processes.
    ProcessNum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// `s`: the value as text.
    Text,
    /// `d`, `i`, `u`: a decimal integer.
    Decimal,
}

/// `%(name)-05d` without the name: flags, width, conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub left: bool,
    pub zero: bool,
    pub plus: bool,
    pub space: bool,
    pub width: usize,
    pub conversion: Conversion,
}

impl Spec {
    /// Plain `%(x)s`: the value as it is.
    pub fn is_plain_text(&self) -> bool {
        self.conversion == Conversion::Text && self.width == 0
    }

    /// The spec as printf(1) writes it (`%05d`), for a shell wrapper.
    pub fn printf(&self) -> String {
        let mut out = String::from("%");
        for (on, flag) in [
            (self.left, '-'),
            (self.zero, '0'),
            (self.plus, '+'),
            (self.space, ' '),
        ] {
            if on {
                out.push(flag);
            }
        }
        if self.width > 0 {
            out.push_str(&self.width.to_string());
        }
        out.push(match self.conversion {
            Conversion::Text => 's',
            Conversion::Decimal => 'd',
        });
        out
    }

    /// `n` formatted as Python formats it.
    pub fn format_int(&self, n: i64) -> String {
        let body = match self.conversion {
            Conversion::Text => n.to_string(),
            Conversion::Decimal => {
                let sign = if n < 0 {
                    "-"
                } else if self.plus {
                    "+"
                } else if self.space {
                    " "
                } else {
                    ""
                };
                let digits = n.unsigned_abs().to_string();
                if self.zero && !self.left && sign.len() + digits.len() < self.width {
                    let zeros = "0".repeat(self.width - sign.len() - digits.len());
                    return format!("{sign}{zeros}{digits}");
                }
                format!("{sign}{digits}")
            }
        };
        self.pad(body)
    }

    fn pad(&self, body: String) -> String {
        let len = body.chars().count();
        if len >= self.width {
            return body;
        }
        let fill = " ".repeat(self.width - len);
        if self.left {
            body + &fill
        } else {
            fill + &body
        }
    }
}

/// The names one value may use.
#[derive(Debug, Clone, Default)]
pub struct Names {
    values: BTreeMap<String, Value>,
}

impl Names {
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The names other than `ENV_…`, for an error message.
    fn listed(&self) -> String {
        let mut names: Vec<&str> = self
            .values
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with("ENV_"))
            .collect();
        names.push("ENV_<variable>");
        names.join(", ")
    }
}

/// `text` with every `%(name)…` replaced. `Err` is the message (the caller
/// adds where).
pub fn expand(text: &str, names: &Names) -> Result<Vec<Seg>, String> {
    let mut out = Segs::default();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.text(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.text("%");
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            return Err(format!(
                "{:?}: a % must start an expansion such as %(program_name)s; write %% for a literal %",
                text
            ));
        };
        let Some(close) = inner.find(')') else {
            return Err(format!("{text:?}: an expansion %( is not closed with )"));
        };
        let name = &inner[..close];
        let (spec, used) =
            parse_spec(&inner[close + 1..]).map_err(|why| format!("{text:?}: %({name}){why}"))?;
        let written = &rest[at..at + 1 + 1 + close + 1 + used];
        let Some(value) = names.get(name) else {
            return Err(if let Some(var) = name.strip_prefix("ENV_") {
                format!(
                    "{written} names the environment variable {var}, which is not set (in the environment of kelpie import, [supervisord] environment or this program's environment)"
                )
            } else {
                format!(
                    "{written} is not an expansion supervisord offers here (it offers {})",
                    names.listed()
                )
            });
        };
        match (value, spec.conversion) {
            (Value::ProcessNum, _) => out.push(Seg::Num(spec)),
            (Value::Int(n), _) => out.text(&spec.format_int(*n)),
            (Value::Text(t), Conversion::Text) => out.text(&spec.pad(t.clone())),
            (Value::Segs(segs), Conversion::Text) => {
                if spec.is_plain_text() {
                    for seg in segs {
                        out.push(seg.clone());
                    }
                } else if let Some(t) = literal(segs) {
                    out.text(&spec.pad(t));
                } else {
                    return Err(format!(
                        "{written}: padding a value that holds the process number cannot be translated"
                    ));
                }
            }
            (Value::Text(_) | Value::Segs(_), Conversion::Decimal) => {
                return Err(format!("{written}: %d needs a number, and {name} is text"));
            }
        }
        rest = &inner[close + 1 + used..];
    }
    out.text(rest);
    Ok(out.0)
}

/// The text of `segs` when none is the process number.
pub fn literal(segs: &[Seg]) -> Option<String> {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Lit(t) => out.push_str(t),
            Seg::Num(_) => return None,
        }
    }
    Some(out)
}

/// `segs` for process number `n`.
pub fn render(segs: &[Seg], n: i64) -> String {
    segs.iter()
        .map(|seg| match seg {
            Seg::Lit(t) => t.clone(),
            Seg::Num(spec) => spec.format_int(n),
        })
        .collect()
}

/// Collects segments, merging adjacent text.
#[derive(Default)]
struct Segs(Vec<Seg>);

impl Segs {
    fn text(&mut self, t: &str) {
        if t.is_empty() {
            return;
        }
        if let Some(Seg::Lit(last)) = self.0.last_mut() {
            last.push_str(t);
        } else {
            self.0.push(Seg::Lit(t.to_string()));
        }
    }

    fn push(&mut self, seg: Seg) {
        match seg {
            Seg::Lit(t) => self.text(&t),
            num => self.0.push(num),
        }
    }
}

/// Flags, width, an ignored length modifier and the conversion after
/// `%(name)`; returns the spec and how many bytes it took.
fn parse_spec(text: &str) -> Result<(Spec, usize), String> {
    let mut spec = Spec {
        left: false,
        zero: false,
        plus: false,
        space: false,
        width: 0,
        conversion: Conversion::Text,
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(&c) = bytes.get(at) {
        match c {
            b'-' => spec.left = true,
            b'0' => spec.zero = true,
            b'+' => spec.plus = true,
            b' ' => spec.space = true,
            b'#' => {}
            _ => break,
        }
        at += 1;
    }
    let digits = bytes[at..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits > 0 {
        spec.width = text[at..at + digits]
            .parse()
            .ok()
            .filter(|w| *w <= 1000)
            .ok_or_else(|| " has too large a width".to_string())?;
        at += digits;
    }
    if bytes.get(at) == Some(&b'.') {
        return Err(" has a precision, which kelpie import does not translate".into());
    }
    if matches!(bytes.get(at), Some(b'h' | b'l' | b'L')) {
        at += 1;
    }
    let conversion = match bytes.get(at) {
        Some(b's') => Conversion::Text,
        Some(b'd' | b'i' | b'u') => Conversion::Decimal,
        Some(_) => {
            let c = text[at..].chars().next().unwrap_or('?');
            return Err(format!(
                " ends in the conversion {c:?}; kelpie import translates s, d and i"
            ));
        }
        None => return Err(" has no conversion such as s or d after it".into()),
    };
    spec.conversion = conversion;
    Ok((spec, at + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut names = Names::default();
        names.set("program_name", Value::Text("web".into()));
        names.set("here", Value::Text("/etc/supervisor".into()));
        names.set("numprocs", Value::Int(2));
        names.set("process_num", Value::ProcessNum);
        names.set("ENV_HOME", Value::Text("/home/app".into()));
        names
    }

    fn text(t: &str) -> Vec<Seg> {
        vec![Seg::Lit(t.into())]
    }

    #[test]
    fn names_and_formats_expand_as_python_formats_them() {
        let cases: [(&str, Vec<Seg>); 10] = [
            ("%(program_name)s", text("web")),
            ("%(here)s/app", text("/etc/supervisor/app")),
            ("100%%", text("100%")),
            ("[%(program_name)6s]", text("[   web]")),
            ("[%(program_name)-6s]", text("[web   ]")),
            ("n=%(numprocs)03d", text("n=002")),
            ("n=%(numprocs)+d", text("n=+2")),
            ("%(ENV_HOME)s/.cache", text("/home/app/.cache")),
            ("%(numprocs)ld", text("2")),
            ("plain", text("plain")),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &names()), Ok(want), "{input}");
        }
    }

    #[test]
    fn the_process_number_stays_symbolic() {
        let segs = expand("w-%(process_num)02d.log", &names()).unwrap_or_default();
        let Some(Seg::Num(spec)) = segs.get(1) else {
            panic!("{segs:?}");
        };
        assert_eq!(spec.printf(), "%02d");
        assert_eq!(render(&segs, 3), "w-03.log");
        assert_eq!(render(&segs, 12), "w-12.log");
        assert_eq!(literal(&segs), None);
    }

    #[test]
    fn python_integer_formatting() {
        let spec = |text: &str| {
            parse_spec(text)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let cases = [
            ("d", -3, "-3"),
            ("05d", -3, "-0003"),
            ("-5d", 3, "3    "),
            ("-05d", 3, "3    "),
            (" d", 3, " 3"),
            ("+03d", 3, "+03"),
            ("5s", 3, "    3"),
            ("05s", 3, "    3"),
            ("2d", 123, "123"),
        ];
        for (text, n, want) in cases {
            assert_eq!(spec(text).format_int(n), want, "%{text} of {n}");
        }
    }

    #[test]
    fn bad_expansions_say_what_is_wrong() {
        let cases = [
            ("%(nope)s", "%(nope)s is not an expansion supervisord offers here (it offers here, numprocs, process_num, program_name, ENV_<variable>)"),
            ("%(ENV_NOPE)s", "%(ENV_NOPE)s names the environment variable NOPE, which is not set"),
            ("date +%Y", "a % must start an expansion"),
            ("100%", "a % must start an expansion"),
            ("%(here", "is not closed"),
            ("%(here)", "has no conversion"),
            ("%(here)x", "ends in the conversion 'x'; kelpie import translates s, d and i"),
            ("%(here).3s", "has a precision"),
            ("%(here)d", "%(here)d: %d needs a number, and here is text"),
        ];
        for (input, want) in cases {
            let err = expand(input, &names())
                .err()
                .unwrap_or_else(|| panic!("{input} expanded"));
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}

//! Per-instance values in config strings: `${KELPIE_INSTANCE}` and
//! `${KELPIE_SLOT}` in `environment` values and in http and tcp probe
//! targets, so that every instance of a program can listen, and be probed,
//! on an address of its own. `$${` is a literal `${`; any other `$` is
//! literal.
//!
//! The config keeps the unexpanded text (`kelpie config` prints it back);
//! each instance expands it when it starts a process or a probe. Validation
//! happens once, at load, so expansion itself cannot fail.

/// The variables a template may name.
pub const VARIABLES: &[&str] = &["KELPIE_INSTANCE", "KELPIE_SLOT"];

/// What the variables stand for in one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values {
    /// `KELPIE_INSTANCE`: the instance index, 0 to `instances` − 1.
    pub instance: u32,
    /// `KELPIE_SLOT`: 0 to 2 × `instances` − 1. Unlike the index it differs
    /// between an instance and the rolling replacement started beside it,
    /// so the two never share an address.
    pub slot: u32,
}

impl Values {
    /// Instance `instance` in its first slot (the same number).
    pub fn first(instance: u32) -> Self {
        Self {
            instance,
            slot: instance,
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        match name {
            "KELPIE_INSTANCE" => Some(self.instance.to_string()),
            "KELPIE_SLOT" => Some(self.slot.to_string()),
            _ => None,
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Variable(&'a str),
}

/// Splits `text` into literal runs and variable references, or says why it
/// cannot be expanded.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let (before, from) = rest.split_at(at);
        if !before.is_empty() {
            out.push(Piece::Text(before));
        }
        if let Some(after) = from.strip_prefix("$${") {
            out.push(Piece::Text("${"));
            rest = after;
        } else if let Some(inner) = from.strip_prefix("${") {
            let Some(end) = inner.find('}') else {
                return Err(format!(
                    "unterminated \"${{\" (write \"$${{\" for a literal \"${{\"); {}",
                    known()
                ));
            };
            let name = &inner[..end];
            if !VARIABLES.contains(&name) {
                return Err(format!(
                    "unknown variable \"${{{name}}}\" (write \"$${{\" for a literal \"${{\"); {}",
                    known()
                ));
            }
            out.push(Piece::Variable(name));
            rest = &inner[end + 1..];
        } else {
            out.push(Piece::Text("$"));
            rest = from.strip_prefix('$').unwrap_or_default();
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

fn known() -> String {
    let names: Vec<String> = VARIABLES.iter().map(|v| format!("${{{v}}}")).collect();
    format!("only {} are expanded", names.join(" and "))
}

/// Checks that `text` names only known variables; the error is one line.
pub fn check(text: &str) -> Result<(), String> {
    pieces(text).map(drop)
}

/// `text` with every variable replaced by its value for `values`. Text that
/// did not pass `check` (never the case for a loaded config) is returned
/// unchanged.
pub fn expand(text: &str, values: Values) -> String {
    let Ok(pieces) = pieces(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Variable(name) => out.push_str(&values.get(name).unwrap_or_default()),
        }
    }
    out
}

/// Whether `text` refers to `variable` (an escaped `$${` does not count).
pub fn mentions(text: &str, variable: &str) -> bool {
    pieces(text).is_ok_and(|p| {
        p.iter()
            .any(|piece| matches!(piece, Piece::Variable(name) if *name == variable))
    })
}

/// `text` as a template that expands to itself: for values taken literally
/// (an `env_file`'s) that are kept beside templates.
pub fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: Values = Values {
        instance: 0,
        slot: 0,
    };
    const SEVEN: Values = Values {
        instance: 7,
        slot: 7,
    };

    #[test]
    fn the_instance_index_is_substituted_wherever_it_appears() {
        assert_eq!(expand("810${KELPIE_INSTANCE}", SEVEN), "8107");
        assert_eq!(
            expand(
                "http://127.0.0.1:810${KELPIE_INSTANCE}/h?i=${KELPIE_INSTANCE}",
                ZERO
            ),
            "http://127.0.0.1:8100/h?i=0"
        );
        assert_eq!(expand("${KELPIE_INSTANCE}", Values::first(12)), "12");
    }

    #[test]
    fn the_slot_is_substituted_apart_from_the_index() {
        // Instance 1 of 3 in its replacement's slot.
        let replaced = Values {
            instance: 1,
            slot: 4,
        };
        assert_eq!(expand("910${KELPIE_SLOT}", replaced), "9104");
        assert_eq!(
            expand("i=${KELPIE_INSTANCE} s=${KELPIE_SLOT}", replaced),
            "i=1 s=4"
        );
        assert_eq!(expand("910${KELPIE_SLOT}", SEVEN), "9107");
        assert!(mentions("a${KELPIE_SLOT}", "KELPIE_SLOT"));
        assert!(!mentions("a${KELPIE_SLOT}", "KELPIE_INSTANCE"));
        assert!(!mentions("$${KELPIE_SLOT}", "KELPIE_SLOT"));
    }

    #[test]
    fn text_without_variables_is_unchanged_and_lone_dollars_are_literal() {
        for text in ["", "plain", "$HOME", "a$", "$$", "cost: 5$ {x}", "$}{"] {
            assert_eq!(check(text), Ok(()), "{text}");
            assert_eq!(expand(text, SEVEN), text);
        }
    }

    #[test]
    fn a_doubled_dollar_before_a_brace_is_a_literal_dollar_brace() {
        assert_eq!(expand("$${KELPIE_INSTANCE}", SEVEN), "${KELPIE_INSTANCE}");
        assert_eq!(expand("$${HOME}/x", SEVEN), "${HOME}/x");
        assert!(!mentions("$${KELPIE_INSTANCE}", "KELPIE_INSTANCE"));
        assert!(mentions("a${KELPIE_INSTANCE}", "KELPIE_INSTANCE"));
    }

    #[test]
    fn unknown_and_unterminated_variables_are_errors_naming_the_known_ones() {
        let unknown = check("${HOME}/x").unwrap_err();
        assert_eq!(
            unknown,
            "unknown variable \"${HOME}\" (write \"$${\" for a literal \"${\"); only ${KELPIE_INSTANCE} and ${KELPIE_SLOT} are expanded"
        );
        assert!(
            check("${kelpie_instance}").is_err(),
            "names are case-sensitive"
        );
        assert!(check("${}").is_err());
        let open = check("port ${KELPIE_INSTANCE").unwrap_err();
        assert!(open.starts_with("unterminated \"${\""), "{open}");
        // Unexpandable text is left alone rather than half expanded.
        assert_eq!(
            expand("${X} ${KELPIE_INSTANCE}", SEVEN),
            "${X} ${KELPIE_INSTANCE}"
        );
    }

    #[test]
    fn escaped_text_expands_back_to_itself() {
        for text in [
            "${HOME}",
            "$${",
            "a$b${c}${KELPIE_INSTANCE}${KELPIE_SLOT}",
            "${",
        ] {
            let escaped = escape(text);
            assert_eq!(check(&escaped), Ok(()), "{escaped}");
            assert_eq!(expand(&escaped, SEVEN), text);
        }
    }
}

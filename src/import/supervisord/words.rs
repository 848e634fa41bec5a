//! How supervisord cuts values into pieces, on expanded text that may hold
//! the process number (`Seg::Num`):
//!
//! - `command` is split as Python's `shlex.split` splits (POSIX rules, no
//!   shell): whitespace separates words, `'…'` is literal, `"…"` honours
//!   `\"` and `\\` only, a `\` outside quotes takes the next character.
//! - `environment` is `KEY=val,KEY2="val 2"` read with `shlex` in its
//!   non-POSIX mode, as supervisord's `dict_of_key_value_pairs` does:
//!   words are letters, digits and `_/.+-():`, a quoted string is one
//!   token (the quotes are stripped from the value afterwards), any other
//!   character is a token of its own, `#` starts a comment, and every
//!   fourth token is skipped as the separator (meant to be a comma).
//!
//! A process number inside a word acts as one character of it, which is
//! what supervisord sees as long as its digits contain no blank (a width
//! such as `%(process_num)3d` pads with spaces); outside quotes such a
//! number is refused.

use super::expand::{Conversion, Seg, Spec};

/// A character of an expanded value, or the process number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Char(char),
    Num(Spec),
}

fn units(segs: &[Seg]) -> Vec<Unit> {
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            Seg::Lit(t) => out.extend(t.chars().map(Unit::Char)),
            Seg::Num(spec) => out.push(Unit::Num(*spec)),
        }
    }
    out
}

/// Builds one word from units.
#[derive(Default)]
struct Word {
    segs: Vec<Seg>,
}

impl Word {
    fn push(&mut self, unit: Unit) {
        match unit {
            Unit::Char(c) => match self.segs.last_mut() {
                Some(Seg::Lit(t)) => t.push(c),
                _ => self.segs.push(Seg::Lit(c.to_string())),
            },
            Unit::Num(spec) => self.segs.push(Seg::Num(spec)),
        }
    }

    fn take(&mut self) -> Vec<Seg> {
        std::mem::take(&mut self.segs)
    }
}

/// A width pads with spaces (or `-`/`+` flags add signs next to blanks):
/// such a number outside quotes would split differently per process.
fn may_hold_blank(spec: &Spec) -> bool {
    let zero_padded = spec.zero && !spec.left && spec.conversion == Conversion::Decimal;
    (spec.width > 1 && !zero_padded) || spec.space
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `command` as argv.
pub fn split_command(segs: &[Seg]) -> Result<Vec<Vec<Seg>>, String> {
    #[derive(PartialEq)]
    enum State {
        Between,
        Word,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = Word::default();
    let mut state = State::Between;
    let units = units(segs);
    let mut i = 0;
    while i < units.len() {
        let unit = units[i];
        i += 1;
        match (&state, unit) {
            (State::Single, Unit::Char('\'')) => state = State::Word,
            (State::Single, u) => word.push(u),
            (State::Double, Unit::Char('"')) => state = State::Word,
            (State::Double, Unit::Char('\\')) => match units.get(i) {
                Some(Unit::Char(c @ ('"' | '\\'))) => {
                    word.push(Unit::Char(*c));
                    i += 1;
                }
                _ => word.push(Unit::Char('\\')),
            },
            (State::Double, u) => word.push(u),
            (State::Between | State::Word, Unit::Char(c)) if is_space(c) => {
                if state == State::Word {
                    words.push(word.take());
                }
                state = State::Between;
            }
            (State::Between | State::Word, Unit::Char('\'')) => state = State::Single,
            (State::Between | State::Word, Unit::Char('"')) => state = State::Double,
            (State::Between | State::Word, Unit::Char('\\')) => {
                let Some(next) = units.get(i) else {
                    return Err("the command ends in a lone \\".into());
                };
                word.push(*next);
                i += 1;
                state = State::Word;
            }
            (State::Between | State::Word, Unit::Num(spec)) if may_hold_blank(&spec) => {
                return Err(number_with_blanks(&spec));
            }
            (State::Between | State::Word, u) => {
                word.push(u);
                state = State::Word;
            }
        }
    }
    match state {
        State::Single | State::Double => Err("the command has an unclosed quote".into()),
        State::Word => {
            words.push(word.take());
            Ok(words)
        }
        State::Between => Ok(words),
    }
}

fn number_with_blanks(spec: &Spec) -> String {
    format!(
        "the process number formatted as {} may hold blanks outside quotes, which supervisord splits differently per process; kelpie import cannot translate that",
        spec.printf()
    )
}

/// One `KEY=value` of `environment`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub key: String,
    pub value: Vec<Seg>,
}

/// What `environment` holds, and the separators that were not commas
/// (supervisord skips them silently: `A=x y` sets A to `x`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pairs {
    pub pairs: Vec<Pair>,
    pub odd_separators: Vec<String>,
}

/// A token of the non-POSIX lexer; `quoted` tokens keep their quotes.
#[derive(Debug, Clone)]
struct Token {
    segs: Vec<Seg>,
}

impl Token {
    fn text(&self) -> Option<String> {
        super::expand::literal(&self.segs)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_/.+-():".contains(c)
}

fn tokens(segs: &[Seg]) -> Result<Vec<Token>, String> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Between,
        Word,
        Quote(char),
    }
    let units = units(segs);
    let mut out = Vec::new();
    let mut word = Word::default();
    let mut state = State::Between;
    let mut i = 0;
    // shlex reads the rest of the line, its newline included.
    let skip_comment = |i: &mut usize| {
        while *i < units.len() && units[*i] != Unit::Char('\n') {
            *i += 1;
        }
        *i += 1;
    };
    while i < units.len() {
        let unit = units[i];
        i += 1;
        match state {
            State::Quote(q) => {
                word.push(unit);
                if unit == Unit::Char(q) {
                    out.push(Token { segs: word.take() });
                    state = State::Between;
                }
            }
            State::Between => match unit {
                Unit::Char(c) if is_space(c) => {}
                Unit::Char('#') => skip_comment(&mut i),
                Unit::Char(c) if c == '"' || c == '\'' => {
                    word.push(unit);
                    state = State::Quote(c);
                }
                Unit::Char(c) if is_word_char(c) => {
                    word.push(unit);
                    state = State::Word;
                }
                Unit::Num(spec) if may_hold_blank(&spec) => return Err(number_with_blanks(&spec)),
                Unit::Num(_) => {
                    word.push(unit);
                    state = State::Word;
                }
                Unit::Char(c) => out.push(Token {
                    segs: vec![Seg::Lit(c.to_string())],
                }),
            },
            State::Word => match unit {
                Unit::Char(c) if is_space(c) => {
                    out.push(Token { segs: word.take() });
                    state = State::Between;
                }
                // shlex in this mode skips the comment and goes on with the
                // same word on the next line.
                Unit::Char('#') => skip_comment(&mut i),
                Unit::Char(c) if is_word_char(c) || c == '"' || c == '\'' => word.push(unit),
                Unit::Num(spec) if may_hold_blank(&spec) => return Err(number_with_blanks(&spec)),
                Unit::Num(_) => word.push(unit),
                Unit::Char(_) => {
                    out.push(Token { segs: word.take() });
                    state = State::Between;
                    i -= 1;
                }
            },
        }
    }
    match state {
        State::Quote(q) => Err(format!("a value opened with {q} is not closed")),
        State::Word => {
            out.push(Token { segs: word.take() });
            Ok(out)
        }
        State::Between => Ok(out),
    }
}

/// Python's `str.strip('\'"')` on segments.
fn strip_quotes(mut segs: Vec<Seg>) -> Vec<Seg> {
    let quote = |c: char| c == '"' || c == '\'';
    if let Some(Seg::Lit(t)) = segs.first_mut() {
        *t = t.trim_start_matches(quote).to_string();
    }
    if let Some(Seg::Lit(t)) = segs.last_mut() {
        *t = t.trim_end_matches(quote).to_string();
    }
    segs.retain(|s| !matches!(s, Seg::Lit(t) if t.is_empty()));
    segs
}

/// `environment` as pairs, in order (a key given twice keeps its last
/// value, at its first place).
pub fn key_value_pairs(segs: &[Seg]) -> Result<Pairs, String> {
    let tokens = tokens(segs)?;
    let mut out = Pairs::default();
    let mut at = 0;
    while at < tokens.len() {
        let triple = &tokens[at..tokens.len().min(at + 3)];
        let eq = triple.get(1).and_then(Token::text);
        if triple.len() < 3 || eq.as_deref() != Some("=") {
            let seen: Vec<String> = triple
                .iter()
                .map(|t| super::expand::render(&t.segs, 0))
                .collect();
            return Err(format!(
                "expected KEY=value pairs separated by commas, found {:?}",
                seen.join(" ")
            ));
        }
        let Some(key) = triple[0].text() else {
            return Err(
                "a variable name holds the process number; kelpie import cannot translate that"
                    .into(),
            );
        };
        let value = strip_quotes(triple[2].segs.clone());
        match out.pairs.iter_mut().find(|p| p.key == key) {
            Some(pair) => pair.value = value,
            None => out.pairs.push(Pair { key, value }),
        }
        if let Some(separator) = tokens.get(at + 3) {
            let text = super::expand::render(&separator.segs, 0);
            if text != "," {
                out.odd_separators.push(text);
            }
        }
        at += 4;
    }
    Ok(out)
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

    fn argv(text: &str) -> Result<Vec<String>, String> {
        split_command(&segs(text)).map(|words| {
            words
                .iter()
                .map(|w| super::super::expand::render(w, 7))
                .collect()
        })
    }

    #[test]
    fn commands_split_as_shlex_split_does() {
        let cases: [(&str, &[&str]); 9] = [
            ("/usr/bin/app --port 80", &["/usr/bin/app", "--port", "80"]),
            (
                "sh -c 'echo $HOME; exit 1'",
                &["sh", "-c", "echo $HOME; exit 1"],
            ),
            (r#"echo "a \"b\" \$c \\ d""#, &["echo", r#"a "b" \$c \ d"#]),
            (r"echo a\ b \'x", &["echo", "a b", "'x"]),
            ("echo ''  \"\"", &["echo", "", ""]),
            ("a\"b c\"d", &["ab cd"]),
            (
                "/bin/app\n--flag\n  --other",
                &["/bin/app", "--flag", "--other"],
            ),
            ("worker --id %(process_num)02d", &["worker", "--id", "07"]),
            ("worker --id=w%(process_num)s", &["worker", "--id=w7"]),
        ];
        for (input, want) in cases {
            let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
            assert_eq!(argv(input), Ok(want), "{input}");
        }
        assert!(argv("echo 'open").is_err());
        assert!(argv("echo \\").is_err());
        assert!(argv("worker %(process_num)3d").is_err());
        assert_eq!(
            argv("worker '%(process_num)3d'"),
            Ok(vec!["worker".into(), "  7".into()])
        );
    }

    type Read = (Vec<(String, String)>, Vec<String>);

    fn env(text: &str) -> Result<Read, String> {
        key_value_pairs(&segs(text)).map(|p| {
            (
                p.pairs
                    .iter()
                    .map(|p| (p.key.clone(), super::super::expand::render(&p.value, 7)))
                    .collect(),
                p.odd_separators,
            )
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_reads_as_dict_of_key_value_pairs_does() {
        let cases: [(&str, &[(&str, &str)]); 9] = [
            ("A=1,B=two", &[("A", "1"), ("B", "two")]),
            ("A=\"x, y\",B='single'", &[("A", "x, y"), ("B", "single")]),
            (
                "PATH=\"/usr/bin:/bin\",HOME=/home/app",
                &[("PATH", "/usr/bin:/bin"), ("HOME", "/home/app")],
            ),
            (
                "URL=http://localhost:8080/x",
                &[("URL", "http://localhost:8080/x")],
            ),
            ("\n  A=1,\n  B=2", &[("A", "1"), ("B", "2")]),
            ("A=1,A=2", &[("A", "2")]),
            ("ID=w%(process_num)02d", &[("ID", "w07")]),
            ("A=\"\"", &[("A", "")]),
            ("A=-1.5,B=(x)", &[("A", "-1.5"), ("B", "(x)")]),
        ];
        for (input, want) in cases {
            assert_eq!(env(input), Ok((pairs(want), vec![])), "{input}");
        }
        // Quirks of the tokenizer that supervisord has too.
        assert_eq!(env("A=x y"), Ok((pairs(&[("A", "x")]), vec!["y".into()])));
        assert_eq!(
            env("A=x;B=y"),
            Ok((pairs(&[("A", "x"), ("B", "y")]), vec![";".into()]))
        );
        assert_eq!(
            env("A='it''s'"),
            Ok((pairs(&[("A", "it")]), vec!["'s'".into()]))
        );
        // The comment swallows the newline: the word goes on as "xB".
        assert_eq!(env("A=x#note\nB"), Ok((pairs(&[("A", "xB")]), vec![])));
        assert!(env("A=a@b").is_err());
        assert!(env("A=").is_err());
        assert!(env("A").is_err());
        assert!(env("A=\"open").is_err());
    }
}

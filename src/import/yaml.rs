//! YAML (and JSON, which is YAML's flow syntax) read into a small tree in
//! which every value knows its line, for `file:line` in errors and in the
//! report of dropped keys. Built from yaml-rust2's event parser, whose
//! markers carry the line of each event; its `Yaml` document type drops
//! them, and serde-based YAML crates hide them behind their deserialiser.
//!
//! Scalars keep their text; typing happens when a format asks for a bool
//! or a number, so an error can name the key and the value found
//! (`replicas: expected a whole number, found "many"`). Anchors, aliases
//! and `<<` merge keys are resolved here, as process-compose's YAML library
//! resolves them.
//!
//! One gap between JSON and YAML is closed before parsing: JSON writes a
//! character outside the Basic Multilingual Plane as a UTF-16 surrogate
//! pair (`"\ud83d\ude00"`, which Python's `json.dumps` emits by default),
//! and YAML has no surrogate escapes. `parse_json` rewrites each pair as
//! YAML's `\UXXXXXXXX` escape, which is shorter and adds no line.

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::draft::Origin;
use super::ImportError;

/// Nesting deeper than this is refused: no real config comes close, and a
/// hostile file must not exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Values an alias may expand into, in total: a "billion laughs" file
/// stops here instead of exhausting memory.
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `plain`: written without quotes, so `true`, `12` and `null` are
    /// what they look like; a quoted `"12"` is a string to a strict reader
    /// (the accessors below take either where a number is expected).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// In file order. Keys are unique (a duplicate is a parse error).
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub origin: Origin,
}

/// Parses YAML text. `file` names the source in origins and errors.
pub fn parse(text: &str, file: &Path) -> Result<Node, ImportError> {
    Builder::new(text, file).document()
}

/// Parses JSON text through the YAML parser (see the module doc).
pub fn parse_json(text: &str, file: &Path) -> Result<Node, ImportError> {
    parse(&join_surrogate_pairs(text), file)
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this is, for messages: `a list`, `a mapping`, or the scalar
    /// itself quoted.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "nothing (null)".into(),
            Value::Scalar { text, .. } => format!("{text:?}"),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    fn wrong(&self, what: &str, expected: &str) -> ImportError {
        ImportError::data(
            self.origin.clone(),
            format!("{what}: expected {expected}, found {}", self.describe()),
        )
    }

    /// The text of a scalar (a number or a bool as written).
    pub fn str(&self, what: &str) -> Result<&str, ImportError> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Ok(text),
            _ => Err(self.wrong(what, "a string")),
        }
    }

    /// `true`/`false` in any case; also `yes`/`no`/`on`/`off`, which
    /// YAML 1.1 readers (process-compose's) take as booleans.
    pub fn bool(&self, what: &str) -> Result<bool, ImportError> {
        if let Value::Scalar { text, .. } = &self.value {
            match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => return Ok(true),
                "false" | "no" | "off" => return Ok(false),
                _ => {}
            }
        }
        Err(self.wrong(what, "true or false"))
    }

    /// A whole number, quoted or not.
    pub fn int(&self, what: &str) -> Result<i64, ImportError> {
        if let Value::Scalar { text, .. } = &self.value {
            let t = text.trim();
            let t = t.strip_prefix('+').unwrap_or(t);
            if let Ok(n) = t.parse::<i64>() {
                return Ok(n);
            }
            // JSON writers may print whole numbers as `5.0`.
            if let Ok(f) = t.parse::<f64>() {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    return Ok(f as i64);
                }
            }
        }
        Err(self.wrong(what, "a whole number"))
    }

    /// A whole number from 0 to `u32::MAX`.
    pub fn uint(&self, what: &str) -> Result<u32, ImportError> {
        let n = self.int(what)?;
        u32::try_from(n).map_err(|_| self.wrong(what, "a whole number of 0 or more"))
    }

    pub fn seq(&self, what: &str) -> Result<&[Node], ImportError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.wrong(what, "a list")),
        }
    }

    pub fn map(&self, what: &str) -> Result<&[(Key, Node)], ImportError> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            _ => Err(self.wrong(what, "a mapping")),
        }
    }

    /// The value of `key` in a mapping (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Every origin in the tree set to line 0 (the whole file): for JSON
    /// that a program printed, whose lines are not the file's.
    pub fn without_lines(mut self) -> Node {
        self.origin.line = 0;
        self.value = match self.value {
            Value::Seq(items) => Value::Seq(items.into_iter().map(Node::without_lines).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(mut k, v)| {
                        k.origin.line = 0;
                        (k, v.without_lines())
                    })
                    .collect(),
            ),
            scalar => scalar,
        };
        self
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    file: &'a Path,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        Self {
            parser: Parser::new_from_str(text),
            file,
            anchors: HashMap::new(),
            nodes: 0,
        }
    }

    fn origin(&self, mark: Marker) -> Origin {
        Origin::new(self.file, mark.line())
    }

    fn next(&mut self) -> Result<(Event, Marker), ImportError> {
        self.parser.next_token().map_err(|err| {
            ImportError::data(
                Origin::new(self.file, err.marker().line()),
                format!("not valid YAML: {}", err.info()),
            )
        })
    }

    /// The first document; an empty file is a null.
    fn document(mut self) -> Result<Node, ImportError> {
        let mut root = None;
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
                _ if root.is_some() => {
                    return Err(ImportError::data(
                        self.origin(mark),
                        "a second YAML document (after `---`); kelpie import reads one per file",
                    ));
                }
                event => root = Some(self.node(event, mark, 0)?),
            }
        }
        Ok(root.unwrap_or_else(|| Node {
            value: Value::Scalar {
                text: String::new(),
                plain: true,
            },
            origin: Origin::new(self.file, 0),
        }))
    }

    fn count(&mut self, origin: &Origin, n: usize) -> Result<(), ImportError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(ImportError::data(
                origin.clone(),
                format!("more than {MAX_NODES} values once aliases are expanded"),
            ));
        }
        Ok(())
    }

    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, ImportError> {
        let origin = self.origin(mark);
        if depth > MAX_DEPTH {
            return Err(ImportError::data(
                origin,
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.count(&origin, 1)?;
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                    ImportError::data(origin.clone(), "an alias (*name) to an unknown anchor")
                })?;
                self.count(&origin, size(&node))?;
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag.is_some_and(|t| t.suffix == "str");
                let plain = style == TScalarStyle::Plain && !forced_string;
                (
                    Node {
                        value: Value::Scalar { text, plain },
                        origin,
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, mark) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, mark, depth + 1)?);
                }
                (
                    Node {
                        value: Value::Seq(items),
                        origin,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let entries = self.mapping(depth)?;
                (
                    Node {
                        value: Value::Map(entries),
                        origin,
                    },
                    anchor,
                )
            }
            other => {
                return Err(ImportError::data(
                    origin,
                    format!("unexpected YAML event {other:?}"),
                ))
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// A mapping's entries after its `MappingStart`: keys must be scalars
    /// and unique; `<<` merges a mapping (or a list of them) in, its keys
    /// losing to the mapping's own wherever they are written.
    fn mapping(&mut self, depth: usize) -> Result<Vec<(Key, Node)>, ImportError> {
        let mut own: Vec<(Key, Node)> = Vec::new();
        let mut merged: Vec<(Key, Node)> = Vec::new();
        let mut merge_at = None;
        loop {
            let (event, mark) = self.next()?;
            if event == Event::MappingEnd {
                break;
            }
            let key = self.node(event, mark, depth + 1)?;
            let name = match &key.value {
                Value::Scalar { text, .. } => text.clone(),
                _ => {
                    return Err(ImportError::data(
                        key.origin,
                        "a mapping key must be a plain value, not a list or mapping",
                    ))
                }
            };
            let (event, mark) = self.next()?;
            let value = self.node(event, mark, depth + 1)?;
            if name == "<<" && matches!(&key.value, Value::Scalar { plain: true, .. }) {
                merge_at.get_or_insert(own.len());
                let sources = match value.value {
                    Value::Map(entries) => vec![entries],
                    Value::Seq(items) => items
                        .into_iter()
                        .map(|item| match item.value {
                            Value::Map(entries) => Ok(entries),
                            _ => Err(ImportError::data(
                                item.origin,
                                "`<<` merges mappings; this list holds something else",
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(ImportError::data(
                            value.origin,
                            "`<<` merges a mapping or a list of mappings",
                        ))
                    }
                };
                // The first source named wins, as in YAML's merge spec.
                for entry in sources.into_iter().flatten() {
                    if !merged.iter().any(|(k, _)| k.name == entry.0.name) {
                        merged.push(entry);
                    }
                }
                continue;
            }
            if let Some((first, _)) = own.iter().find(|(k, _)| k.name == name) {
                return Err(ImportError::data(
                    key.origin,
                    format!(
                        "key {name:?} is defined twice in this mapping (first at line {})",
                        first.origin.line
                    ),
                ));
            }
            own.push((
                Key {
                    name,
                    origin: key.origin,
                },
                value,
            ));
        }
        let Some(at) = merge_at else {
            return Ok(own);
        };
        merged.retain(|(k, _)| !own.iter().any(|(o, _)| o.name == k.name));
        let rest = own.split_off(at);
        own.extend(merged);
        own.extend(rest);
        Ok(own)
    }
}

fn size(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + size(v)).sum::<usize>(),
    }
}

/// `\uD83D\uDE00` inside double-quoted strings becomes `\U0001F600`; all
/// else is left as is (a lone surrogate stays, and fails to parse at its
/// line).
fn join_surrogate_pairs(text: &str) -> String {
    if !text.contains("\\u") && !text.contains("\\U") {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            None if b == b'"' || b == b'\'' => quote = Some(b),
            Some(b'\'') if b == b'\'' => {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    quote = None;
                }
            }
            Some(b'"') if b == b'"' => quote = None,
            Some(b'"') if b == b'\\' => {
                if let Some(c) = surrogate_pair_at(bytes, i) {
                    out.push_str(&text[copied..i]);
                    out.push_str(&format!("\\U{:08X}", c));
                    i += 12;
                    copied = i;
                    continue;
                }
                i += 1; // the escaped character
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// The code point of `\uHHHH\uHHHH` at `i` when it is a high and a low
/// surrogate.
fn surrogate_pair_at(bytes: &[u8], i: usize) -> Option<u32> {
    let unit = |at: usize| -> Option<u32> {
        let esc = bytes.get(at..at + 6)?;
        if esc[0] != b'\\' || (esc[1] != b'u' && esc[1] != b'U') {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&esc[2..6]).ok()?, 16).ok()
    };
    let high = unit(i)?;
    let low = unit(i + 6)?;
    if !(0xD800..0xDC00).contains(&high) || !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    Some(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Node {
        parse(text, Path::new("f.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn failed(text: &str) -> String {
        parse(text, Path::new("f.yaml"))
            .err()
            .unwrap_or_else(|| panic!("parsed {text:?}"))
            .to_string()
    }

    fn scalar(node: &Node) -> (&str, bool) {
        match &node.value {
            Value::Scalar { text, plain } => (text, *plain),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn values_keep_their_lines_and_order() {
        let root = parsed("# c\nb: 1\na:\n  - x\n  - \"y\"\nc: {k: v}\n");
        let entries = root.map("root").unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<(&str, usize)> = entries
            .iter()
            .map(|(k, _)| (k.name.as_str(), k.origin.line))
            .collect();
        assert_eq!(keys, [("b", 2), ("a", 3), ("c", 6)]);
        let a = root
            .get("a")
            .and_then(|a| a.seq("a").ok())
            .unwrap_or_else(|| panic!("a"));
        assert_eq!(scalar(&a[0]), ("x", true));
        assert_eq!(scalar(&a[1]), ("y", false));
        assert_eq!(a[1].origin, Origin::new("f.yaml", 5));
    }

    #[test]
    fn scalars_are_typed_when_asked() {
        let root = parsed("n: 5\nq: \"7\"\nf: 2.0\nb: yes\nt: True\nx: many\nz: ~\nneg: -1\n");
        let get = |k: &str| root.get(k).unwrap_or_else(|| panic!("{k}"));
        assert_eq!(get("n").int("n").ok(), Some(5));
        assert_eq!(get("q").uint("q").ok(), Some(7));
        assert_eq!(get("f").int("f").ok(), Some(2));
        assert_eq!(get("b").bool("b").ok(), Some(true));
        assert_eq!(get("t").bool("t").ok(), Some(true));
        assert!(get("z").is_null());
        assert_eq!(
            get("x").int("replicas").err().map(|e| e.to_string()),
            Some("f.yaml:6: replicas: expected a whole number, found \"many\"".into())
        );
        assert_eq!(
            get("neg").uint("n").err().map(|e| e.to_string()),
            Some("f.yaml:8: n: expected a whole number of 0 or more, found \"-1\"".into())
        );
        assert_eq!(
            root.str("root").err().map(|e| e.to_string()),
            Some("f.yaml:1: root: expected a string, found a mapping".into())
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let root = parsed(
            "base: &b\n  restart: always\n  backoff: 2\ncopy: *b\nweb:\n  backoff: 5\n  <<: *b\n  cmd: x\n",
        );
        let copy = root.get("copy").unwrap_or_else(|| panic!("copy"));
        assert_eq!(copy.get("restart").map(scalar), Some(("always", true)));
        let web = root.get("web").unwrap_or_else(|| panic!("web"));
        let keys: Vec<&str> = web
            .map("web")
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|(k, _)| k.name.as_str())
            .collect();
        assert_eq!(keys, ["backoff", "restart", "cmd"]);
        // The mapping's own key wins over the merged one.
        assert_eq!(web.get("backoff").map(scalar), Some(("5", true)));
    }

    #[test]
    fn bad_yaml_is_an_error_at_its_line() {
        assert_eq!(
            failed("a: 1\nb: [1\nc: 2\n"),
            "f.yaml:3: not valid YAML: illegal placement of ':' indicator"
        );
        assert_eq!(
            failed("a: 1\nb: 2\na: 3\n"),
            "f.yaml:3: key \"a\" is defined twice in this mapping (first at line 1)"
        );
        assert_eq!(
            failed("a: 1\n---\nb: 2\n"),
            "f.yaml:3: a second YAML document (after `---`); kelpie import reads one per file"
        );
        assert!(failed("a: *nope\n").contains("f.yaml:1: not valid YAML"));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(failed(&deep).contains("nested more than 64 levels deep"));
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        assert!(
            failed(bomb).contains("more than 1000000 values"),
            "{}",
            failed(bomb)
        );
        assert!(parsed("").is_null());
    }

    #[test]
    fn json_reads_as_yaml_with_escapes_and_surrogate_pairs() {
        let json = "{\n\t\"apps\": [\n\t\t{\"name\": \"w\\u00e9b\\/1\", \"emoji\": \"\\ud83d\\ude00!\", \"esc\": \"a\\\\ud83d\\\\ude00\", \"n\": 5, \"t\": true, \"e\": \"\\b\\f\\n\\r\\t\\\"\"}\n\t]\n}\n";
        let root = parse_json(json, Path::new("ecosystem.json")).unwrap_or_else(|e| panic!("{e}"));
        let apps = root
            .get("apps")
            .and_then(|a| a.seq("apps").ok())
            .unwrap_or_else(|| panic!("apps"));
        let app = &apps[0];
        assert_eq!(app.origin.line, 3);
        let text = |k: &str| app.get(k).map(scalar).map(|(t, _)| t.to_string());
        assert_eq!(text("name").as_deref(), Some("wéb/1"));
        assert_eq!(text("emoji").as_deref(), Some("😀!"));
        // An escaped backslash before `u` is not an escape.
        assert_eq!(text("esc").as_deref(), Some("a\\ud83d\\ude00"));
        assert_eq!(text("e").as_deref(), Some("\u{8}\u{c}\n\r\t\""));
        assert_eq!(app.get("n").map(|n| n.int("n").ok()), Some(Some(5)));

        let lone = parse_json("{\n\"a\": \"\\ud83d\"}", Path::new("e.json"))
            .err()
            .map(|e| e.to_string());
        assert!(
            lone.as_deref()
                .is_some_and(|e| e.starts_with("e.json:2: not valid YAML")),
            "{lone:?}"
        );
        let no_lines = root.without_lines();
        assert_eq!(no_lines.get("apps").map(|a| a.origin.line), Some(0));
    }
}

//! Reading one plist file into a value and its key lines: binary or XML
//! told apart by content, sizes bounded (`bounds`, `key_lines`) before
//! the `plist` crate builds anything, and the crate's errors put into
//! words with the line they point at.

use std::io::Cursor;
use std::path::Path;

use plist::Value;

use super::super::draft::Origin;
use super::super::source::{line_of, read_bytes};
use super::super::{Context, ImportError};
use super::bounds;
use super::key_lines::{self, KeyLines, Refused};

/// The file's top-level value, and where its XML keys are.
pub(super) fn read_plist(file: &Path, cx: &Context) -> Result<(Value, KeyLines), ImportError> {
    parse_plist(file, &read_bytes(file, cx)?)
}

/// `bytes`, the content of `file`, as a plist value and its key lines.
pub(super) fn parse_plist(file: &Path, bytes: &[u8]) -> Result<(Value, KeyLines), ImportError> {
    if bytes.starts_with(b"bplist") {
        bounds::check_binary(bytes)
            .map_err(|too| ImportError::data(Origin::new(file, 0), too.message))?;
        let value = Value::from_reader(Cursor::new(bytes)).map_err(|err| {
            ImportError::data(
                Origin::new(file, 0),
                format!("not a valid binary property list: {}", describe(&err).0),
            )
        })?;
        return Ok((value, KeyLines::default()));
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let line = line_of(bytes, err.valid_up_to());
        ImportError::data(
            Origin::new(file, line),
            "not valid UTF-8 text (an XML property list is UTF-8; a binary one starts with \"bplist\")",
        )
    })?;
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if !head.starts_with('<') {
        let hint = if head.starts_with('{') || head.starts_with('(') {
            " (an old-style ASCII plist? `plutil -convert xml1 FILE` turns it into XML)"
        } else {
            ""
        };
        return Err(ImportError::data(
            Origin::new(file, 1),
            format!("not a property list: expected XML (<?xml …><plist>) or a binary plist{hint}"),
        ));
    }
    // Nesting too deep is refused before the crate builds (and drops) it;
    // a repeated key only once the file is known to parse.
    let scanned = match key_lines::scan(text) {
        Err(deep @ Refused::TooDeep { .. }) => return Err(refusal(file, deep)),
        scanned => scanned,
    };
    let value = Value::from_reader_xml(bytes).map_err(|err| {
        let (why, offset) = describe(&err);
        let missing = scanned.as_ref().ok().and_then(KeyLines::missing_value);
        let (line, why) = match (offset, missing) {
            (Some(offset), _) => (line_of(bytes, offset), why),
            (None, Some((key, line))) => (line, format!("key {key:?} has no value")),
            (None, None) => (0, why),
        };
        ImportError::data(
            Origin::new(file, line),
            format!("not a valid XML property list: {why}"),
        )
    })?;
    let lines = scanned.map_err(|refused| refusal(file, refused))?;
    Ok((value, lines))
}

fn refusal(file: &Path, refused: Refused) -> ImportError {
    match refused {
        Refused::Duplicate { path, line, first } => ImportError::data(
            Origin::new(file, line),
            format!(
                "key {:?} is given twice in one dictionary (first at line {first})",
                path.join("."),
            ),
        ),
        Refused::TooDeep { line } => ImportError::data(
            Origin::new(file, line),
            format!("nested more than {} levels deep", bounds::MAX_DEPTH),
        ),
    }
}

/// A `plist` error in words, and the byte offset it names. The crate
/// exposes its error kinds and the offset only through its message
/// (`Kind (offset N)`, `Kind { expected: A, found: B }`), so they are read
/// from there; a message without an offset gives no line, and a kind not
/// known here is spelled out from its name.
fn describe(err: &plist::Error) -> (String, Option<usize>) {
    // The bytes are in memory, so a read error is a read past their end:
    // a table or an object that says it is longer than the file.
    if err.as_io().is_some() {
        return ("the file ends before the property list does".into(), None);
    }
    let text = err.to_string();
    let (kind, offset) = match text.rsplit_once(" (offset ") {
        Some((kind, rest)) => (
            kind.to_string(),
            rest.strip_suffix(')').and_then(|n| n.parse().ok()),
        ),
        None => (text.clone(), None),
    };
    let (name, fields) = match kind.split_once(" { ") {
        Some((name, fields)) => (name, fields.trim_end_matches(" }")),
        None => (kind.as_str(), ""),
    };
    let field = |key: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(key)?.strip_prefix(": "))
            .map(event_words)
    };
    let words = match name {
        "UnexpectedEventType" => match (field("expected"), field("found")) {
            (Some(expected), Some(found)) => format!("expected {expected}, found {found}"),
            _ => "unexpected element".to_string(),
        },
        "UnexpectedEndOfEventStream" | "UnexpectedEof" => {
            "the file ends before the property list does".to_string()
        }
        "InvalidXmlSyntax" => "invalid XML".to_string(),
        "UnclosedXmlElement" => "an element is not closed".to_string(),
        "UnknownXmlElement" => "an element a property list does not have".to_string(),
        "UnexpectedXmlOpeningTag" => "an element where none belongs".to_string(),
        "UnexpectedXmlCharactersExpectedElement" => "text where an element belongs".to_string(),
        "InvalidIntegerString" => "<integer> holds something that is not an integer".to_string(),
        "InvalidRealString" => "<real> holds something that is not a number".to_string(),
        "InvalidDateString" => "<date> holds something that is not a date".to_string(),
        "InvalidDataString" => "<data> holds something that is not base64".to_string(),
        "InvalidMagic" => "it does not start as one".to_string(),
        other => camel_words(other),
    };
    (words, offset)
}

/// A `plist` event kind in words.
fn event_words(event: &str) -> String {
    match event {
        "ValueOrStartCollection" => "a value".into(),
        "DictionaryKeyOrEndCollection" => "a <key> or </dict>".into(),
        "EndCollection" => "the end of a <dict> or <array>".into(),
        "StartDictionary" => "<dict>".into(),
        "StartArray" => "<array>".into(),
        other => format!("{} value", camel_words(other)),
    }
}

/// `UnexpectedXmlOpeningTag` → "unexpected xml opening tag".
fn camel_words(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

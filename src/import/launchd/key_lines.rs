//! Where each `<key>` of an XML plist is, for messages and the report:
//! `plist::Value` has no positions, so the XML text is scanned once more,
//! here, for the nesting of `<dict>` and `<array>` and the line of every
//! key in it. The `plist` crate stays the authority on what the file
//! means; this scan only ever answers "which line", and a path it does not
//! know is line 0 (the whole file). It finds one thing `plist` does not:
//! a key given twice in one dictionary, which `plist` silently collapses.
//! It also bounds the nesting (as `bounds` does for binary plists), here
//! where the line of the offending element is known, and before each
//! frame's path makes the scan quadratic in the depth.

use std::collections::BTreeMap;

use super::bounds::MAX_DEPTH;

/// Lines of the keys of one plist, by their path from the top dictionary
/// (`["KeepAlive", "SuccessfulExit"]`; array elements are their index,
/// `["StartCalendarInterval", "0", "Hour"]`).
#[derive(Debug, Default)]
pub struct KeyLines {
    keys: BTreeMap<Vec<String>, usize>,
    /// The line of the top-level value (normally the outer `<dict>`).
    root: usize,
    /// The first key followed by another key or `</dict>` instead of a
    /// value, and its line: `plist` refuses it without saying where.
    missing_value: Option<(Vec<String>, usize)>,
}

/// What the scan refuses.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A key given twice in one dictionary.
    Duplicate {
        path: Vec<String>,
        line: usize,
        first: usize,
    },
    /// A `<dict>` or `<array>` nested deeper than `bounds::MAX_DEPTH`.
    TooDeep { line: usize },
}

impl KeyLines {
    /// The 1-based line of the key at `path`, 0 when unknown.
    pub fn line(&self, path: &[&str]) -> usize {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.keys.get(&path).copied().unwrap_or(0)
    }

    pub fn root(&self) -> usize {
        self.root
    }

    pub fn missing_value(&self) -> Option<(String, usize)> {
        self.missing_value
            .as_ref()
            .map(|(path, line)| (path.join("."), *line))
    }
}

impl KeyLines {
    fn note_missing_value(&mut self, dict: &[String], pending: Option<String>) {
        if let (None, Some(key)) = (&self.missing_value, pending) {
            let mut path = dict.to_vec();
            path.push(key);
            let line = self.keys.get(&path).copied().unwrap_or(0);
            self.missing_value = Some((path, line));
        }
    }
}

enum Frame {
    Dict {
        path: Vec<String>,
        /// The key whose value comes next.
        pending: Option<String>,
    },
    Array {
        path: Vec<String>,
        next: usize,
    },
}

/// Counts lines as the scan moves forward, so the whole scan is one pass.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl LineCounter<'_> {
    fn at(&mut self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        if end > self.offset {
            self.line += memchr::memchr_iter(b'\n', &self.text[self.offset..end]).count();
            self.offset = end;
        }
        self.line
    }
}

/// Scans `text` (an XML plist). Malformed XML is not an error here (the
/// parser reports it); only a key repeated within one dictionary, or
/// nesting too deep, is.
pub fn scan(text: &str) -> Result<KeyLines, Refused> {
    let bytes = text.as_bytes();
    let mut lines = LineCounter {
        text: bytes,
        offset: 0,
        line: 1,
    };
    let mut out = KeyLines::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_seen = false;
    let mut pos = 0;
    while let Some(found) = memchr::memchr(b'<', &bytes[pos..]) {
        let start = pos + found;
        let rest = &text[start..];
        let skip_to = |end: &str| rest.find(end).map(|i| start + i + end.len());
        let next = if rest.starts_with("<!--") {
            skip_to("-->")
        } else if rest.starts_with("<![CDATA[") {
            skip_to("]]>")
        } else if rest.starts_with("<?") {
            skip_to("?>")
        } else if rest.starts_with("<!") {
            skip_to(">")
        } else {
            None
        };
        if rest.starts_with("<!") || rest.starts_with("<?") {
            match next {
                Some(next) => {
                    pos = next;
                    continue;
                }
                None => break,
            }
        }
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[1..close];
        pos = start + close + 1;
        if let Some(name) = tag.strip_prefix('/') {
            if matches!(name.trim(), "dict" | "array") {
                if let Some(Frame::Dict { path, pending }) = stack.pop() {
                    out.note_missing_value(&path, pending);
                }
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = tag
            .trim_end_matches('/')
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or("");
        if name == "plist" {
            continue;
        }
        let line = lines.at(start);
        if name == "key" {
            let (key, after) = if self_closing {
                (String::new(), pos)
            } else {
                match text[pos..].find("</key>") {
                    Some(end) => (decode(&text[pos..pos + end]), pos + end + "</key>".len()),
                    None => break,
                }
            };
            pos = after;
            if let Some(Frame::Dict { path, pending }) = stack.last_mut() {
                out.note_missing_value(path, pending.take());
                let mut full = path.clone();
                full.push(key.clone());
                if let Some(&first) = out.keys.get(&full) {
                    return Err(Refused::Duplicate {
                        path: full,
                        line,
                        first,
                    });
                }
                out.keys.insert(full, line);
                *pending = Some(key);
            }
            continue;
        }
        // Any other element is a value: it fills its parent's next slot.
        let slot = match stack.last_mut() {
            None => {
                if !root_seen {
                    root_seen = true;
                    out.root = line;
                }
                Some(Vec::new())
            }
            Some(Frame::Dict { path, pending }) => pending.take().map(|key| {
                let mut full = path.clone();
                full.push(key);
                full
            }),
            Some(Frame::Array { path, next }) => {
                let mut full = path.clone();
                full.push(next.to_string());
                *next += 1;
                Some(full)
            }
        };
        if self_closing {
            continue;
        }
        // A value in no slot (a second top-level value, a value without a
        // key) still nests, so what follows it is placed right.
        let path = slot.unwrap_or_else(|| vec!["?".to_string()]);
        if matches!(name, "dict" | "array") && stack.len() >= MAX_DEPTH {
            return Err(Refused::TooDeep { line });
        }
        match name {
            "dict" => stack.push(Frame::Dict {
                path,
                pending: None,
            }),
            "array" => stack.push(Frame::Array { path, next: 0 }),
            _ => {}
        }
    }
    Ok(out)
}

/// Key text as XML means it: entities and CDATA sections resolved.
fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 3..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('&') {
            let Some(end) = after.find(';') else {
                out.push('&');
                rest = after;
                continue;
            };
            let entity = &after[..end];
            let decoded = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push('&');
                    rest = after;
                }
            }
        } else {
            let next = rest.find(['&', '<']).unwrap_or(rest.len()).max(1);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>com.example.a</string>
    <!-- <key>Commented</key> -->
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key> <false/>
        <key>PathState</key>
        <dict><key>/tmp/x</key><true/></dict>
    </dict>
    <key>StartCalendarInterval</key>
    <array>
        <dict><key>Hour</key><integer>1</integer></dict>
        <dict/>
        <dict>
            <key>Hour</key><integer>2</integer>
        </dict>
    </array>
    <key>A&amp;B</key><string><![CDATA[<key>NotAKey</key>]]></string>
    <key>Last</key><true/>
</dict>
</plist>
"#;

    #[test]
    fn every_key_has_its_line_by_path() {
        let lines = scan(PLIST).unwrap_or_else(|d| panic!("{d:?}"));
        let cases: [(&[&str], usize); 11] = [
            (&["Label"], 5),
            (&["KeepAlive"], 8),
            (&["KeepAlive", "SuccessfulExit"], 10),
            (&["KeepAlive", "PathState"], 11),
            (&["KeepAlive", "PathState", "/tmp/x"], 12),
            (&["StartCalendarInterval"], 14),
            (&["StartCalendarInterval", "0", "Hour"], 16),
            (&["StartCalendarInterval", "2", "Hour"], 19),
            (&["A&B"], 22),
            (&["Last"], 23),
            (&["Commented"], 0),
        ];
        for (path, want) in cases {
            assert_eq!(lines.line(path), want, "{path:?}");
        }
        assert_eq!(lines.line(&["NotAKey"]), 0);
        assert_eq!(lines.root(), 4);
    }

    #[test]
    fn a_key_given_twice_in_one_dictionary_is_found() {
        let text = "<plist><dict>\n<key>A</key><dict><key>X</key><true/></dict>\n<key>B</key><dict><key>X</key><true/></dict>\n<key>A</key><false/>\n</dict></plist>";
        assert_eq!(
            scan(text).err(),
            Some(Refused::Duplicate {
                path: vec!["A".into()],
                line: 4,
                first: 2,
            })
        );
    }

    #[test]
    fn nesting_deeper_than_the_bound_is_refused_at_its_line() {
        let nested = |depth: usize| {
            format!(
                "<plist><dict>\n<key>Deep</key>\n{}{}</dict></plist>",
                "<array>\n".repeat(depth),
                "</array>".repeat(depth)
            )
        };
        // The top dictionary is the first level.
        assert!(scan(&nested(MAX_DEPTH - 1)).is_ok());
        assert_eq!(
            scan(&nested(MAX_DEPTH)).err(),
            Some(Refused::TooDeep {
                line: 2 + MAX_DEPTH
            })
        );
    }

    #[test]
    fn a_key_without_a_value_is_found() {
        let cases = [
            (
                "<plist><dict>\n<key>A</key>\n<key>B</key><true/></dict></plist>",
                Some(("A".to_string(), 2)),
            ),
            (
                "<plist><dict>\n<key>A</key><dict>\n<key>B</key>\n</dict></dict></plist>",
                Some(("A.B".to_string(), 3)),
            ),
            ("<plist><dict><key>A</key><true/></dict></plist>", None),
        ];
        for (text, want) in cases {
            let lines = scan(text).unwrap_or_else(|d| panic!("{d:?}"));
            assert_eq!(lines.missing_value(), want, "{text}");
        }
    }

    #[test]
    fn entities_and_cdata_are_decoded() {
        let cases = [
            ("plain", "plain"),
            ("a&lt;b&gt;&quot;&apos;", "a<b>\"'"),
            ("&#65;&#x42;", "AB"),
            ("<![CDATA[x&y]]>z", "x&yz"),
            ("lone & amp", "lone & amp"),
            ("&bogus;", "&bogus;"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode(raw), want, "{raw}");
        }
    }
}

//! Writing the Prometheus text format (0.0.4) piecewise: headers, series,
//! labels, escaped values and numbers, without a String per line.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A family header written only before its first sample.
pub(super) struct Lazy {
    header: Option<(&'static str, &'static str, &'static str)>,
}

impl Lazy {
    pub(super) fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            header: Some((name, kind, help)),
        }
    }

    pub(super) fn open(&mut self, w: &mut Writer<'_>) {
        if let Some((name, kind, help)) = self.header.take() {
            w.header(name, kind, help);
        }
    }
}

/// Appends text-format lines piecewise (`series`, `label`, `end_*`), so
/// no line needs an intermediate String. Label values passed in must be
/// escaped already (`escape`) or be constants that need no escaping.
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut String,
}

impl Writer<'_> {
    pub(super) fn header(&mut self, name: &str, kind: &str, help: &str) {
        // HELP texts are constants without backslashes or newlines.
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    /// `name{program="…"`, labels still open.
    pub(super) fn series(&mut self, name: &str, program: &str) {
        self.out.push_str(name);
        self.out.push_str("{program=\"");
        self.out.push_str(program);
        self.out.push('"');
    }

    /// `key` comes with its punctuation (`,state="`), one copy instead of
    /// three on the hottest path.
    pub(super) fn label(&mut self, key: &str, value: &str) {
        self.out.push_str(key);
        self.out.push_str(value);
        self.out.push('"');
    }

    /// A sample without labels.
    pub(super) fn plain_u64(&mut self, name: &str, value: u64) {
        self.out.push_str(name);
        self.out.push(' ');
        push_u64(self.out, value);
        self.out.push('\n');
    }

    pub(super) fn end_u64(&mut self, value: u64) {
        self.out.push_str("} ");
        push_u64(self.out, value);
        self.out.push('\n');
    }

    pub(super) fn end_i64(&mut self, value: i64) {
        self.out.push_str("} ");
        if value < 0 {
            self.out.push('-');
        }
        push_u64(self.out, value.unsigned_abs());
        self.out.push('\n');
    }

    pub(super) fn end_f64(&mut self, value: f64) {
        self.out.push_str("} ");
        push_f64(self.out, value);
        self.out.push('\n');
    }
}

/// A label value escaped for the text format: `\`, `"` and newline.
pub(super) fn escape(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub(super) fn push_u64(out: &mut String, mut n: u64) {
    // Faster than `write!` for the tens of thousands of integers a large
    // scrape has, most of them a single digit (0 and 1 gauges, counters).
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Byte by byte: a digit is one-byte char, and this skips the UTF-8
    // check a `&str` of the digits would need (a measurable share of the
    // text in the scrape benchmark's profile).
    for &digit in &digits[i..] {
        out.push(char::from(digit));
    }
}

pub(super) fn push_f64(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        // Whole numbers (zero backoffs, idle CPU) skip float formatting;
        // below 2^53 the integer is exact.
        if value < 0.0 {
            out.push('-');
        }
        push_u64(out, value.abs() as u64);
    } else {
        // Display never uses exponents and round-trips; Prometheus parses
        // plain decimals.
        let _ = write!(out, "{value}");
    }
}

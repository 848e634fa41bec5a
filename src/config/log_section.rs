//! A program's `log` table: inherit, a rotated file, or discard.

use std::path::Path;

use super::decode::{check_keys, expect_table, get, get_choice, get_u32, join, parse_size, Table};
use super::diagnostics::Diags;
use super::LogMode;

pub(super) fn parse_log(
    t: &Table<'_>,
    p: &str,
    base_dir: &Path,
    diags: &mut Diags<'_>,
) -> Option<LogMode> {
    let Some(value) = t.get("log") else {
        return Some(LogMode::Inherit);
    };
    let bp = join(p, "log");
    let b = expect_table(value, &bp, diags)?;
    check_keys(b, &bp, &["mode", "file", "max_size", "keep"], diags);
    #[derive(Clone, Copy, PartialEq)]
    enum M {
        Inherit,
        File,
        Discard,
    }
    let mode = get_choice(
        b,
        &bp,
        "mode",
        &[
            ("inherit", M::Inherit),
            ("file", M::File),
            ("discard", M::Discard),
        ],
        M::Inherit,
        diags,
    )?;
    let file = get::<String>(b, &bp, "file", diags);
    let max_size = match get::<String>(b, &bp, "max_size", diags) {
        Some(text) => match parse_size(text.get_ref()) {
            Ok(size) if size >= 1024 => Some(size),
            Ok(_) => {
                diags.error(
                    &text.span(),
                    &join(&bp, "max_size"),
                    "must be at least 1KiB",
                );
                None
            }
            Err(why) => {
                diags.error(&text.span(), &join(&bp, "max_size"), why);
                None
            }
        },
        None if b.contains_key("max_size") => None,
        None => Some(10_000_000),
    };
    let keep = get_u32(b, &bp, "keep", 0..=1000, 5, diags);
    match mode {
        M::Inherit | M::Discard => {
            for key in ["file", "max_size", "keep"] {
                if let Some(v) = b.get(key) {
                    diags.error(
                        &v.span(),
                        &join(&bp, key),
                        "only applies with mode = \"file\"",
                    );
                }
            }
            Some(if mode == M::Inherit {
                LogMode::Inherit
            } else {
                LogMode::Discard
            })
        }
        M::File => {
            let Some(file) = file else {
                if !b.contains_key("file") {
                    diags.error(&value.span(), &bp, "mode = \"file\" needs `file`");
                }
                return None;
            };
            if file.get_ref().is_empty() {
                diags.error(&file.span(), &join(&bp, "file"), "must not be empty");
                return None;
            }
            Some(LogMode::File {
                path: base_dir.join(file.get_ref()),
                max_size: max_size?,
                keep: keep?,
            })
        }
    }
}

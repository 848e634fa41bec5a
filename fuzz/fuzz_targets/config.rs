//! Any bytes as a config file: validation returns diagnostics, never
//! panics, and every diagnostic is one line at a location inside the input.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use kelpie::config::{validate, Host, Mode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static HOST: OnceLock<Host> = OnceLock::new();
    let host = HOST.get_or_init(Host::current);
    let source = String::from_utf8_lossy(data);
    let path = Path::new("/fuzz/supervisor.toml");
    let validation = validate(&source, path, Mode::Check, host);
    let lines = source.split('\n').count();
    for diagnostic in &validation.diagnostics {
        let text = diagnostic.to_string();
        assert!(
            !text.contains(['\n', '\r']),
            "multi-line diagnostic: {text:?}"
        );
        assert!(
            text.starts_with("/fuzz/supervisor.toml:"),
            "unlocated: {text:?}"
        );
        assert!(diagnostic.line <= lines, "line beyond the input: {text:?}");
    }
    assert_eq!(
        validation.errors().next().is_some(),
        validation.config.is_none(),
        "a config came with errors, or none without"
    );
});

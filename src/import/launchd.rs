//! Not yet translated: this format is being built (issue 15).

use std::path::PathBuf;

use super::draft::Draft;
use super::{Context, ImportError, Origin};

pub fn import(files: &[PathBuf], _cx: &Context) -> Result<Draft, ImportError> {
    let file = files.first().cloned().unwrap_or_default();
    Err(ImportError::data(
        Origin::new(file, 0),
        "this format is not supported yet",
    ))
}

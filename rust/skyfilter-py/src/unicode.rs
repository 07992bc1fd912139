//! The running interpreter's Unicode character classes for the tokenizers: the `words` preset must cut text
//! exactly as Python's `re` does, and Python's Unicode version (14 in 3.11, 15 in 3.12, 15.1 in 3.13) is not
//! the core's. `skyfilter._unicode.character_classes()` reads them from the interpreter once, before the first
//! text is tokenized; the core keeps them for the life of the process.

use pyo3::prelude::*;
use skyfilter_core::text::{char_classes_fixed, install_char_classes, CharClasses};

use crate::error::to_py;

/// The half-open code point ranges of the word characters, and every code point whose lower-case form is not
/// itself with that form.
type Definitions = (Vec<(u32, u32)>, Vec<(u32, String)>);

/// Installs the interpreter's character classes unless classes are already in use; every binding that
/// tokenizes calls it first.
pub fn use_python_unicode(py: Python<'_>) -> PyResult<()> {
    if char_classes_fixed() {
        return Ok(());
    }
    let (words, lowercase): Definitions = py
        .import("skyfilter._unicode")?
        .call_method0("character_classes")?
        .extract()?;
    let classes = py
        .detach(|| CharClasses::from_definitions(&words, &lowercase))
        .map_err(to_py)?;
    install_char_classes(classes); // false: another thread installed the same classes first
    Ok(())
}

//! `skyfilter._core`: the Python bindings of skyfilter-core. This file is only a table of contents;
//! each area converts types in its own module and calls the core with the GIL released.

mod arrays;
mod arrow_ffi;
mod contam;
mod dedup;
mod error;
mod parquet;
mod select;
mod texts;
mod unicode;

use pyo3::prelude::*;

/// Every allocation of the extension; while a parquet file is read (`ParquetBatches`), large freed blocks (its
/// decoded batches) are kept for the next batch instead of unmapped and faulted in again.
#[global_allocator]
pub(crate) static ALLOCATOR: skyfilter_core::recycle::Recycling = skyfilter_core::recycle::Recycling::new();

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::quiet_panics();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SkyfilterError", m.py().get_type::<error::SkyfilterError>())?;
    m.add("InvalidTextError", m.py().get_type::<error::InvalidTextError>())?;
    m.add_class::<contam::BenchmarkIndex>()?;
    m.add_function(wrap_pyfunction!(contam::tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::row_keys, m)?)?;
    m.add_class::<dedup::MinHasher>()?;
    m.add_class::<dedup::NearDedup>()?;
    m.add_function(wrap_pyfunction!(dedup::components, m)?)?;
    m.add("SELECT_REASONS", skyfilter_core::select::REASONS.to_vec())?;
    m.add_function(wrap_pyfunction!(select::row_reasons, m)?)?;
    m.add_function(wrap_pyfunction!(select::top_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(select::length_ratio_fails, m)?)?;
    m.add_function(wrap_pyfunction!(select::segment_means, m)?)?;
    m.add_class::<select::GroupIds>()?;
    m.add_class::<parquet::ParquetBatches>()?;
    m.add_function(wrap_pyfunction!(arrays::string_views, m)?)?;
    m.add_function(wrap_pyfunction!(arrays::string_rows, m)?)?;
    m.add_function(wrap_pyfunction!(error::_panic, m)?)?;
    Ok(())
}

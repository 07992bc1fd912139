//! Bindings of `skyfilter_core::parquet`: a parquet file as an iterator of pyarrow record batches.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use pyo3::prelude::*;
use skyfilter_core::parquet::ParquetRows;
use skyfilter_core::recycle::Keeping;
use skyfilter_core::Error;

use crate::arrow_ffi::batch_to_pyarrow;
use crate::error::{guarded, panic_error, to_py, SkyfilterError};
use crate::ALLOCATOR;

/// The rows of a parquet file (all top-level columns, or the named ones) as pyarrow record batches of at most
/// `batch_rows` rows, in file order; row groups are decoded in parallel on `threads` workers (0: all cores),
/// the next few while Python works on the batches of the last. With `views`, top-level utf8 columns come back as
/// string_view columns over the decompressed pages (no copy of the text; `string_rows` copies the rows a writer
/// keeps). `row_groups = (first, stop)` reads only row groups `first..stop` (a piece of the file).
#[pyclass(module = "skyfilter._core")]
pub struct ParquetBatches {
    rows: Arc<ParquetRows>,
    next_group: usize,
    /// One past the last row group to read.
    stop_group: usize,
    /// The next window of row groups, decoding on a background thread while Python works on `ready`.
    pending: Option<JoinHandle<Result<Vec<RecordBatch>, Error>>>,
    ready: VecDeque<RecordBatch>,
    /// The freed buffers of the batches already read serve the next ones while the file is read.
    _keeping: Keeping<'static>,
}

impl ParquetBatches {
    /// Starts decoding the next window of row groups, if any is left.
    fn prefetch(&mut self) {
        let total = self.stop_group;
        if self.pending.is_some() || self.next_group >= total {
            return;
        }
        let end = (self.next_group + self.rows.window()).min(total);
        let (rows, groups) = (Arc::clone(&self.rows), self.next_group..end);
        self.pending = Some(std::thread::spawn(move || rows.read(groups)));
        self.next_group = end;
    }
}

#[pymethods]
impl ParquetBatches {
    #[new]
    #[pyo3(signature = (path, columns = None, *, batch_rows = 65_536, threads = 0, views = false, row_groups = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        columns: Option<Vec<String>>,
        batch_rows: usize,
        threads: usize,
        views: bool,
        row_groups: Option<(usize, usize)>,
    ) -> PyResult<Self> {
        guarded(|| {
            let rows = py
                .detach(|| ParquetRows::open(&path, columns.as_deref(), batch_rows, threads, views))
                .map_err(to_py)?;
            let total = rows.num_row_groups();
            let (first, stop) = row_groups.unwrap_or((0, total));
            if first > stop || stop > total {
                return Err(SkyfilterError::new_err(format!(
                    "row_groups ({first}, {stop}) out of range: the file has {total} row groups"
                )));
            }
            Ok(Self {
                rows: Arc::new(rows),
                next_group: first,
                stop_group: stop,
                pending: None,
                ready: VecDeque::new(),
                _keeping: ALLOCATOR.keeping(),
            })
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        guarded(|| {
            while self.ready.is_empty() {
                self.prefetch();
                let Some(pending) = self.pending.take() else {
                    break;
                };
                let batches = py
                    .detach(|| pending.join())
                    .map_err(|payload| panic_error(payload.as_ref()))?
                    .map_err(to_py)?;
                self.ready.extend(batches);
                self.prefetch();
            }
            self.ready
                .pop_front()
                .map(|batch| batch_to_pyarrow(py, batch))
                .transpose()
        })
    }
}

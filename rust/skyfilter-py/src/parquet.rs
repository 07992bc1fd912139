//! Bindings of `skyfilter_core::parquet`: a parquet file as an iterator of pyarrow record batches.

use std::collections::VecDeque;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use pyo3::prelude::*;
use pyo3_arrow::PyRecordBatch;
use skyfilter_core::parquet::ParquetRows;

use crate::error::to_py;

/// The rows of a parquet file (all top-level columns, or the named ones) as pyarrow record batches of at most
/// `batch_rows` rows, in file order; row groups are decoded in parallel on `threads` workers (0: all cores).
#[pyclass(module = "skyfilter._core")]
pub struct ParquetBatches {
    rows: ParquetRows,
    next_group: usize,
    ready: VecDeque<RecordBatch>,
}

#[pymethods]
impl ParquetBatches {
    #[new]
    #[pyo3(signature = (path, columns = None, *, batch_rows = 65_536, threads = 0))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        columns: Option<Vec<String>>,
        batch_rows: usize,
        threads: usize,
    ) -> PyResult<Self> {
        let rows = py
            .detach(|| ParquetRows::open(&path, columns.as_deref(), batch_rows, threads))
            .map_err(to_py)?;
        Ok(Self {
            rows,
            next_group: 0,
            ready: VecDeque::new(),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        while self.ready.is_empty() && self.next_group < self.rows.num_row_groups() {
            let end = (self.next_group + self.rows.window()).min(self.rows.num_row_groups());
            let (rows, groups) = (&self.rows, self.next_group..end);
            let batches = py.detach(|| rows.read(groups)).map_err(to_py)?;
            self.ready.extend(batches);
            self.next_group = end;
        }
        self.ready
            .pop_front()
            .map(|batch| Ok(PyRecordBatch::new(batch).into_pyarrow(py)?.unbind()))
            .transpose()
    }
}

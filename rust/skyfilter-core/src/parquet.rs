//! Parquet input: the row groups of a file decoded in parallel into Arrow record batches, in file order.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use crate::Error;

fn parquet_error(e: impl std::fmt::Display) -> Error {
    Error::Parquet(e.to_string())
}

/// A parquet file opened for reading some or all of its top-level columns, a few row groups at a time.
pub struct ParquetRows {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    batch_rows: usize,
    pool: rayon::ThreadPool,
}

impl ParquetRows {
    /// Reads the footer; `columns` are top-level column names (all when `None`), `threads` 0 means all cores.
    pub fn open(path: &Path, columns: Option<&[String]>, batch_rows: usize, threads: usize) -> Result<Self, Error> {
        let file = File::open(path).map_err(parquet_error)?;
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(parquet_error)?;
        let projection = match columns {
            None => ProjectionMask::all(),
            Some(names) => {
                let fields = metadata.schema().fields();
                let indices = names
                    .iter()
                    .map(|n| {
                        fields
                            .iter()
                            .position(|f| f.name() == n)
                            .ok_or_else(|| Error::Parquet(format!("no column {n:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ProjectionMask::roots(metadata.parquet_schema(), indices)
            }
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::ThreadPool(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            metadata,
            projection,
            batch_rows: batch_rows.max(1),
            pool,
        })
    }

    pub fn num_row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// Row groups decoded at once by [`Self::read`] for full use of the workers.
    pub fn window(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The batches of row groups `groups`, one row group per worker, in file order.
    pub fn read(&self, groups: Range<usize>) -> Result<Vec<RecordBatch>, Error> {
        let per_group: Vec<Result<Vec<RecordBatch>, Error>> = self
            .pool
            .install(|| groups.into_par_iter().map(|g| self.read_group(g)).collect());
        let mut out = Vec::new();
        for batches in per_group {
            out.extend(batches?);
        }
        Ok(out)
    }

    fn read_group(&self, group: usize) -> Result<Vec<RecordBatch>, Error> {
        let file = File::open(&self.path).map_err(parquet_error)?;
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
            .with_row_groups(vec![group])
            .with_projection(self.projection.clone())
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(parquet_error)?
            .map(|batch| batch.map_err(parquet_error))
            .collect()
    }
}

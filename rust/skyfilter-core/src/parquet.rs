//! Parquet input: the row groups of a file decoded in parallel into Arrow record batches, in file order.

use std::fs::File;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use crate::pool::pool;
use crate::Error;

fn parquet_error(e: impl std::fmt::Display) -> Error {
    Error::Parquet(e.to_string())
}

/// Runs `decode`, which hands the bytes of a file to the parquet and arrow crates, with a panic of theirs as an
/// error: a corrupt file makes them panic (an embedded Arrow schema whose types do not decode: "Type NONE not
/// supported", "Int type with bit width of 1088", found by fuzzing), and a corrupt file is bad input, not a bug.
fn decoding<T>(decode: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    panic::catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Parquet(format!("corrupt file: {message}")))
    })
}

/// A parquet file opened for reading some or all of its top-level columns, a few row groups at a time.
pub struct ParquetRows {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    batch_rows: usize,
    /// `None`: row groups are decoded on the calling thread (one thread asked for, or a forked process).
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl ParquetRows {
    /// Reads the footer; `columns` are top-level column names (all when `None`), `threads` 0 means all cores.
    /// With `views`, top-level utf8 columns are decoded as string_view columns whose values stay in the
    /// decompressed pages: no copy of the text, for a reader that keeps only some rows (see
    /// [`crate::views::copy_rows`]).
    pub fn open(
        path: &Path,
        columns: Option<&[String]>,
        batch_rows: usize,
        threads: usize,
        views: bool,
    ) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, &e))?;
        let metadata = decoding(|| {
            let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(parquet_error)?;
            if !views {
                return Ok(metadata);
            }
            let schema = metadata.schema();
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
                    _ => f.as_ref().clone(),
                })
                .collect();
            let hint = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
            let options = ArrowReaderOptions::new().with_schema(hint);
            ArrowReaderMetadata::try_new(metadata.metadata().clone(), options).map_err(parquet_error)
        })?;
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
        let pool = pool(threads)?;
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
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// The batches of row groups `groups`, one row group per worker, in file order.
    pub fn read(&self, groups: Range<usize>) -> Result<Vec<RecordBatch>, Error> {
        let per_group: Vec<Result<Vec<RecordBatch>, Error>> = match &self.pool {
            None => groups.map(|g| self.read_group(g)).collect(),
            Some(pool) => pool.install(|| groups.into_par_iter().map(|g| self.read_group(g)).collect()),
        };
        let mut out = Vec::new();
        for batches in per_group {
            out.extend(batches?);
        }
        Ok(out)
    }

    fn read_group(&self, group: usize) -> Result<Vec<RecordBatch>, Error> {
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, &e))?;
        decoding(|| {
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_row_groups(vec![group])
                .with_projection(self.projection.clone())
                .with_batch_size(self.batch_rows)
                .build()
                .map_err(parquet_error)?
                .map(|batch| batch.map_err(parquet_error))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;

    #[test]
    fn a_corrupt_embedded_schema_is_an_error_not_a_panic() {
        // Found by fuzzing: a bit flipped in the footer's embedded Arrow schema made arrow-ipc panic while decoding
        // it ("Type NONE not supported", "Int type with bit width of 1088 ..."). Every flip of its first bytes is
        // now read, or refused as a parquet error; some are the corrupt-file error.
        let dir = std::env::temp_dir();
        let (path, flipped) = (
            dir.join(format!("skyfilter-schema-{}.parquet", std::process::id())),
            dir.join(format!("skyfilter-schema-flipped-{}.parquet", std::process::id())),
        );
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..3)) as ArrayRef),
            ("text", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef),
        ])
        .unwrap();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let raw = std::fs::read(&path).unwrap();
        let at = raw.windows(12).position(|w| w == b"ARROW:schema").unwrap() + 12;
        let mut corrupt = 0;
        for i in at..(at + 240).min(raw.len() - 8) {
            for bit in 0..8 {
                let mut bytes = raw.clone();
                bytes[i] ^= 1 << bit;
                std::fs::write(&flipped, &bytes).unwrap();
                let read = ParquetRows::open(&flipped, None, 100, 1, false).and_then(|r| r.read(0..r.num_row_groups()));
                match read {
                    Ok(_) => {}
                    Err(Error::Parquet(message)) => corrupt += usize::from(message.starts_with("corrupt file")),
                    Err(other) => panic!("flip of byte {i} bit {bit}: {other:?}"),
                }
            }
        }
        assert!(corrupt > 0, "no flip reached the schema decoder's panics");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&flipped).unwrap();
    }

    #[test]
    fn views_read_the_same_text_as_strings() {
        let path = std::env::temp_dir().join(format!("skyfilter-views-{}.parquet", std::process::id()));
        let texts: Vec<Option<String>> = (0..3000)
            .map(|i| (i % 11 != 4).then(|| format!("row {i} {}", "long enough to leave the view ".repeat(i % 3))))
            .collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..3000)) as ArrayRef),
            ("text", Arc::new(StringArray::from(texts.clone())) as ArrayRef),
        ])
        .unwrap();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        for start in (0..3000).step_by(1000) {
            writer.write(&batch.slice(start, 1000)).unwrap();
            writer.flush().unwrap(); // a row group per slice
        }
        writer.close().unwrap();

        for views in [false, true] {
            let rows = ParquetRows::open(&path, None, 700, 2, views).unwrap();
            assert_eq!(rows.num_row_groups(), 3);
            let batches = rows.read(0..rows.num_row_groups()).unwrap();
            let mut read = Vec::new();
            for b in &batches {
                let column = b.column(1);
                if views {
                    assert_eq!(column.data_type(), &DataType::Utf8View);
                    read.extend(column.as_string_view().iter().map(|t| t.map(str::to_owned)));
                } else {
                    assert_eq!(column.data_type(), &DataType::Utf8);
                    read.extend(column.as_string::<i32>().iter().map(|t| t.map(str::to_owned)));
                }
            }
            assert_eq!(read, texts, "views {views}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}

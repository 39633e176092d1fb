//! `samples.parquet`: one row per side of every measured operation (the two rows of a
//! paired read share `op_index`), written while the run goes on. The collector feeds a
//! [`SampleSink`], which buffers at most `chunk_rows` rows in column vectors and writes
//! each full chunk as one Parquet row group with polars' eager batched writer, so memory
//! stays bounded however long the run is. Readable by polars, pandas and DuckDB.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polars::prelude::*;

use super::ReportError;
use crate::error::ErrorClass;
use crate::measure::Event;
use crate::measure::collector::{EventTap, QualitySample, SideSample};
use crate::measure::{OpKind, Side};
use crate::store::BackendKind;

/// File name inside a run's output directory.
pub const FILE_NAME: &str = "samples.parquet";
/// Rows per row group (and the most rows held in memory): ~4 MB of buffers.
pub const DEFAULT_CHUNK_ROWS: usize = 50_000;

/// One side of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    /// The operation's sequence number in the schedule; both sides of a paired read
    /// share it.
    pub op_index: u64,
    /// Intended start, from the run's start (ms).
    pub intended_start_ms: f64,
    /// The operation was intended within the warmup (not in the report's figures).
    pub warmup: bool,
    pub side: Side,
    pub backend: BackendKind,
    pub op: OpKind,
    /// `ok` or the error class (`timeout`, `connection`, ...).
    pub outcome: Result<(), ErrorClass>,
    /// From the intended start (open loop) or the send (closed loop), ms.
    pub latency_ms: f64,
    /// From the actual send, ms.
    pub service_ms: f64,
    /// overlap@k of the pair; `None` unless both sides answered a read.
    pub overlap: Option<f64>,
    /// recall@k of this side against exact ground truth; `None` without it, and for
    /// reads scored after the run (recorded and synthetic workloads: their recall is in
    /// the report only).
    pub recall: Option<f64>,
}

impl SampleRow {
    /// The rows of one completed operation, as the collector receives it
    /// (`Event::Done`); `backend` names the backend behind each side.
    pub fn from_done<'a>(
        op_index: u64,
        op: OpKind,
        intended: Duration,
        warmup: bool,
        sides: &'a [SideSample],
        quality: Option<&'a QualitySample>,
        backend: impl Fn(Side) -> BackendKind + 'a,
    ) -> impl Iterator<Item = SampleRow> + 'a {
        sides.iter().map(move |s| SampleRow {
            op_index,
            intended_start_ms: ms(intended),
            warmup,
            side: s.side,
            backend: backend(s.side),
            op,
            outcome: s.outcome,
            latency_ms: ms(s.latency),
            service_ms: ms(s.service),
            overlap: quality.and_then(|q| q.overlap),
            recall: quality.and_then(|q| match s.side {
                Side::A => q.recall[0],
                Side::B => q.recall[1],
                Side::Writer => None,
            }),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Column names, in file order.
pub const COLUMNS: [&str; 11] = [
    "op_index",
    "intended_start_ms",
    "warmup",
    "side",
    "backend",
    "op",
    "outcome",
    "latency_ms",
    "service_ms",
    "overlap",
    "recall",
];

#[derive(Default)]
struct Buffer {
    op_index: Vec<u64>,
    intended_start_ms: Vec<f64>,
    warmup: Vec<bool>,
    side: Vec<&'static str>,
    backend: Vec<&'static str>,
    op: Vec<&'static str>,
    outcome: Vec<&'static str>,
    latency_ms: Vec<f64>,
    service_ms: Vec<f64>,
    overlap: Vec<Option<f64>>,
    recall: Vec<Option<f64>>,
}

impl Buffer {
    fn with_capacity(n: usize) -> Self {
        Buffer {
            op_index: Vec::with_capacity(n),
            intended_start_ms: Vec::with_capacity(n),
            warmup: Vec::with_capacity(n),
            side: Vec::with_capacity(n),
            backend: Vec::with_capacity(n),
            op: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            latency_ms: Vec::with_capacity(n),
            service_ms: Vec::with_capacity(n),
            overlap: Vec::with_capacity(n),
            recall: Vec::with_capacity(n),
        }
    }

    fn len(&self) -> usize {
        self.op_index.len()
    }

    fn push(&mut self, r: SampleRow) {
        self.op_index.push(r.op_index);
        self.intended_start_ms.push(r.intended_start_ms);
        self.warmup.push(r.warmup);
        self.side.push(r.side.as_str());
        self.backend.push(r.backend.as_str());
        self.op.push(r.op.as_str());
        self.outcome.push(match r.outcome {
            Ok(()) => "ok",
            Err(c) => c.as_str(),
        });
        self.latency_ms.push(r.latency_ms);
        self.service_ms.push(r.service_ms);
        self.overlap.push(r.overlap);
        self.recall.push(r.recall);
    }

    /// Moves the buffered rows into a DataFrame, leaving the buffer empty (capacity kept).
    fn take_frame(&mut self) -> PolarsResult<DataFrame> {
        let n = self.len();
        let [a, b, c, d, e, f, g, h, i, j, k] = COLUMNS;
        let columns = vec![
            Column::new(a.into(), std::mem::take(&mut self.op_index)),
            Column::new(b.into(), std::mem::take(&mut self.intended_start_ms)),
            Column::new(c.into(), std::mem::take(&mut self.warmup)),
            Column::new(d.into(), std::mem::take(&mut self.side)),
            Column::new(e.into(), std::mem::take(&mut self.backend)),
            Column::new(f.into(), std::mem::take(&mut self.op)),
            Column::new(g.into(), std::mem::take(&mut self.outcome)),
            Column::new(h.into(), std::mem::take(&mut self.latency_ms)),
            Column::new(i.into(), std::mem::take(&mut self.service_ms)),
            Column::new(j.into(), std::mem::take(&mut self.overlap)),
            Column::new(k.into(), std::mem::take(&mut self.recall)),
        ];
        *self = Buffer::with_capacity(n);
        DataFrame::new(n, columns)
    }
}

/// Streams rows into `samples.parquet`. The file is written under a `.partial` name and
/// renamed by [`SampleSink::finish`], so an interrupted run never leaves a truncated
/// file that looks complete.
pub struct SampleSink {
    path: PathBuf,
    partial: PathBuf,
    chunk_rows: usize,
    buffer: Buffer,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    rows: u64,
}

impl SampleSink {
    /// A sink writing to `path` with [`DEFAULT_CHUNK_ROWS`] rows per row group.
    pub fn create(path: &Path) -> Result<Self, ReportError> {
        Self::with_chunk_rows(path, DEFAULT_CHUNK_ROWS)
    }

    pub fn with_chunk_rows(path: &Path, chunk_rows: usize) -> Result<Self, ReportError> {
        let chunk_rows = chunk_rows.max(1);
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        Ok(SampleSink {
            path: path.to_path_buf(),
            partial: PathBuf::from(name),
            chunk_rows,
            buffer: Buffer::with_capacity(chunk_rows.min(DEFAULT_CHUNK_ROWS)),
            writer: None,
            rows: 0,
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> ReportError {
        ReportError::Samples {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Buffers a row; writes a row group when the buffer is full.
    pub fn push(&mut self, row: SampleRow) -> Result<(), ReportError> {
        self.buffer.push(row);
        self.rows += 1;
        if self.buffer.len() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn flush(&mut self) -> Result<(), ReportError> {
        let df = self.buffer.take_frame().map_err(|e| self.err(e))?;
        if self.writer.is_none() {
            if let Some(dir) = self.partial.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
            }
            let file = File::create(&self.partial).map_err(|e| self.err(e))?;
            let writer = ParquetWriter::new(file)
                .with_compression(ParquetCompression::Snappy)
                .batched(df.schema())
                .map_err(|e| self.err(e))?;
            self.writer = Some(writer);
        }
        if df.height() > 0 {
            let writer = self.writer.as_mut().expect("created above");
            writer.write_batch(&df).map_err(|e| ReportError::Samples {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Writes the remaining rows and the footer, moves the file into place and returns
    /// its path. A sink that received no rows writes a valid file with the columns.
    pub fn finish(mut self) -> Result<PathBuf, ReportError> {
        if self.buffer.len() > 0 || self.writer.is_none() {
            self.flush()?;
        }
        let writer = self.writer.take().expect("flush creates the writer");
        writer.finish().map_err(|e| self.err(e))?;
        drop(writer);
        std::fs::rename(&self.partial, &self.path).map_err(|e| self.err(e))?;
        Ok(self.path.clone())
    }
}

/// Writes `rows` to `path` in one go (through a [`SampleSink`]); returns the row count.
pub fn write_samples(
    path: &Path,
    rows: impl IntoIterator<Item = SampleRow>,
) -> Result<u64, ReportError> {
    let mut sink = SampleSink::create(path)?;
    for r in rows {
        sink.push(r)?;
    }
    let n = sink.rows();
    sink.finish()?;
    Ok(n)
}

/// Rows per channel batch the tap may hold before it drops (and counts) a batch:
/// 64 × 1024 operations, a few MB.
const TAP_CHANNEL_BATCHES: usize = 64;

/// Streams a run's operations into `samples.parquet` from a thread of its own, so
/// Parquet encoding and disk writes never run on the async runtime that times the
/// requests. Feed the run's collector with [`SampleWriter::tap`]; after the run,
/// [`SampleWriter::finish`] writes the footer and returns the path and row count.
pub struct SampleWriter {
    tap: Option<EventTap>,
    thread: std::thread::JoinHandle<Result<(PathBuf, u64), ReportError>>,
}

impl SampleWriter {
    /// Starts the writer thread. `warmup` marks rows intended before it; `backends`
    /// names the backend behind side A, side B and the writer.
    pub fn spawn(
        path: &Path,
        warmup: Duration,
        backends: [BackendKind; 3],
    ) -> Result<Self, ReportError> {
        let mut sink = SampleSink::create(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(TAP_CHANNEL_BATCHES);
        let thread = std::thread::Builder::new()
            .name("samples.parquet".into())
            .spawn(move || {
                for batch in rx {
                    for event in batch {
                        let Event::Done {
                            seq,
                            op,
                            intended,
                            sides,
                            quality,
                            ..
                        } = event;
                        let rows = SampleRow::from_done(
                            seq,
                            op,
                            intended,
                            intended < warmup,
                            &sides,
                            quality.as_ref(),
                            |s| backends[s.index()],
                        );
                        for row in rows {
                            sink.push(row)?;
                        }
                    }
                }
                let rows = sink.rows();
                Ok((sink.finish()?, rows))
            })
            .map_err(|e| ReportError::Samples {
                path: path.to_path_buf(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(SampleWriter {
            tap: Some(EventTap(tx)),
            thread,
        })
    }

    /// The tap for the run's [`crate::measure::CollectorConfig`].
    pub fn tap(&self) -> EventTap {
        self.tap.clone().expect("taken only by finish")
    }

    /// Waits for the rows still queued (every tap clone must be dropped, i.e. the run
    /// finished), writes the footer and moves the file into place.
    pub fn finish(mut self) -> Result<(PathBuf, u64), ReportError> {
        drop(self.tap.take());
        match self.thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> SampleRow {
        let side = if i % 2 == 0 { Side::A } else { Side::B };
        SampleRow {
            op_index: i / 2,
            intended_start_ms: (i / 2) as f64 * 20.0,
            warmup: i < 4,
            side,
            backend: if side == Side::A {
                BackendKind::Pgvector
            } else {
                BackendKind::Opensearch
            },
            op: OpKind::Search,
            outcome: if i == 5 {
                Err(ErrorClass::Timeout)
            } else {
                Ok(())
            },
            latency_ms: 1.0 + i as f64,
            service_ms: 0.5 + i as f64,
            overlap: (i != 5 && i != 4).then_some(0.9),
            recall: (i != 5).then_some(1.0),
        }
    }

    fn read(path: &Path) -> DataFrame {
        ParquetReader::new(File::open(path).unwrap())
            .finish()
            .unwrap()
    }

    #[test]
    fn written_samples_read_back_with_their_columns_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(write_samples(&path, (0..10).map(row)).unwrap(), 10);
        let df = read(&path);
        assert_eq!(df.height(), 10);
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, COLUMNS);
        let types: Vec<DataType> = df.dtypes();
        assert_eq!(
            types,
            [
                DataType::UInt64,
                DataType::Float64,
                DataType::Boolean,
                DataType::String,
                DataType::String,
                DataType::String,
                DataType::String,
                DataType::Float64,
                DataType::Float64,
                DataType::Float64,
                DataType::Float64,
            ]
        );
        let outcome = df.column("outcome").unwrap().str().unwrap();
        assert_eq!(outcome.get(5), Some("timeout"));
        assert_eq!(outcome.get(0), Some("ok"));
        let backend = df.column("backend").unwrap().str().unwrap();
        assert_eq!(backend.get(1), Some("opensearch"));
        let overlap = df.column("overlap").unwrap().f64().unwrap();
        assert_eq!(overlap.get(4), None);
        assert_eq!(overlap.get(0), Some(0.9));
        assert_eq!(
            df.column("latency_ms").unwrap().f64().unwrap().get(3),
            Some(4.0)
        );
        assert!(!path.with_extension("parquet.partial").exists());
    }

    #[test]
    fn the_sink_streams_row_groups_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/samples.parquet");
        let mut sink = SampleSink::with_chunk_rows(&path, 3).unwrap();
        for i in 0..10 {
            sink.push(row(i)).unwrap();
            assert!(sink.buffer.len() < 3, "at most one chunk is held");
        }
        sink.finish().unwrap();
        let df = read(&path);
        assert_eq!(df.height(), 10);
        let idx = df.column("op_index").unwrap().u64().unwrap();
        assert_eq!(idx.get(9), Some(4));
    }

    #[test]
    fn the_writer_thread_takes_a_collectors_tap_and_marks_warmup_rows() {
        use crate::measure::collector::{Aggregator, CollectorConfig};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let warmup = Duration::from_millis(300);
        let writer = SampleWriter::spawn(
            &path,
            warmup,
            [
                BackendKind::Pgvector,
                BackendKind::Opensearch,
                BackendKind::Pgvector,
            ],
        )
        .unwrap();
        let mut agg = Aggregator::new(CollectorConfig {
            warmup,
            tap: Some(writer.tap()),
            ..CollectorConfig::default()
        });
        let side = |side, ms| SideSample {
            side,
            latency: Duration::from_millis(ms),
            service: Duration::from_millis(ms),
            finished: Duration::from_millis(ms),
            outcome: Ok(()),
            detail: None,
        };
        // 2500 reads (more than one tap batch), 100 ms apart, then one write.
        for i in 0..2500u64 {
            agg.record(Event::Done {
                seq: i,
                op: OpKind::Search,
                intended: Duration::from_millis(i * 100),
                lag: Duration::ZERO,
                sides: vec![side(Side::A, 2), side(Side::B, 3)],
                quality: Some(QualitySample {
                    paired: Some(true),
                    filter_violations: [0, 0],
                    overlap: Some(0.9),
                    recall: [Some(1.0), Some(0.8)],
                    filter_class: "none",
                    tenant: None,
                }),
            });
        }
        agg.record(Event::Done {
            seq: 2500,
            op: OpKind::Upsert,
            intended: Duration::from_millis(250_000),
            lag: Duration::ZERO,
            sides: vec![side(Side::Writer, 4)],
            quality: None,
        });
        let m = agg.finish();
        assert_eq!((m.tapped, m.tap_dropped), (2501, 0));
        let (written, rows) = writer.finish().unwrap();
        assert_eq!((written, rows), (path.clone(), 5001));
        let df = read(&path);
        assert_eq!(df.height(), 5001);
        let warm = df.column("warmup").unwrap().bool().unwrap();
        // Intended at 0, 100 and 200 ms: inside the 300 ms warmup, both sides each.
        assert_eq!(warm.sum(), Some(6));
        let recall = df.column("recall").unwrap().f64().unwrap();
        assert_eq!((recall.get(0), recall.get(1)), (Some(1.0), Some(0.8)));
        let last = df.height() - 1;
        let side_col = df.column("side").unwrap().str().unwrap();
        assert_eq!(side_col.get(last), Some("writer"));
        assert_eq!(
            df.column("op").unwrap().str().unwrap().get(last),
            Some("upsert")
        );
        assert_eq!(
            df.column("op_index").unwrap().u64().unwrap().get(last),
            Some(2500)
        );
    }

    #[test]
    fn an_empty_sink_writes_a_file_with_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(write_samples(&path, std::iter::empty()).unwrap(), 0);
        let df = read(&path);
        assert_eq!(df.height(), 0);
        assert_eq!(df.width(), COLUMNS.len());
    }

    #[test]
    fn rows_come_from_a_completed_operation_with_the_pair_quality() {
        let sides = vec![
            SideSample {
                side: Side::A,
                latency: Duration::from_millis(5),
                service: Duration::from_millis(4),
                finished: Duration::from_millis(105),
                outcome: Ok(()),
                detail: None,
            },
            SideSample {
                side: Side::B,
                latency: Duration::from_millis(7),
                service: Duration::from_millis(6),
                finished: Duration::from_millis(107),
                outcome: Err(ErrorClass::Backend),
                detail: Some("500".into()),
            },
        ];
        let q = QualitySample {
            paired: Some(true),
            filter_violations: [0, 0],
            overlap: None,
            recall: [Some(1.0), None],
            filter_class: "none",
            tenant: None,
        };
        let rows: Vec<SampleRow> = SampleRow::from_done(
            7,
            OpKind::Search,
            Duration::from_millis(100),
            false,
            &sides,
            Some(&q),
            |s| match s {
                Side::B => BackendKind::Opensearch,
                _ => BackendKind::Pgvector,
            },
        )
        .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].recall, Some(1.0));
        assert_eq!(rows[1].outcome, Err(ErrorClass::Backend));
        assert_eq!(rows[1].backend, BackendKind::Opensearch);
        assert_eq!(rows[1].intended_start_ms, 100.0);
        assert_eq!(rows[1].latency_ms, 7.0);
    }
}

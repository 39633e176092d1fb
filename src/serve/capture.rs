//! `--record FILE.jsonl`: captures every accepted request in the recorded-workload
//! format the load generator replays (one JSON object a line; `.gz` names are gzipped):
//!
//! ```text
//! {"ts_ms":0,"op":"search","tenant_id":"libs","k":10,"vector":[...],"filter":{"entity_type":"package"}}
//! {"ts_ms":12,"op":"upsert","tenant_id":"libs","entity_type":"package","entity_id":"zlib1g","vector":[...]}
//! {"ts_ms":40,"op":"delete","tenant_id":"libs","entity_type":"package","entity_id":"zlib1g"}
//! ```
//!
//! `ts_ms` is the offset from the first captured operation, in milliseconds (so a
//! replay starts at once, however long the service idled before traffic came), and
//! never decreases from one line to the next. A batch upsert becomes one line per record.
//! Requests rejected by validation are not captured (they could not be replayed).
//!
//! The request path only clones the operation into a bounded channel (`try_send`): when
//! the writer falls behind, the operation is dropped and counted, never waited for. A
//! dedicated thread serialises and writes; [`Capture::close`] flushes what is queued.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::record::{Record, RecordId, SearchRequest};

/// Default number of operations the capture buffer holds before dropping.
pub const DEFAULT_BUFFER: usize = 16_384;

/// One captured line, in the recorded-workload format.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CapturedOp {
    pub ts_ms: u64,
    pub op: CapturedKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Filters besides the tenant (`entity_type`, `model_version`); searches only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapturedKind {
    Search,
    Upsert,
    Delete,
}

/// What the capture wrote when it closed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CaptureSummary {
    pub path: PathBuf,
    pub written: u64,
    pub dropped: u64,
}

/// A capture file that cannot be opened or written. Messages start with the path; the
/// binary puts the flag that named the file before it.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the file exists and is not empty; remove it or name a new file")]
    Exists { path: String },
    #[error("{path}: write failed: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

enum Msg {
    Op(Pending),
    Close,
}

/// An operation as the request path hands it over: serialisation happens on the writer.
struct Pending {
    at: Instant,
    kind: CapturedKind,
    id: Option<RecordId>,
    tenant_id: Option<String>,
    k: Option<usize>,
    vector: Option<Vec<f32>>,
    filter: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The capture handle shared by request handlers.
pub struct Capture {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<Result<(), CaptureError>>>>,
    path: PathBuf,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

impl Capture {
    /// Creates the file (refusing to overwrite a non-empty one) and starts the writer.
    pub fn start(path: &Path, buffer: usize) -> Result<Self, CaptureError> {
        let shown = path.display().to_string();
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return Err(CaptureError::Exists { path: shown });
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|source| CaptureError::Open {
                path: shown.clone(),
                source,
            })?;
        let gz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let writer = std::thread::Builder::new()
            .name("shadowbench-capture".into())
            .spawn(move || write_loop(file, gz, rx, c, shown))
            .map_err(|source| CaptureError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            tx,
            counters,
            writer: std::sync::Mutex::new(Some(writer)),
            path: path.to_path_buf(),
        })
    }

    fn offer(&self, p: Pending) {
        if self.tx.try_send(Msg::Op(p)).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn search(&self, req: &SearchRequest) {
        let mut filter = serde_json::Map::new();
        if let Some(t) = &req.filter.entity_type {
            filter.insert("entity_type".into(), t.clone().into());
        }
        if let Some(m) = &req.filter.model_version {
            filter.insert("model_version".into(), m.clone().into());
        }
        self.offer(Pending {
            at: Instant::now(),
            kind: CapturedKind::Search,
            id: None,
            tenant_id: req.filter.tenant_id.clone(),
            k: Some(req.k),
            vector: Some(req.vector.clone()),
            filter: (!filter.is_empty()).then_some(filter),
        });
    }

    pub fn upserts(&self, records: &[Record]) {
        let at = Instant::now();
        for r in records {
            self.offer(Pending {
                at,
                kind: CapturedKind::Upsert,
                id: Some(r.id.clone()),
                tenant_id: None,
                k: None,
                vector: Some(r.vector.clone()),
                filter: None,
            });
        }
    }

    pub fn delete(&self, id: &RecordId) {
        self.offer(Pending {
            at: Instant::now(),
            kind: CapturedKind::Delete,
            id: Some(id.clone()),
            tenant_id: None,
            k: None,
            vector: None,
            filter: None,
        });
    }

    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything queued, flushes and closes the file. Later operations are
    /// dropped and counted. Idempotent.
    pub async fn close(&self) -> Result<CaptureSummary, CaptureError> {
        // Waits for room: closing must not itself be dropped.
        let _ = self.tx.send(Msg::Close).await;
        let handle = self.writer.lock().expect("capture lock").take();
        if let Some(h) = handle {
            let res = tokio::task::spawn_blocking(move || h.join())
                .await
                .ok()
                .and_then(|r| r.ok());
            if let Some(Err(e)) = res {
                return Err(e);
            }
        }
        Ok(CaptureSummary {
            path: self.path.clone(),
            written: self.written(),
            dropped: self.dropped(),
        })
    }
}

fn write_loop(
    file: File,
    gz: bool,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
    path: String,
) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Write {
        path: path.clone(),
        source,
    };
    let mut out = if gz {
        Sink::Gz(Box::new(flate2::write::GzEncoder::new(
            BufWriter::new(file),
            flate2::Compression::fast(),
        )))
    } else {
        Sink::Plain(BufWriter::new(file))
    };
    let mut last_ts = 0u64;
    let mut origin: Option<Instant> = None;
    while let Some(msg) = rx.blocking_recv() {
        let p = match msg {
            Msg::Op(p) => p,
            Msg::Close => break,
        };
        // Operations are timed on the request path and may arrive a little out of order;
        // clamping keeps the file's offsets monotonic for replay.
        let origin = *origin.get_or_insert(p.at);
        let ts = (p.at.saturating_duration_since(origin).as_millis() as u64).max(last_ts);
        last_ts = ts;
        let (tenant_id, entity_type, entity_id) = match p.id {
            Some(id) => (Some(id.tenant_id), Some(id.entity_type), Some(id.entity_id)),
            None => (p.tenant_id, None, None),
        };
        let line = CapturedOp {
            ts_ms: ts,
            op: p.kind,
            tenant_id,
            entity_type,
            entity_id,
            k: p.k,
            vector: p.vector,
            filter: p.filter,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| err(e.into()))?;
        out.write_all(b"\n").map_err(err)?;
        counters.written.fetch_add(1, Ordering::Relaxed);
    }
    rx.close();
    // Count what arrived after Close.
    while let Ok(Msg::Op(_)) = rx.try_recv() {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
    out.finish().map_err(err)
}

enum Sink {
    Plain(BufWriter<File>),
    Gz(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

impl Sink {
    /// Flushes, and for gzip writes the trailer (dropping would swallow its error).
    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gz(g) => g.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Filter;

    #[tokio::test]
    async fn captured_lines_parse_back_in_order_with_monotonic_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.jsonl");
        let cap = Capture::start(&path, 64).unwrap();
        cap.search(&SearchRequest {
            vector: vec![0.5, -1.0],
            k: 3,
            filter: Filter {
                tenant_id: Some("acme".into()),
                entity_type: Some("doc".into()),
                model_version: None,
            },
        });
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        let r = Record::new(RecordId::new("acme", "doc", "1"), vec![0.1, 0.2], "m");
        cap.upserts(&[r.clone(), r.clone()]);
        cap.delete(&r.id);
        let s = cap.close().await.unwrap();
        assert_eq!((s.written, s.dropped), (4, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let ops: Vec<CapturedOp> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0].op, CapturedKind::Search);
        assert_eq!(ops[0].ts_ms, 0, "offsets count from the first operation");
        assert_eq!(ops[0].tenant_id.as_deref(), Some("acme"));
        assert_eq!(ops[0].vector.as_deref(), Some(&[0.5, -1.0][..]));
        assert_eq!(ops[0].filter.as_ref().unwrap()["entity_type"], "doc");
        assert!(ops[1].ts_ms >= 15, "{ops:?}");
        assert_eq!(ops[3].op, CapturedKind::Delete);
        assert_eq!(ops[3].entity_id.as_deref(), Some("1"));
        assert!(ops[3].vector.is_none());
        assert!(ops.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        assert!(!text.contains("null"), "absent fields are left out: {text}");
        // A second close is harmless, and a non-empty file is never overwritten.
        cap.close().await.unwrap();
        assert!(matches!(
            Capture::start(&path, 8),
            Err(CaptureError::Exists { .. })
        ));
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.jsonl.gz");
        let cap = Capture::start(&path, 1).unwrap();
        let r = Record::new(RecordId::new("a", "b", "c"), vec![0.0; 256], "m");
        let batch: Vec<Record> = (0..2000).map(|_| r.clone()).collect();
        cap.upserts(&batch);
        let s = cap.close().await.unwrap();
        assert_eq!(s.written + s.dropped, 2000);
        assert!(s.dropped > 0, "{s:?}");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&path).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text.lines().count() as u64, s.written);
    }
}

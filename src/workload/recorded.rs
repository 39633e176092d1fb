//! Recorded workload: replays a query log in JSON Lines, one operation a line, plain or
//! gzip-compressed (detected from the file's magic bytes, not its name). The format is
//! documented in `scenarios/README.md`:
//!
//! ```text
//! {"ts_ms": 0,  "op": "search", "k": 10, "vector": [...], "filter": {"tenant_id": "libs"}}
//! {"ts_ms": 12, "op": "upsert", "tenant_id": "libs", "entity_type": "package",
//!  "entity_id": "libfoo", "vector": [...], "model_version": "m1", "metadata": {...}}
//! {"ts_ms": 15, "op": "delete", "tenant_id": "libs", "entity_type": "package", "entity_id": "libfoo"}
//! ```
//!
//! Lines are streamed, never loaded at once. A bad line either stops the replay with its
//! line number, or is skipped and counted.

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Operation, WorkItem, Workload, WorkloadError};
use crate::record::{Filter, MAX_K, Record, RecordId, SearchRequest, now_millis, validate_vector};

/// What to do with a line that cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLinePolicy {
    /// End the replay with an error naming the line.
    Stop,
    /// Skip it and count it in the report.
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSpec {
    pub path: PathBuf,
    /// k for searches whose line has none.
    pub default_k: usize,
    /// Expected vector dimension, when known (lines with another are bad).
    pub dimension: Option<usize>,
    /// `model_version` for upserts whose line has none.
    pub default_model_version: String,
    /// Require `ts_ms` on every line, non-decreasing (replay at original timing).
    pub require_timestamps: bool,
    pub on_bad_line: BadLinePolicy,
}

/// One line of the log. Unknown fields are ignored so logs can carry their own extras.
#[derive(Debug, Deserialize)]
struct Line {
    ts_ms: Option<f64>,
    op: String,
    tenant_id: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<String>,
    k: Option<usize>,
    vector: Option<Vec<f32>>,
    filter: Option<Filter>,
    model_version: Option<String>,
    metadata: Option<Map<String, Value>>,
}

pub struct RecordedLog {
    spec: RecordedSpec,
    display: String,
    reader: Box<dyn BufRead + Send>,
    gzip: bool,
    line_no: u64,
    first_ts: Option<f64>,
    last_ts: f64,
    skipped: u64,
    done: bool,
    buf: String,
    writes_seen: bool,
}

impl RecordedLog {
    pub fn open(spec: RecordedSpec) -> Result<Self, WorkloadError> {
        let display = spec.path.display().to_string();
        let io = |e: std::io::Error| WorkloadError::Io {
            path: display.clone(),
            message: e.to_string(),
        };
        let mut file = BufReader::new(File::open(&spec.path).map_err(io)?);
        let gzip = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::new(MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(Self::from_reader(spec, display, reader, gzip))
    }

    fn from_reader(
        spec: RecordedSpec,
        display: String,
        reader: Box<dyn BufRead + Send>,
        gzip: bool,
    ) -> Self {
        Self {
            spec,
            display,
            reader,
            gzip,
            line_no: 0,
            first_ts: None,
            last_ts: f64::NEG_INFINITY,
            skipped: 0,
            done: false,
            buf: String::new(),
            writes_seen: false,
        }
    }

    /// A log held in memory (tests, embedding callers).
    pub fn from_bytes(spec: RecordedSpec, bytes: Vec<u8>) -> Self {
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        let display = spec.path.display().to_string();
        let cursor = std::io::Cursor::new(bytes);
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::new(MultiGzDecoder::new(cursor)))
        } else {
            Box::new(cursor)
        };
        Self::from_reader(spec, display, reader, gzip)
    }

    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    fn bad(&self, message: impl Into<String>) -> WorkloadError {
        WorkloadError::BadLine {
            path: self.display.clone(),
            line: self.line_no,
            message: message.into(),
        }
    }

    fn parse(&mut self, text: &str) -> Result<WorkItem, WorkloadError> {
        let mut line: Line = serde_json::from_str(text)
            .map_err(|e| self.bad(format!("not a valid operation: {e}")))?;
        let at = self.offset(line.ts_ms)?;
        let kind = std::mem::take(&mut line.op);
        let ts_ms = line.ts_ms;
        let op = match kind.as_str() {
            "search" => self.search(line)?,
            "upsert" | "delete" => self.write(&kind, line)?,
            other => {
                return Err(self.bad(format!("op {other:?} is not one of search, upsert, delete")));
            }
        };
        if let Some(ts) = ts_ms {
            self.last_ts = ts;
        }
        if !matches!(op, Operation::Search { .. }) {
            self.writes_seen = true;
        }
        Ok(WorkItem { at, op })
    }

    /// The replay offset of a line's `ts_ms` from the first line's (recording that first
    /// one); negative, backwards or missing-when-required timestamps are errors.
    fn offset(&mut self, ts_ms: Option<f64>) -> Result<Option<Duration>, WorkloadError> {
        match ts_ms {
            Some(ts) if !ts.is_finite() || ts < 0.0 => {
                Err(self.bad(format!("ts_ms must be a number ≥ 0, got {ts}")))
            }
            Some(ts) if ts < self.last_ts => Err(self.bad(format!(
                "ts_ms goes backwards ({ts} after {}); sort the log by ts_ms",
                self.last_ts
            ))),
            Some(ts) => {
                let first = *self.first_ts.get_or_insert(ts);
                // A finite ts_ms can still be too far from the first line for a
                // Duration (about 584 billion years), and `from_secs_f64` panics there.
                let offset = Duration::try_from_secs_f64((ts - first) / 1000.0).map_err(|_| {
                    // `{:e}`: plain `{}` would print all 301 digits of 1e300.
                    self.bad(format!(
                        "ts_ms is {:e} ms after the first line's, more than a duration \
                         can hold (about 584 billion years)",
                        ts - first
                    ))
                })?;
                Ok(Some(offset))
            }
            None if self.spec.require_timestamps => {
                Err(self.bad("ts_ms is required to replay at the original timing"))
            }
            None => Ok(None),
        }
    }

    /// Checks a line's vector: finite, and of the spec's dimension when it has one.
    fn check_vector(&self, v: &[f32]) -> Result<(), WorkloadError> {
        match self.spec.dimension {
            Some(d) => validate_vector(v, d).map_err(|e| e.to_string()),
            None => validate_vector(v, v.len()).map_err(|e| e.to_string()),
        }
        .map_err(|m| self.bad(m))
    }

    /// A `search` line: its vector, k (else the default) and filter, into which the
    /// top-level `tenant_id` / `entity_type` are merged (a contradiction is an error).
    fn search(&self, line: Line) -> Result<Operation, WorkloadError> {
        let vector = line
            .vector
            .ok_or_else(|| self.bad("search needs a vector"))?;
        self.check_vector(&vector)?;
        let k = line.k.unwrap_or(self.spec.default_k);
        if k == 0 || k > MAX_K {
            return Err(self.bad(format!("k must be between 1 and {MAX_K}, got {k}")));
        }
        let mut filter = line.filter.unwrap_or_default();
        for (name, short, slot) in [
            ("tenant_id", line.tenant_id, &mut filter.tenant_id),
            ("entity_type", line.entity_type, &mut filter.entity_type),
        ] {
            match (short, slot.as_ref()) {
                (Some(s), Some(f)) if s != *f => {
                    return Err(self.bad(format!("{name} {s:?} contradicts filter.{name} {f:?}")));
                }
                (Some(s), _) => *slot = Some(s),
                (None, _) => {}
            }
        }
        Ok(Operation::Search {
            request: SearchRequest { vector, k, filter },
            truth: None,
        })
    }

    /// An `upsert` or `delete` line (`kind`): its full identity, and for an upsert the
    /// record (vector, metadata, model version else the default).
    fn write(&self, kind: &str, line: Line) -> Result<Operation, WorkloadError> {
        let id = match (line.tenant_id, line.entity_type, line.entity_id) {
            (Some(t), Some(e), Some(i)) => RecordId::new(t, e, i),
            _ => {
                return Err(self.bad(format!("{kind} needs tenant_id, entity_type and entity_id")));
            }
        };
        if kind == "delete" {
            return Ok(Operation::Delete(id));
        }
        let vector = line
            .vector
            .ok_or_else(|| self.bad("upsert needs a vector"))?;
        self.check_vector(&vector)?;
        let now = now_millis();
        Ok(Operation::Upsert(Record {
            id,
            vector,
            metadata: line.metadata.unwrap_or_default(),
            model_version: line
                .model_version
                .unwrap_or_else(|| self.spec.default_model_version.clone()),
            created_at: now,
            updated_at: now,
            version: None,
        }))
    }
}

impl Workload for RecordedLog {
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>> {
        while !self.done {
            self.buf.clear();
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line_no += 1;
                    let text = std::mem::take(&mut self.buf);
                    let trimmed = text.trim();
                    if trimmed.is_empty() {
                        self.buf = text;
                        continue;
                    }
                    let parsed = self.parse(trimmed);
                    self.buf = text;
                    match parsed {
                        Ok(item) => return Some(Ok(item)),
                        Err(e) if self.spec.on_bad_line == BadLinePolicy::Skip => {
                            tracing::debug!("skipping {e}");
                            self.skipped += 1;
                        }
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
                Err(e) => {
                    self.done = true;
                    self.line_no += 1;
                    return Some(Err(self.bad(format!("cannot read: {e}"))));
                }
            }
        }
        None
    }

    fn describe(&self) -> String {
        format!(
            "recorded log {}{} ({} lines read, {} skipped)",
            self.display,
            if self.gzip { " (gzip)" } else { "" },
            self.line_no,
            self.skipped
        )
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    fn writes(&self) -> bool {
        // Known only as the log is read; a log that writes says so from its first write.
        self.writes_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn spec(policy: BadLinePolicy) -> RecordedSpec {
        RecordedSpec {
            path: PathBuf::from("log.jsonl"),
            default_k: 5,
            dimension: Some(2),
            default_model_version: "m0".into(),
            require_timestamps: false,
            on_bad_line: policy,
        }
    }

    const LOG: &str = r#"{"ts_ms": 100, "op": "search", "vector": [1, 0], "tenant_id": "acme"}

{"ts_ms": 150, "op": "upsert", "tenant_id": "acme", "entity_type": "doc", "entity_id": "d1", "vector": [0, 1], "extra": "ignored"}
{"ts_ms": 150, "op": "search", "vector": [1, 0, 0]}
{"ts_ms": 400, "op": "delete", "tenant_id": "acme", "entity_type": "doc", "entity_id": "d1"}
{"ts_ms": 300, "op": "search", "vector": [1, 0]}
"#;

    fn drain(log: &mut RecordedLog) -> Vec<Result<WorkItem, WorkloadError>> {
        std::iter::from_fn(|| log.next_item()).collect()
    }

    #[test]
    fn operations_replay_with_offsets_from_the_first_line() {
        let mut log = RecordedLog::from_bytes(spec(BadLinePolicy::Skip), LOG.as_bytes().to_vec());
        let items: Vec<WorkItem> = drain(&mut log).into_iter().map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].at, Some(Duration::ZERO));
        match &items[0].op {
            Operation::Search { request, .. } => {
                assert_eq!(request.k, 5);
                assert_eq!(request.filter, Filter::tenant("acme"));
            }
            other => panic!("{other:?}"),
        }
        match &items[1].op {
            Operation::Upsert(r) => {
                assert_eq!(r.model_version, "m0");
                assert_eq!(r.id.entity_id, "d1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(items[2].at, Some(Duration::from_millis(300)));
        assert!(matches!(items[2].op, Operation::Delete(_)));
        // The 3-dimensional query and the backwards timestamp were skipped.
        assert_eq!(log.skipped(), 2);
        assert!(log.writes());
    }

    #[test]
    fn stop_policy_reports_the_bad_line_number() {
        let mut log = RecordedLog::from_bytes(spec(BadLinePolicy::Stop), LOG.as_bytes().to_vec());
        let items = drain(&mut log);
        assert_eq!(items.len(), 3);
        let err = items[2].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("log.jsonl:4: "), "{err}");
        assert!(err.contains("dimension 3, expected 2"), "{err}");
    }

    #[test]
    fn gzip_logs_are_detected_by_content() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(LOG.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.bin");
        std::fs::write(&path, gz).unwrap();
        let mut log = RecordedLog::open(RecordedSpec {
            path,
            ..spec(BadLinePolicy::Skip)
        })
        .unwrap();
        assert_eq!(drain(&mut log).len(), 3);
        assert!(log.describe().contains("(gzip)"));
    }

    #[test]
    fn malformed_lines_are_explained() {
        let cases = [
            (r#"{"op": "search"}"#, "search needs a vector"),
            (r#"{"op": "fly", "vector": [1, 0]}"#, "not one of search"),
            (
                r#"{"op": "delete", "tenant_id": "a"}"#,
                "needs tenant_id, entity_type and entity_id",
            ),
            (
                r#"{"op": "search", "vector": [1, 0], "k": 0}"#,
                "k must be between",
            ),
            (
                r#"{"op": "search", "vector": [1, 0], "tenant_id": "a", "filter": {"tenant_id": "b"}}"#,
                "contradicts filter.tenant_id",
            ),
            (
                r#"{"op": "search", "vector": [1, 0], "ts_ms": -1}"#,
                "ts_ms must be",
            ),
            ("not json", "not a valid operation"),
        ];
        for (text, want) in cases {
            let mut log =
                RecordedLog::from_bytes(spec(BadLinePolicy::Stop), text.as_bytes().to_vec());
            let err = log.next_item().unwrap().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.starts_with("log.jsonl:1: "), "{err}");
        }
        let mut log = RecordedLog::from_bytes(
            RecordedSpec {
                require_timestamps: true,
                ..spec(BadLinePolicy::Stop)
            },
            br#"{"op": "search", "vector": [1, 0]}"#.to_vec(),
        );
        let err = log.next_item().unwrap().unwrap_err().to_string();
        assert!(err.contains("ts_ms is required"), "{err}");
    }

    #[test]
    fn a_timestamp_too_far_from_the_first_is_a_bad_line_not_a_panic() {
        let text = "{\"ts_ms\": 0, \"op\": \"search\", \"vector\": [1, 0]}\n\
                    {\"ts_ms\": 1e300, \"op\": \"search\", \"vector\": [1, 0]}\n";
        let mut log = RecordedLog::from_bytes(spec(BadLinePolicy::Stop), text.as_bytes().to_vec());
        assert_eq!(log.next_item().unwrap().unwrap().at, Some(Duration::ZERO));
        let err = log.next_item().unwrap().unwrap_err().to_string();
        assert!(err.starts_with("log.jsonl:2: "), "{err}");
        assert!(
            err.contains("ts_ms is 1e300 ms after the first line's"),
            "{err}"
        );
        assert!(
            log.next_item().is_none(),
            "the replay stops at the bad line"
        );

        let mut log = RecordedLog::from_bytes(spec(BadLinePolicy::Skip), text.as_bytes().to_vec());
        assert_eq!(drain(&mut log).len(), 1);
        assert_eq!(log.skipped(), 1);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = RecordedLog::open(RecordedSpec {
            path: PathBuf::from("/nonexistent/queries.jsonl"),
            ..spec(BadLinePolicy::Stop)
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("/nonexistent/queries.jsonl: "), "{err}");
    }
}

//! Workloads: where the operations of a run come from. A [`Workload`] yields
//! [`WorkItem`]s (a search, upsert or delete, with the ground truth when it is known up
//! front); the load generator decides when each one starts.
//!
//! Sources: the queries of a dataset ([`dataset`]), generated queries and writes
//! ([`synthetic`]), and a recorded JSON Lines log ([`recorded`]).

pub mod dataset;
pub mod recorded;
pub mod synthetic;

use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::error::{ConfigError, Error};
use crate::measure::{OpKind, TrueNeighbours};
use crate::record::{Record, RecordId, SearchRequest};

pub use dataset::{DatasetQueries, DatasetQueriesSpec, QueryOrder};
pub use recorded::{BadLinePolicy, RecordedLog, RecordedSpec};
pub use synthetic::{SyntheticSpec, SyntheticWorkload};

/// One operation of a workload.
#[derive(Debug, Clone)]
pub enum Operation {
    /// A k-NN read, sent to both sides. `truth` is the exact answer when the workload
    /// knows it up front (dataset queries); otherwise the worker computes it.
    Search {
        request: SearchRequest,
        truth: Option<Arc<TrueNeighbours>>,
    },
    /// A write, sent to the writer.
    Upsert(Record),
    /// A delete, sent to the writer.
    Delete(RecordId),
}

impl Operation {
    pub fn kind(&self) -> OpKind {
        match self {
            Operation::Search { .. } => OpKind::Search,
            Operation::Upsert(_) => OpKind::Upsert,
            Operation::Delete(_) => OpKind::Delete,
        }
    }
}

/// An operation with its original time offset, when the source has one (recorded logs).
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// Offset from the start of the log, before any speed factor.
    pub at: Option<Duration>,
    pub op: Operation,
}

impl WorkItem {
    pub fn untimed(op: Operation) -> Self {
        Self { at: None, op }
    }
}

/// A source of operations. Dataset and synthetic sources never run out; a recorded
/// log does, which ends the run.
pub trait Workload: Send {
    /// The next operation; `None` when the source is exhausted. An `Err` is a bad input
    /// the source was told to stop on.
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>>;

    /// One line for the report, e.g. `dataset debian-minilm-5k: 200 queries, cycled`.
    fn describe(&self) -> String;

    /// Input lines skipped as bad (recorded logs in skip mode).
    fn skipped(&self) -> u64 {
        0
    }

    /// Whether the source issues upserts or deletes.
    fn writes(&self) -> bool {
        false
    }
}

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl WorkloadError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WorkloadError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<WorkloadError> for ConfigError {
    fn from(e: WorkloadError) -> Self {
        match e {
            WorkloadError::BadLine {
                path,
                line,
                message,
            } => ConfigError::Line {
                path,
                line: line as usize,
                message,
            },
            WorkloadError::Io { path, message } => ConfigError::File { path, message },
            WorkloadError::Invalid { field, message } => ConfigError::Invalid { field, message },
        }
    }
}

impl From<WorkloadError> for Error {
    fn from(e: WorkloadError) -> Self {
        Error::Config(e.into())
    }
}

/// A fixed list of operations, replayed once (tests, benchmarks, embedding callers).
pub struct FixedOps {
    items: std::vec::IntoIter<WorkItem>,
    label: String,
    writes: bool,
}

impl FixedOps {
    pub fn new(label: impl Into<String>, items: Vec<WorkItem>) -> Self {
        let writes = items
            .iter()
            .any(|i| !matches!(i.op, Operation::Search { .. }));
        Self {
            items: items.into_iter(),
            label: label.into(),
            writes,
        }
    }
}

impl Workload for FixedOps {
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>> {
        self.items.next().map(Ok)
    }

    fn describe(&self) -> String {
        self.label.clone()
    }

    fn writes(&self) -> bool {
        self.writes
    }
}

/// Repeats a list of operations forever, in order.
pub struct Cycle {
    items: Vec<WorkItem>,
    next: usize,
    label: String,
}

impl Cycle {
    /// Panics if `items` is empty.
    pub fn new(label: impl Into<String>, items: Vec<WorkItem>) -> Self {
        assert!(!items.is_empty(), "a cycle needs at least one operation");
        Self {
            items,
            next: 0,
            label: label.into(),
        }
    }
}

impl Workload for Cycle {
    fn next_item(&mut self) -> Option<Result<WorkItem, WorkloadError>> {
        let item = self.items[self.next % self.items.len()].clone();
        self.next += 1;
        Some(Ok(item))
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Filter;

    fn search() -> WorkItem {
        WorkItem::untimed(Operation::Search {
            request: SearchRequest {
                vector: vec![1.0],
                k: 1,
                filter: Filter::default(),
            },
            truth: None,
        })
    }

    #[test]
    fn fixed_ops_run_out_and_cycles_do_not() {
        let mut f = FixedOps::new("f", vec![search(), search()]);
        assert!(f.next_item().is_some() && f.next_item().is_some());
        assert!(f.next_item().is_none());
        assert!(!f.writes());
        let mut c = Cycle::new("c", vec![search()]);
        for _ in 0..5 {
            assert!(c.next_item().is_some());
        }
    }

    #[test]
    fn bad_lines_become_config_errors_with_their_line_number() {
        let e: ConfigError = WorkloadError::BadLine {
            path: "log.jsonl".into(),
            line: 7,
            message: "k must be at least 1".into(),
        }
        .into();
        assert_eq!(e.to_string(), "log.jsonl:7: k must be at least 1");
        assert_eq!(
            Error::from(WorkloadError::invalid("x", "y")).exit_code(),
            crate::error::Exit::Usage
        );
    }
}

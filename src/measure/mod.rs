//! Measurement: HDR latency histograms per side and operation, error classes, a
//! per-second timeline, and the result-quality figures (overlap@k, recall@k), all
//! gathered by one collector task that workers feed with small numeric samples.

pub mod collector;
pub mod flat;
pub mod harness;
pub mod histogram;
pub mod quality;
pub mod scoring;
pub mod timeline;
pub mod truth;

use serde::{Deserialize, Serialize};

pub use collector::{Collector, CollectorConfig, Event, LiveStats, Measurements, OpMeasure};
pub use flat::{BatchQuery, BatchStats, BlockSizes, FlatIndex};
pub use histogram::{LatencyHistogram, LatencyStats};
pub use quality::{RatioStats, TrueNeighbours, overlap_at_k, recall_at_k};
pub use timeline::{Timeline, TimelineSecond, TimelineSide};
pub use truth::GroundTruth;

/// Where an operation went: one of the two compared read sides, or the writer
/// (the fan-out writer or the migration adapter) for upserts and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    A,
    B,
    Writer,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::A, Side::B, Side::Writer];
    /// The read sides, in order: a single-store run has only the first.
    pub const READ: [Side; 2] = [Side::A, Side::B];

    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
            Side::Writer => "writer",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
            Side::Writer => 2,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::record::OpKind;

//! The adapter's counters and the [`AdapterStats`] snapshot reports and `/metrics` show.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) reads_pgvector: AtomicU64,
    pub(super) reads_opensearch: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) fallbacks_breaker_open: AtomicU64,
    pub(super) mirrors_completed: AtomicU64,
    pub(super) mirror_errors: AtomicU64,
    pub(super) mirror_dropped: AtomicU64,
    pub(super) mirror_skipped_breaker_open: AtomicU64,
    pub(super) writes_acknowledged: AtomicU64,
    pub(super) secondary_write_failures: AtomicU64,
    pub(super) outbox_drained: AtomicU64,
    pub(super) outbox_deferred: AtomicU64,
    pub(super) outbox_parked: AtomicU64,
    pub(super) left_to_drainer: AtomicU64,
}

/// Counters since the adapter was created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdapterStats {
    pub reads_pgvector: u64,
    pub reads_opensearch: u64,
    /// Reads meant for OpenSearch that pgvector answered (error, timeout or open breaker).
    pub fallbacks: u64,
    pub fallbacks_breaker_open: u64,
    pub mirrors_completed: u64,
    pub mirror_errors: u64,
    /// Mirrored reads not sent because the mirror queue was full.
    pub mirror_dropped: u64,
    pub mirror_skipped_breaker_open: u64,
    /// Records whose write was acknowledged to the caller.
    pub writes_acknowledged: u64,
    /// Records whose OpenSearch write failed and were left in the outbox.
    pub secondary_write_failures: u64,
    pub outbox_drained: u64,
    /// Outbox deliveries that failed transiently and were postponed with backoff.
    #[serde(default)]
    pub outbox_deferred: u64,
    /// Outbox entries moved to the dead-letter table (rejected, or out of attempts).
    #[serde(default)]
    pub outbox_parked: u64,
    /// Records whose OpenSearch write was left to the drainer because it was
    /// delivering a backlog (their outbox entries go in its large `_bulk` calls).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_to_drainer: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AdapterStats {
    /// What happened between `before` (an earlier snapshot) and `self`.
    pub fn since(&self, before: &AdapterStats) -> AdapterStats {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        AdapterStats {
            reads_pgvector: d(self.reads_pgvector, before.reads_pgvector),
            reads_opensearch: d(self.reads_opensearch, before.reads_opensearch),
            fallbacks: d(self.fallbacks, before.fallbacks),
            fallbacks_breaker_open: d(self.fallbacks_breaker_open, before.fallbacks_breaker_open),
            mirrors_completed: d(self.mirrors_completed, before.mirrors_completed),
            mirror_errors: d(self.mirror_errors, before.mirror_errors),
            mirror_dropped: d(self.mirror_dropped, before.mirror_dropped),
            mirror_skipped_breaker_open: d(
                self.mirror_skipped_breaker_open,
                before.mirror_skipped_breaker_open,
            ),
            writes_acknowledged: d(self.writes_acknowledged, before.writes_acknowledged),
            secondary_write_failures: d(
                self.secondary_write_failures,
                before.secondary_write_failures,
            ),
            outbox_drained: d(self.outbox_drained, before.outbox_drained),
            outbox_deferred: d(self.outbox_deferred, before.outbox_deferred),
            outbox_parked: d(self.outbox_parked, before.outbox_parked),
            left_to_drainer: d(self.left_to_drainer, before.left_to_drainer),
        }
    }
}

impl Counters {
    /// The counters now.
    pub(super) fn snapshot(&self) -> AdapterStats {
        let c = self;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AdapterStats {
            reads_pgvector: g(&c.reads_pgvector),
            reads_opensearch: g(&c.reads_opensearch),
            fallbacks: g(&c.fallbacks),
            fallbacks_breaker_open: g(&c.fallbacks_breaker_open),
            mirrors_completed: g(&c.mirrors_completed),
            mirror_errors: g(&c.mirror_errors),
            mirror_dropped: g(&c.mirror_dropped),
            mirror_skipped_breaker_open: g(&c.mirror_skipped_breaker_open),
            writes_acknowledged: g(&c.writes_acknowledged),
            secondary_write_failures: g(&c.secondary_write_failures),
            outbox_drained: g(&c.outbox_drained),
            outbox_deferred: g(&c.outbox_deferred),
            outbox_parked: g(&c.outbox_parked),
            left_to_drainer: g(&c.left_to_drainer),
        }
    }
}

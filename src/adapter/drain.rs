//! The outbox drainer: replays due entries to OpenSearch from pgvector's current rows,
//! parks what OpenSearch rejects, and health-checks OpenSearch behind an open breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::outbox::OutboxEntry;
use super::{BreakerState, GuardedError, VectorStoreAdapter};
use crate::error::StoreError;
use crate::record::RecordId;
use crate::store::{ItemOutcome, VectorStore, WriteOp};

/// Concurrent `_bulk` calls per drain round.
const DRAIN_CALLS: usize = 2;

/// During a bulk load ([`VectorStoreAdapter::begin_load`]) the outbox is the load's
/// only path to OpenSearch: rounds of this many entries, in [`LOAD_DRAIN_CALLS`]
/// concurrent `_bulk` calls of [`crate::store::opensearch::BULK_MAX_DOCS`] at most.
const LOAD_DRAIN_BATCH: usize = 2_000;
const LOAD_DRAIN_CALLS: usize = 4;

/// The share of a full drain batch due at once that counts as a backlog, during
/// which live writes leave their OpenSearch write to the drainer. Live writes in
/// flight leave a few entries due at any time; an outage leaves thousands.
const CATCH_UP_SHARE: f64 = 0.25;

/// How often the drainer may health-check OpenSearch while the breaker is open.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// One identity's due entries in a drain round.
#[derive(Default)]
struct Due {
    seqs: Vec<i64>,
    /// The newest delete version among them (a delete's replay carries it).
    delete_version: Option<i64>,
    /// The most failed deliveries among them.
    attempts: i32,
}

/// Result of one drain pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    /// Entries whose write OpenSearch now holds (or holds a newer version of).
    pub delivered: u64,
    /// Entries that failed transiently and wait with backoff.
    pub deferred: u64,
    /// Entries moved to the dead-letter table by this pass.
    pub parked: u64,
    /// Entries left in the outbox.
    pub remaining: u64,
    pub last_error: Option<String>,
}

impl VectorStoreAdapter {
    /// Replays due outbox entries to OpenSearch, per identity, from pgvector's current
    /// rows, until no entry is due, the breaker is open, or OpenSearch cannot be reached.
    ///
    /// Items OpenSearch holds (or holds newer) are removed; items it rejects are parked;
    /// items that fail transiently wait with backoff and are parked after
    /// `max_attempts`. A failure of the call as a whole (OpenSearch down) counts against
    /// no entry: an outage must not push the outbox into the dead-letter table.
    pub async fn drain_outbox(&self) -> Result<DrainReport, StoreError> {
        let Some(os) = self.os.clone() else {
            return Ok(DrainReport {
                remaining: self.outbox.depth().await?,
                ..DrainReport::default()
            });
        };
        let mut report = DrainReport::default();
        let passed = self.drain_pass(os.as_ref(), &mut report).await;
        // Live writes send their own OpenSearch writes again, whatever ended the pass.
        self.catching_up.store(false, Ordering::Relaxed);
        passed?;
        self.count_drained(&report);
        report.remaining = self.outbox.depth().await?;
        Ok(report)
    }

    /// Rounds until no entry is due or OpenSearch cannot be called. While a round finds
    /// a backlog (at least [`CATCH_UP_SHARE`] of a full batch due), live writes leave
    /// their OpenSearch write to this pass: one `_bulk` of many documents costs
    /// OpenSearch far less than as many single-document calls, so a backlog built
    /// during an outage drains in a few seconds even under live load.
    async fn drain_pass(
        &self,
        os: &dyn VectorStore,
        report: &mut DrainReport,
    ) -> Result<(), StoreError> {
        loop {
            let batch = if self.loading.load(Ordering::Relaxed) {
                LOAD_DRAIN_BATCH.max(self.cfg.drain_batch)
            } else {
                self.cfg.drain_batch
            };
            let entries = self.outbox.fetch_due(batch).await?;
            if entries.is_empty() {
                return Ok(());
            }
            if self.breaker.state() != BreakerState::Closed {
                self.health_check_behind_open_breaker(os).await;
            }
            // Only while OpenSearch takes writes: behind an open breaker live writes
            // fail fast to the outbox anyway, and count as deferred.
            let backlog = entries.len() as f64 >= self.cfg.drain_batch as f64 * CATCH_UP_SHARE
                && self.breaker.state() == BreakerState::Closed;
            self.catching_up.store(backlog, Ordering::Relaxed);
            if !self.drain_round(os, &entries, report).await? {
                return Ok(());
            }
        }
    }

    /// One round: replays `entries` and settles each (removed, parked or deferred),
    /// adding to `report`. `false` when OpenSearch could not be called at all, which
    /// counts against no entry.
    async fn drain_round(
        &self,
        os: &dyn VectorStore,
        entries: &[OutboxEntry],
        report: &mut DrainReport,
    ) -> Result<bool, StoreError> {
        // Per identity: its entries, the newest delete version, the most attempts.
        let mut by_id: HashMap<RecordId, Due> = HashMap::new();
        for e in entries {
            let due = by_id.entry(e.id.clone()).or_default();
            due.seqs.push(e.seq);
            due.delete_version = due.delete_version.max(e.delete_version);
            due.attempts = due.attempts.max(e.attempts);
        }
        // No lock is held while OpenSearch is called: versions order the writes, so a
        // replay racing a live write (or another process) cannot regress a document,
        // and a slow OpenSearch cannot make live writes wait for the drainer.
        let ids: Vec<RecordId> = by_id.keys().cloned().collect();
        let rows = self.pg.get_many(&ids).await?;
        let ops: Vec<WriteOp> = ids
            .iter()
            .map(|id| match rows.get(id) {
                Some(r) => WriteOp::Upsert(r.clone()),
                None => WriteOp::Delete {
                    id: id.clone(),
                    version: by_id[id].delete_version,
                },
            })
            .collect();
        let timeout = self
            .cfg
            .opensearch_read_timeout
            .max(Duration::from_secs(30));
        let outcomes = match self.apply_in_parallel(os, &ops, timeout).await {
            Ok(o) => o,
            Err(why) => {
                report.last_error = Some(why.to_string());
                return Ok(false);
            }
        };
        self.settle(&ops, &outcomes, &by_id, report).await?;
        Ok(true)
    }

    /// Settles each replayed identity's entries by its outcome, with one statement each
    /// for the delivered, parked and deferred ones.
    async fn settle(
        &self,
        ops: &[WriteOp],
        outcomes: &[ItemOutcome],
        by_id: &HashMap<RecordId, Due>,
        report: &mut DrainReport,
    ) -> Result<(), StoreError> {
        let mut done = Vec::new();
        let mut park: Vec<(i64, String)> = Vec::new();
        let mut defer: Vec<(i64, String)> = Vec::new();
        for (op, outcome) in ops.iter().zip(outcomes) {
            let due = &by_id[op.id()];
            let (target, reason) = match outcome {
                o if o.is_done() => {
                    done.extend_from_slice(&due.seqs);
                    continue;
                }
                ItemOutcome::Rejected(why) => (&mut park, format!("rejected by OpenSearch: {why}")),
                ItemOutcome::Retry(why) if due.attempts as u32 + 1 >= self.cfg.max_attempts => (
                    &mut park,
                    format!(
                        "gave up after {} attempts; last error: {why}",
                        due.attempts + 1
                    ),
                ),
                ItemOutcome::Retry(why) => (&mut defer, why.clone()),
                _ => unreachable!("is_done covers the rest"),
            };
            target.extend(due.seqs.iter().map(|s| (*s, reason.clone())));
            report.last_error = Some(reason);
        }
        self.outbox.remove(&done).await?;
        report.delivered += done.len() as u64;
        report.parked += self.outbox.park(&park).await?;
        self.outbox
            .defer(&defer, self.cfg.retry_base, self.cfg.retry_cap)
            .await?;
        report.deferred += defer.len() as u64;
        Ok(())
    }

    /// Drains until the outbox is empty or a pass delivers nothing (OpenSearch down, or
    /// only entries waiting out their backoff); returns the entries delivered.
    pub(super) async fn deliver_backlog(&self) -> Result<u64, StoreError> {
        let mut delivered = 0;
        loop {
            let pass = self.drain_outbox().await?;
            delivered += pass.delivered;
            if pass.remaining == 0 || pass.delivered == 0 {
                return Ok(delivered);
            }
        }
    }

    /// Adds a drain pass to the adapter's counters, and warns of parked entries.
    fn count_drained(&self, report: &DrainReport) {
        let c = &self.counters;
        c.outbox_drained
            .fetch_add(report.delivered, Ordering::Relaxed);
        c.outbox_deferred
            .fetch_add(report.deferred, Ordering::Relaxed);
        c.outbox_parked.fetch_add(report.parked, Ordering::Relaxed);
        if report.parked > 0 {
            tracing::warn!(
                "{} outbox entries parked in {} (see `shadowbench status`)",
                report.parked,
                self.outbox.parked_table()
            );
        }
    }

    /// `ops` in [`DRAIN_CALLS`] concurrent calls, each behind the breaker; the outcomes
    /// in order, or the first call's failure. While one `_bulk` waits on its translog
    /// sync the other is parsed and indexed, so a backlog drains faster than in one
    /// call after another.
    async fn apply_in_parallel(
        &self,
        os: &dyn VectorStore,
        ops: &[WriteOp],
        timeout: Duration,
    ) -> Result<Vec<ItemOutcome>, GuardedError> {
        let calls = if self.loading.load(Ordering::Relaxed) {
            LOAD_DRAIN_CALLS
        } else {
            DRAIN_CALLS
        };
        let per_call = ops.len().div_ceil(calls).max(1);
        let calls = ops
            .chunks(per_call)
            .map(|chunk| self.guarded(timeout, os.apply(chunk)));
        let mut outcomes = Vec::with_capacity(ops.len());
        for answer in futures::future::join_all(calls).await {
            outcomes.extend(answer?);
        }
        Ok(outcomes)
    }

    /// With entries waiting and the breaker open, checks OpenSearch's health at most
    /// once per [`HEALTH_CHECK_EVERY`], and closes the breaker when it answers healthy.
    /// The breaker's cool-down (5 s by default) paces probes by live traffic; without
    /// this, a backlog built during an outage would wait up to one whole cool-down after
    /// the recovery before its first delivery.
    async fn health_check_behind_open_breaker(&self, os: &dyn VectorStore) {
        {
            let mut last = self
                .last_health_check
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < HEALTH_CHECK_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let healthy = matches!(
            tokio::time::timeout(self.cfg.opensearch_read_timeout, os.health()).await,
            Ok(Ok(h)) if h.ok
        );
        if healthy && self.breaker.close_after_health_check() {
            tracing::info!("OpenSearch answers healthy again: circuit breaker closed");
        }
    }

    /// Drains the outbox in the background every `every` until the handle is dropped.
    pub fn spawn_drainer(self: &Arc<Self>, every: Duration) -> DrainerHandle {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(adapter) = me.upgrade() else { break };
                if let Err(e) = adapter.drain_outbox().await {
                    tracing::debug!("outbox drain failed: {e}");
                }
            }
        });
        DrainerHandle(task)
    }
}

/// Stops the background drainer when dropped.
pub struct DrainerHandle(tokio::task::JoinHandle<()>);

impl Drop for DrainerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Writes: pgvector first, with outbox entries in the same transaction, then the same
//! versioned writes to OpenSearch (coalesced); what OpenSearch did not take stays for
//! the drainer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

use super::{STRIPES, VectorStoreAdapter, mode};
use crate::error::StoreError;
use crate::record::{Record, RecordId};
use crate::store::{ItemOutcome, VectorStore, WriteOp};

impl VectorStoreAdapter {
    fn stripe_of(id: &RecordId) -> usize {
        let bytes = id
            .tenant_id
            .bytes()
            .chain([0])
            .chain(id.entity_type.bytes())
            .chain([0])
            .chain(id.entity_id.bytes());
        (mode::stable_hash(bytes) % STRIPES as u64) as usize
    }

    /// Locks the stripes of these identities in ascending order (no deadlock).
    async fn lock_ids<'a>(
        &self,
        ids: impl Iterator<Item = &'a RecordId>,
    ) -> Vec<OwnedMutexGuard<()>> {
        let stripes: BTreeSet<usize> = ids.map(Self::stripe_of).collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].clone().lock_owned().await);
        }
        guards
    }

    /// Writes to pgvector together with outbox entries (one transaction), then, when the
    /// mode writes OpenSearch, sends the same writes with their row versions. Entries of
    /// items OpenSearch now holds are removed; a rejected item is parked at once; the
    /// rest stay for the drainer. Returns, for a delete, whether the row existed.
    ///
    /// Until commit the identities are locked twice: by in-process stripes and by
    /// PostgreSQL advisory locks, so writes of one identity from any process draw their
    /// versions in commit order. No lock is held while OpenSearch is called: with
    /// `external_gte` versions the newest write wins whatever order the calls land in.
    pub(super) async fn write_both(
        &self,
        os: &Arc<dyn VectorStore>,
        primary: PrimaryWrite<'_>,
        live: bool,
    ) -> Result<bool, StoreError> {
        let committed = self.commit_primary(primary).await?;
        // Durable from here on: acknowledged whatever OpenSearch does.
        self.counters
            .writes_acknowledged
            .fetch_add(committed.writes, Ordering::Relaxed);
        #[cfg(feature = "failpoints")]
        failpoint("after_commit");
        let deferred =
            self.catching_up.load(Ordering::Relaxed) || self.loading.load(Ordering::Relaxed);
        if live && deferred {
            // The drainer is delivering a backlog in large `_bulk` calls (or will, for a
            // bulk load); this write's entry joins it rather than compete with it one
            // document at a time.
            self.counters
                .left_to_drainer
                .fetch_add(committed.writes, Ordering::Relaxed);
        } else if live {
            self.send_live(os, committed.writes, committed.ops, &committed.queued)
                .await;
        }
        Ok(committed.existed)
    }

    /// The pgvector transaction: the rows, their versions and one outbox entry each,
    /// under the stripe and advisory locks of their identities.
    async fn commit_primary(&self, primary: PrimaryWrite<'_>) -> Result<Committed, StoreError> {
        let ids: Vec<&RecordId> = match primary {
            PrimaryWrite::Upsert(records) => records.iter().map(|r| &r.id).collect(),
            PrimaryWrite::Delete(id) => vec![id],
        };
        // Writers of the same identity in this process queue here rather than on a
        // pooled connection inside PostgreSQL; released before OpenSearch is called.
        let writes = ids.len() as u64;
        let guards = self.lock_ids(ids.iter().copied()).await;
        let mut tx = self.pg.deadline(self.pg.pool().begin()).await?;
        self.pg.lock_ids_in(&mut tx, &ids).await?;
        let committed = match primary {
            PrimaryWrite::Upsert(records) => {
                let versions = self.pg.upsert_in(&mut tx, records).await?;
                // The last record per identity is the one pgvector kept.
                let ops: Vec<WriteOp> = crate::store::pgvector::dedup_last(records)
                    .into_iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.version = versions.get(&r.id).copied();
                        WriteOp::Upsert(r)
                    })
                    .collect();
                let queued: Vec<(&RecordId, Option<i64>)> =
                    ops.iter().map(|op| (op.id(), None)).collect();
                let queued = self.outbox.enqueue_in(&mut tx, &queued).await?;
                Committed {
                    writes,
                    existed: true,
                    ops,
                    queued,
                }
            }
            PrimaryWrite::Delete(id) => {
                let existed = self.pg.delete_in(&mut tx, id).await?;
                let version = self.pg.next_version_in(&mut tx).await?;
                let queued = self
                    .outbox
                    .enqueue_in(&mut tx, &[(id, Some(version))])
                    .await?;
                let op = WriteOp::Delete {
                    id: id.clone(),
                    version: Some(version),
                };
                Committed {
                    writes,
                    existed,
                    ops: vec![op],
                    queued,
                }
            }
        };
        self.pg.deadline(tx.commit()).await?;
        drop(guards);
        Ok(committed)
    }

    /// Sends committed writes to OpenSearch (coalesced with concurrent ones) and settles
    /// their outbox entries (`queued`, one per op): delivered ones are removed, rejected
    /// ones parked, the rest left for the drainer. Never fails the caller: the writes
    /// are durable in pgvector and the outbox already.
    /// `writes` (the caller's records, duplicates included) is what a failed call adds
    /// to the failure count.
    async fn send_live(
        &self,
        os: &Arc<dyn VectorStore>,
        writes: u64,
        ops: Vec<WriteOp>,
        queued: &[i64],
    ) {
        let timeout = self
            .cfg
            .opensearch_read_timeout
            .max(Duration::from_secs(10));
        let sent = match &self.os_writes {
            Some(writes) => self.guarded(timeout, writes.apply(ops)).await,
            None => self.guarded(timeout, os.apply(&ops)).await,
        };
        let outcomes = match sent {
            Ok(outcomes) => outcomes,
            Err(why) => {
                self.counters
                    .secondary_write_failures
                    .fetch_add(writes, Ordering::Relaxed);
                tracing::debug!("opensearch write deferred to the outbox: {why}");
                return;
            }
        };
        let mut done = Vec::new();
        let mut rejected = Vec::new();
        let mut failed = 0u64;
        for (seq, outcome) in queued.iter().zip(&outcomes) {
            match outcome {
                o if o.is_done() => done.push(*seq),
                ItemOutcome::Rejected(why) => {
                    failed += 1;
                    rejected.push((*seq, format!("rejected by OpenSearch: {why}")));
                }
                _ => failed += 1,
            }
        }
        // A rejected item is parked at once: retrying cannot help it.
        match self.outbox.park(&rejected).await {
            Ok(k) => {
                self.counters.outbox_parked.fetch_add(k, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("could not park rejected outbox entries: {e}"),
        }
        if let Err(e) = self.outbox.remove(&done).await {
            // Harmless: the drainer will replay the current row once more.
            tracing::warn!("could not clear delivered outbox entries: {e}");
        }
        self.counters
            .secondary_write_failures
            .fetch_add(failed, Ordering::Relaxed);
    }
}

/// Kills the process with SIGKILL at the named point when `SB_FAILPOINT` names it: no
/// destructor runs and nothing is flushed, the crash the outbox must survive. The one
/// point is `after_commit`: pgvector committed, OpenSearch not yet written.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("SB_FAILPOINT").as_deref() == Ok(name) {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        std::process::abort();
    }
}

/// What [`VectorStoreAdapter::commit_primary`] wrote: whether a deleted row existed,
/// the versioned writes for OpenSearch, and their outbox entries (one per op).
struct Committed {
    /// The caller's records, duplicates included (what is acknowledged).
    writes: u64,
    existed: bool,
    ops: Vec<WriteOp>,
    queued: Vec<i64>,
}

#[derive(Clone, Copy)]
pub(super) enum PrimaryWrite<'a> {
    Upsert(&'a [Record]),
    Delete(&'a RecordId),
}

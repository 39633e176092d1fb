//! Settling the stores before a measured window, and checking after it that they stayed
//! settled. Right after a load, OpenSearch is still refreshing and merging segments; a
//! window measured then sees a different index from the one that will serve (recall
//! about 1 pp low on a 63k-vector load). So a run refreshes every store, optionally
//! force-merges OpenSearch, waits for running merges to finish, confirms the counts,
//! and records the segment count and merges at the start and the end of the window.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::Warning;
use crate::scenario::Settle;
use crate::store::{IndexState, VectorStore};

/// How long a run waits for running merges to finish before it measures anyway (and
/// says so).
pub const MERGE_WAIT: Duration = Duration::from_secs(120);

/// One store's state around the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledStore {
    pub label: String,
    /// Records visible to search after the refresh.
    pub count: Option<u64>,
    pub start: Option<IndexState>,
    /// `None` when it could not be read at the end (the report says why).
    pub end: Option<IndexState>,
    /// Why a reading is missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// What settling did, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleReport {
    /// `refresh` or `force_merge`.
    pub policy: String,
    /// Time spent settling before the window.
    pub seconds: f64,
    pub stores: Vec<SettledStore>,
}

impl SettleReport {
    /// Warnings: counts that differ, merges still running, segments that changed.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut w = Vec::new();
        let counts: Vec<u64> = self.stores.iter().filter_map(|s| s.count).collect();
        if counts.windows(2).any(|p| p[0] != p[1]) {
            w.push(Warning::CountsDiffer {
                counts: self
                    .stores
                    .iter()
                    .map(|s| (s.label.clone(), s.count))
                    .collect(),
            });
        }
        for s in &self.stores {
            w.extend(s.errors.iter().map(|e| Warning::SettleFailed {
                label: s.label.clone(),
                error: e.clone(),
            }));
            if let Some(st) = s.start
                && st.merges_running.unwrap_or(0) > 0
            {
                w.push(Warning::MergesRunning {
                    label: s.label.clone(),
                    merges: st.merges_running.unwrap_or(0),
                    waited_s: MERGE_WAIT.as_secs(),
                });
            }
            if let (Some(a), Some(b)) = (s.start, s.end)
                && (a.segments != b.segments || b.merges_running.unwrap_or(0) > 0)
            {
                w.push(Warning::IndexChanged {
                    label: s.label.clone(),
                    segments_start: a.segments,
                    segments_end: b.segments,
                    merges_at_end: b.merges_running,
                });
            }
        }
        w
    }
}

/// Each settling call (refresh, count, index state) gets this long; a force-merge gets
/// an hour.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `fut` within `limit`, its error or the timeout as text for the report.
pub(crate) async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// Settles `stores` (distinct stores with their labels) and reads their state. A store
/// that cannot be settled (down, frozen) is measured anyway, as a rollback drill after an
/// outage must be, and the report says what could not be done.
pub async fn before(stores: &[(String, Arc<dyn VectorStore>)], policy: Settle) -> SettleReport {
    let started = Instant::now();
    let mut out = Vec::new();
    for (label, store) in stores {
        let mut s = SettledStore {
            label: label.clone(),
            count: None,
            start: None,
            end: None,
            errors: Vec::new(),
        };
        if let Err(e) = settle_one(store.as_ref(), policy, &mut s).await {
            s.errors.push(format!("not settled before the window: {e}"));
        }
        out.push(s);
    }
    SettleReport {
        policy: policy.as_str().to_string(),
        seconds: started.elapsed().as_secs_f64(),
        stores: out,
    }
}

async fn settle_one(
    store: &dyn VectorStore,
    policy: Settle,
    s: &mut SettledStore,
) -> Result<(), String> {
    bounded(CALL_TIMEOUT, store.refresh()).await?;
    if policy == Settle::ForceMerge {
        bounded(Duration::from_secs(3600), store.force_merge(1)).await?;
    }
    let deadline = Instant::now() + MERGE_WAIT;
    let mut state = bounded(CALL_TIMEOUT, store.index_state()).await?;
    while state.merges_running.unwrap_or(0) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        state = bounded(CALL_TIMEOUT, store.index_state()).await?;
    }
    // A merge that finished publishes its segment at the next refresh.
    bounded(CALL_TIMEOUT, store.refresh()).await?;
    s.start = Some(bounded(CALL_TIMEOUT, store.index_state()).await?);
    s.count = Some(bounded(CALL_TIMEOUT, store.count()).await?);
    Ok(())
}

/// Reads each store's state at the end of the window, within `timeout` each: a backend
/// that hangs at the end is marked, never fatal.
pub async fn after(
    report: &mut SettleReport,
    stores: &[(String, Arc<dyn VectorStore>)],
    timeout: Duration,
) {
    for ((_, store), s) in stores.iter().zip(report.stores.iter_mut()) {
        match tokio::time::timeout(timeout, store.index_state()).await {
            Ok(Ok(st)) => s.end = Some(st),
            Ok(Err(e)) => s
                .errors
                .push(format!("index state at the end unreadable: {e}")),
            Err(_) => s.errors.push(format!(
                "index state at the end unreadable: no answer within {} s",
                timeout.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(label: &str, count: u64, start: (u64, u64), end: Option<(u64, u64)>) -> SettledStore {
        let st = |(s, m)| IndexState {
            segments: Some(s),
            merges_running: Some(m),
        };
        SettledStore {
            label: label.into(),
            count: Some(count),
            start: Some(st(start)),
            end: end.map(st),
            errors: vec![],
        }
    }

    #[test]
    fn a_settled_pair_gives_no_warning() {
        let r = SettleReport {
            policy: "refresh".into(),
            seconds: 0.1,
            stores: vec![
                store("pgvector", 100, (0, 0), Some((0, 0))),
                store("opensearch", 100, (18, 0), Some((18, 0))),
            ],
        };
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    }

    #[test]
    fn merges_changed_segments_and_count_gaps_are_warned_about() {
        let r = SettleReport {
            policy: "refresh".into(),
            seconds: 0.1,
            stores: vec![
                store("pgvector", 100, (0, 0), Some((0, 0))),
                store("opensearch", 99, (27, 1), Some((20, 0))),
            ],
        };
        let w = r.warnings();
        assert!(
            matches!(
                w.as_slice(),
                [
                    Warning::CountsDiffer { counts },
                    Warning::MergesRunning { label, merges: 1, .. },
                    Warning::IndexChanged {
                        segments_start: Some(27),
                        segments_end: Some(20),
                        ..
                    },
                ] if counts[1] == ("opensearch".to_string(), Some(99)) && label == "opensearch"
            ),
            "{w:?}"
        );
    }
}

//! `shadowbench status`: each selected store's health, version, record count and sizes,
//! and what the migration outbox holds.

use crate::adapter::Outbox;
use crate::connect::Backends;
use crate::error::StoreError;
use crate::store::{BackendKind, VectorStore};

/// One store as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    pub kind: BackendKind,
    /// The store answered its health check as healthy.
    pub up: bool,
    pub version: String,
    /// The record count, or why it could not be counted.
    pub records: Result<u64, String>,
    pub data_bytes: Option<u64>,
    pub index_bytes: Option<u64>,
}

impl StoreStatus {
    /// Asks the store. A failed health check is an error; a failed count or size query
    /// is shown in the line instead.
    pub async fn probe(store: &dyn VectorStore) -> Result<Self, StoreError> {
        let h = store.health().await?;
        let records = store.count().await.map_err(|e| e.to_string());
        let r = store.resources().await.unwrap_or_default();
        Ok(StoreStatus {
            kind: store.kind(),
            up: h.ok,
            version: h.version,
            records,
            data_bytes: r.data_bytes,
            index_bytes: r.index_bytes,
        })
    }

    pub fn line(&self) -> String {
        let bytes = |b: Option<u64>| b.map(|b| b.to_string()).unwrap_or("?".into());
        let records = match &self.records {
            Ok(n) => n.to_string(),
            Err(e) => format!("? ({e})"),
        };
        format!(
            "{:<10} {} {} | records {} | data {} B | index {} B",
            self.kind,
            if self.up { "up" } else { "DEGRADED" },
            self.version,
            records,
            bytes(self.data_bytes),
            bytes(self.index_bytes),
        )
    }
}

/// The outbox beside pgvector: its summary and up to five parked entries, or the
/// one-line summary when it is empty.
pub async fn outbox_lines(backends: &Backends) -> Result<Vec<String>, crate::error::Error> {
    let outbox = Outbox::new(backends.pgvector().await?);
    let state = outbox.state(5).await?;
    Ok(match state.lines(outbox.table()) {
        lines if lines.is_empty() => vec![state.summary(outbox.table())],
        lines => lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_shows_what_could_not_be_measured_as_a_question_mark() {
        let mut s = StoreStatus {
            kind: BackendKind::Pgvector,
            up: true,
            version: "PostgreSQL 17".into(),
            records: Ok(1000),
            data_bytes: Some(4096),
            index_bytes: None,
        };
        assert_eq!(
            s.line(),
            "pgvector up PostgreSQL 17 | records 1000 | data 4096 B | index ? B"
        );
        s.up = false;
        s.records = Err("timed out".into());
        assert_eq!(
            s.line(),
            "pgvector DEGRADED PostgreSQL 17 | records ? (timed out) | data 4096 B | index ? B"
        );
    }
}

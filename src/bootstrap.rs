//! `shadowbench bootstrap`: the OpenSearch index template and index, and the pgvector
//! table and index. Idempotent: a second run creates nothing and says so.

use serde::Serialize;

use crate::connect::{BackendSelection, Backends};
use crate::error::Error;
use crate::store::BootstrapOutcome;

#[derive(Debug, Default, Serialize)]
pub struct BootstrapReport {
    pub pgvector: Option<BootstrapOutcome>,
    pub opensearch: Option<BootstrapOutcome>,
}

impl BootstrapReport {
    pub fn changed(&self) -> bool {
        [&self.pgvector, &self.opensearch]
            .into_iter()
            .flatten()
            .any(BootstrapOutcome::changed)
    }

    /// Human-readable lines, one per object.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, o) in [
            ("pgvector", &self.pgvector),
            ("opensearch", &self.opensearch),
        ] {
            if let Some(o) = o {
                out.extend(o.created.iter().map(|c| format!("{name}: created {c}")));
                out.extend(o.unchanged.iter().map(|c| format!("{name}: unchanged {c}")));
            }
        }
        if !self.changed() {
            out.push("nothing to do: everything already exists with the requested settings".into());
        }
        out
    }
}

pub async fn run(backends: &Backends, which: BackendSelection) -> Result<BootstrapReport, Error> {
    let mut report = BootstrapReport::default();
    if which.pgvector() {
        report.pgvector = Some(backends.pgvector().await?.bootstrap().await?);
    }
    if which.opensearch() {
        report.opensearch = Some(backends.opensearch().await?.bootstrap().await?);
    }
    Ok(report)
}

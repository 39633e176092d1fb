//! Opening the configured stores, with one place that turns config into live clients.

use std::sync::Arc;

use crate::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use crate::config::{OpenSearchConfig, PgConfig, field};
use crate::error::{ConfigError, Error};
use crate::store::VectorStore;
use crate::store::opensearch::OpenSearchStore;
use crate::store::pgvector::PgVectorStore;

/// Which stores a command touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSelection {
    Pgvector,
    Opensearch,
    Both,
}

impl BackendSelection {
    /// `pgvector` (or `pg`, `postgres`), `opensearch` (or `os`) or `both`, in any case;
    /// errors name `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "pgvector" | "pg" | "postgres" => Ok(Self::Pgvector),
            "opensearch" | "os" => Ok(Self::Opensearch),
            "both" => Ok(Self::Both),
            other => Err(ConfigError::invalid(
                field,
                format!("{other:?} is not one of pgvector, opensearch, both"),
            )),
        }
    }

    pub fn pgvector(self) -> bool {
        matches!(self, Self::Pgvector | Self::Both)
    }

    pub fn opensearch(self) -> bool {
        matches!(self, Self::Opensearch | Self::Both)
    }
}

impl std::str::FromStr for BackendSelection {
    type Err = ConfigError;

    /// [`BackendSelection::parse`] for the `backend` field.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(field::BACKEND, s)
    }
}

/// Connection settings for both stores; either may be absent when not needed.
#[derive(Debug, Clone)]
pub struct Backends {
    pub pg: Option<PgConfig>,
    pub os: Option<OpenSearchConfig>,
}

impl Backends {
    pub fn pg_config(&self) -> Result<&PgConfig, ConfigError> {
        self.pg.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                field::PG,
                "PostgreSQL connection is required for this command",
            )
        })
    }

    pub fn os_config(&self) -> Result<&OpenSearchConfig, ConfigError> {
        self.os.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                field::OPENSEARCH,
                "OpenSearch hosts are required for this command",
            )
        })
    }

    pub async fn pgvector(&self) -> Result<Arc<PgVectorStore>, Error> {
        Ok(Arc::new(
            PgVectorStore::connect(self.pg_config()?.clone()).await?,
        ))
    }

    pub async fn opensearch(&self) -> Result<Arc<OpenSearchStore>, Error> {
        Ok(Arc::new(
            OpenSearchStore::connect(self.os_config()?.clone()).await?,
        ))
    }

    /// Opens the migration adapter in `mode` over pgvector and, when the mode writes to
    /// it or it is configured, OpenSearch. The outbox starts as the previous run left it.
    pub async fn adapter(
        &self,
        mode: MigrationMode,
        cfg: AdapterConfig,
    ) -> Result<Arc<VectorStoreAdapter>, Error> {
        let pg = self.pgvector().await?;
        let os: Option<Arc<dyn VectorStore>> = if mode.needs_opensearch() || self.os.is_some() {
            Some(self.opensearch().await?)
        } else {
            None
        };
        Ok(Arc::new(VectorStoreAdapter::new(pg, os, mode, cfg).await?))
    }

    /// Opens the selected stores as trait objects, pgvector first.
    pub async fn open(&self, which: BackendSelection) -> Result<Vec<Arc<dyn VectorStore>>, Error> {
        let mut out: Vec<Arc<dyn VectorStore>> = Vec::new();
        if which.pgvector() {
            out.push(self.pgvector().await?);
        }
        if which.opensearch() {
            out.push(self.opensearch().await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_selection_takes_short_names_in_any_case() {
        for (s, want) in [
            ("PG", BackendSelection::Pgvector),
            ("postgres", BackendSelection::Pgvector),
            ("OS", BackendSelection::Opensearch),
            ("both", BackendSelection::Both),
        ] {
            assert_eq!(s.parse::<BackendSelection>().unwrap(), want, "{s}");
        }
        let e = "Mongo".parse::<BackendSelection>().unwrap_err().to_string();
        assert_eq!(
            e,
            "backend: \"mongo\" is not one of pgvector, opensearch, both"
        );
    }

    #[tokio::test]
    async fn a_missing_connection_names_the_store_not_a_flag() {
        let none = Backends { pg: None, os: None };
        let e = none.pg_config().unwrap_err();
        assert_eq!(e.field(), Some(field::PG));
        let e = none.os_config().unwrap_err();
        assert_eq!(e.field(), Some(field::OPENSEARCH));
        let e = none
            .adapter(MigrationMode::Pgvector, AdapterConfig::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Config(ref c) if c.field() == Some(field::PG)),
            "{e}"
        );
    }
}

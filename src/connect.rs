//! Opening the configured stores, with one place that turns config into live clients.

use std::sync::Arc;

use crate::config::{OpenSearchConfig, PgConfig};
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
    pub fn parse(flag: &str, s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "pgvector" | "pg" | "postgres" => Ok(Self::Pgvector),
            "opensearch" | "os" => Ok(Self::Opensearch),
            "both" => Ok(Self::Both),
            other => Err(ConfigError::invalid(
                flag,
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
                "--pg-dsn / ML_PGVECTOR_DSN / DATABASE_URL",
                "PostgreSQL connection is required for this command",
            )
        })
    }

    pub fn os_config(&self) -> Result<&OpenSearchConfig, ConfigError> {
        self.os.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "--hosts / ML_OPENSEARCH_HOSTS",
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

//! shadowbench: measure and gate a migration of vector search from PostgreSQL+pgvector
//! to OpenSearch k-NN. See README.md for the pipeline.

pub mod adapter;
pub mod backfill;
pub mod bootstrap;
pub mod compare;
pub mod config;
pub mod connect;
pub mod consistency;
pub mod dataset;
pub mod distance;
pub mod error;
pub mod fault;
pub mod gate;
pub mod httpload;
pub mod ingest;
pub mod load;
pub mod measure;
pub mod progress;
pub mod record;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod serve;
pub mod settle;
pub mod status;
pub mod store;
pub mod workload;

//! One function per subcommand: build typed config from the CLI, call the library,
//! print a human summary. Returns the process exit code.

use shadowbench::error::{ConfigError, Error};
use shadowbench::{bootstrap, dataset, ingest};

use crate::cli::{Cli, Command, IngestArgs};

pub async fn dispatch(cli: Cli) -> Result<u8, Error> {
    let backends = cli.conn.backends()?;
    let which = cli.conn.selection()?;
    match cli.command {
        Command::Bootstrap => {
            let report = bootstrap::run(&backends, which).await?;
            for line in report.lines() {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Ingest(args) => ingest_cmd(&backends, which, args).await,
        Command::Status => status(&backends, which).await,
    }
}

async fn ingest_cmd(
    backends: &shadowbench::connect::Backends,
    which: shadowbench::connect::BackendSelection,
    args: IngestArgs,
) -> Result<u8, Error> {
    if args.batch_size == 0 {
        return Err(ConfigError::invalid("--batch-size", "must be at least 1").into());
    }
    let ds = dataset::Dataset::load(&args.dataset)?;
    let dim = backends
        .pg
        .as_ref()
        .map(|c| c.dimension)
        .or(backends.os.as_ref().map(|c| c.dimension))
        .unwrap_or(ds.dimension);
    if ds.dimension != dim {
        return Err(ConfigError::invalid(
            "--vector-dimension",
            format!(
                "dataset {} has dimension {} but the stores are configured for {dim}",
                args.dataset.display(),
                ds.dimension
            ),
        )
        .into());
    }
    let records = match args.limit {
        Some(n) => &ds.train[..n.min(ds.train.len())],
        None => &ds.train[..],
    };
    let targets = backends.open(which).await?;
    let opts = ingest::IngestOptions {
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        progress: true,
    };
    let s = ingest::ingest(records, &targets, &opts).await?;
    println!(
        "ingested {} records of {} into {} in {:.1}s ({:.0} records/s)",
        s.records,
        ds.name,
        s.targets.join(" + "),
        s.seconds,
        s.records_per_second
    );
    Ok(0)
}

async fn status(
    backends: &shadowbench::connect::Backends,
    which: shadowbench::connect::BackendSelection,
) -> Result<u8, Error> {
    let stores = backends.open(which).await?;
    let mut code = 0;
    for s in stores {
        let h = s.health().await?;
        let n = s
            .count()
            .await
            .map(|n| n.to_string())
            .unwrap_or_else(|e| format!("? ({e})"));
        let r = s.resources().await.unwrap_or_default();
        println!(
            "{:<10} {} {} | records {} | data {} B | index {} B",
            s.kind(),
            if h.ok { "up" } else { "DEGRADED" },
            h.version,
            n,
            r.data_bytes.map(|b| b.to_string()).unwrap_or("?".into()),
            r.index_bytes.map(|b| b.to_string()).unwrap_or("?".into()),
        );
        if !h.ok {
            code = 1;
        }
    }
    Ok(code)
}

//! One function per subcommand: build typed config from the CLI, call the library,
//! print a human summary. Returns the process exit code.

use std::sync::Arc;

use shadowbench::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use shadowbench::connect::{BackendSelection, Backends};
use shadowbench::error::{ConfigError, Error};
use shadowbench::store::VectorStore;
use shadowbench::{backfill, bootstrap, consistency, dataset, ingest};

use crate::cli::{Cli, Command, IngestArgs, SyncArgs, ValidateArgs};

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
        Command::Sync(args) => sync_cmd(&backends, args).await,
        Command::Validate(args) => validate_cmd(&backends, args).await,
        Command::Run(args) => run_cmd(&backends, args).await,
        Command::Gate(args) => gate_cmd(args).await,
        Command::Compare(args) => compare_cmd(args).await,
        Command::Serve(args) => serve_cmd(&backends, args).await,
        Command::HttpLoad(args) => http_load_cmd(args).await,
        Command::RollbackDrill(args) => rollback_drill_cmd(args).await,
    }
}

/// Opens the adapter for a mode; starts with the outbox as the previous run left it.
pub async fn adapter(
    backends: &Backends,
    mode: MigrationMode,
) -> Result<Arc<VectorStoreAdapter>, Error> {
    let pg = backends.pgvector().await?;
    let os: Option<Arc<dyn VectorStore>> = if mode.needs_opensearch() || backends.os.is_some() {
        Some(backends.opensearch().await?)
    } else {
        None
    };
    Ok(Arc::new(
        VectorStoreAdapter::new(pg, os, mode, AdapterConfig::default()).await?,
    ))
}

async fn sync_cmd(backends: &Backends, args: SyncArgs) -> Result<u8, Error> {
    let pg = backends.pgvector().await?;
    let os = backends.opensearch().await?;
    let opts = backfill::SyncOptions {
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        restart: args.restart,
        progress: true,
    };
    let index = backends.os_config()?.index.clone();
    let s = backfill::sync(pg, os.clone(), &index, &opts).await?;
    if let Some(after) = &s.resumed_after {
        println!(
            "resumed after {after} ({} records were copied before the interruption)",
            s.previously_copied
        );
    }
    println!(
        "synced {} records into opensearch index {index} in {:.1}s ({:.0} records/s)",
        s.copied, s.seconds, s.records_per_second
    );
    if args.expunge_deletes {
        let started = std::time::Instant::now();
        let (before, after) = os
            .expunge_deletes(std::time::Duration::from_secs(3600))
            .await?;
        println!(
            "expunged deleted documents from {index}: {before} before, {after} after ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(0)
}

async fn validate_cmd(backends: &Backends, args: ValidateArgs) -> Result<u8, Error> {
    let pg_store = backends.pgvector().await?;
    let outbox = shadowbench::adapter::Outbox::new(pg_store.clone());
    let pg: Arc<dyn VectorStore> = pg_store.clone();
    let os: Arc<dyn VectorStore> = backends.opensearch().await?;
    let opts = consistency::ValidateOptions {
        show: args.show,
        progress: true,
        ..consistency::ValidateOptions::default()
    };
    let report = if args.repair {
        let (before, fixed, after) = consistency::repair(pg_store, os, &opts).await?;
        for line in before.lines() {
            println!("before repair: {line}");
        }
        println!(
            "repair: upserted {} and deleted {} records in opensearch",
            fixed.upserted, fixed.deleted
        );
        after
    } else {
        consistency::validate(pg, os, &opts).await?
    };
    for line in report.lines() {
        println!("{line}");
    }
    // What has not reached OpenSearch yet, or never will without help: a parked entry
    // names the record and why OpenSearch refused it.
    for line in outbox.state(args.show).await?.lines(outbox.table()) {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Error::failed)?;
        std::fs::write(path, text).map_err(|e| ConfigError::file(path, e))?;
    }
    if report.consistent() {
        println!("CONSISTENT: 100%");
        Ok(0)
    } else {
        println!("INCONSISTENT");
        Ok(1)
    }
}

async fn ingest_cmd(
    backends: &Backends,
    which: BackendSelection,
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
    let mut drain = None;
    let targets: Vec<Arc<dyn VectorStore>> = match &args.mode {
        Some(m) => {
            let mode = MigrationMode::parse("--mode / ML_MIGRATION_MODE", m)?;
            let a = adapter(backends, mode).await?;
            drain = Some(a.clone());
            vec![a]
        }
        None => backends.open(which).await?,
    };
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
        match &drain {
            Some(a) if a.mode().writes_opensearch() => {
                format!(
                    "pgvector + opensearch through the adapter in mode {}",
                    a.mode()
                )
            }
            Some(a) => format!("pgvector through the adapter in mode {}", a.mode()),
            None => s.targets.join(" + "),
        },
        s.seconds,
        s.records_per_second
    );
    for note in &s.notes {
        println!("{note}");
    }
    if let Some(a) = drain {
        let d = a.drain_outbox().await?;
        let stats = a.stats();
        println!(
            "mode {}: {} writes acknowledged, {} deferred to the outbox, {} replayed, outbox depth now {}",
            a.mode(),
            stats.writes_acknowledged,
            stats.secondary_write_failures,
            d.delivered,
            d.remaining
        );
        if d.remaining > 0 {
            println!(
                "outbox not empty: run `shadowbench sync` or ingest again once OpenSearch is healthy"
            );
            return Ok(1);
        }
    }
    Ok(0)
}

async fn status(backends: &Backends, which: BackendSelection) -> Result<u8, Error> {
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
    if which != BackendSelection::Opensearch {
        let outbox = shadowbench::adapter::Outbox::new(backends.pgvector().await?);
        let state = outbox.state(5).await?;
        match state.lines(outbox.table()).as_slice() {
            [] => println!("{}", state.summary(outbox.table())),
            lines => lines.iter().for_each(|l| println!("{l}")),
        }
    }
    Ok(code)
}

/// The admin token guarding the service's mutating endpoints: `--admin-token-file`
/// (or SHADOWBENCH_ADMIN_TOKEN_FILE), else SHADOWBENCH_ADMIN_TOKEN. Never a flag value,
/// so it stays out of argv, shell history and logs.
fn admin_token(
    file: Option<&std::path::Path>,
) -> Result<Option<shadowbench::config::Secret>, ConfigError> {
    shadowbench::serve::load_admin_token(file, std::env::var("SHADOWBENCH_ADMIN_TOKEN").ok())
}

async fn serve_cmd(backends: &Backends, args: crate::cli::ServeArgs) -> Result<u8, Error> {
    use shadowbench::serve;
    let mode = MigrationMode::parse("--mode / ML_MIGRATION_MODE", &args.mode)?;
    let tenants = args.tenants.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    });
    let cfg = serve::ServeConfig {
        listen: args.listen,
        tenants,
        max_k: args.max_k,
        max_body_bytes: args.max_body_bytes,
        record: args.record.clone(),
        record_buffer: args.record_buffer,
        admin_token: admin_token(args.admin_token_file.as_deref())?,
        open_writes: args.open_writes,
        request_timeout: std::time::Duration::from_millis(args.request_timeout_ms),
        max_concurrency: args.max_concurrency,
        ..serve::ServeConfig::default()
    };
    cfg.validate()?;
    let adapter_cfg = AdapterConfig {
        mirror_capacity: args.mirror_capacity.max(1),
        opensearch_read_timeout: std::time::Duration::from_millis(
            args.opensearch_read_timeout_ms.max(1),
        ),
        split_key: cfg.split_key,
        ..AdapterConfig::default()
    };
    let pg = backends.pgvector().await?;
    let os: Option<Arc<dyn VectorStore>> = if mode.needs_opensearch() || backends.os.is_some() {
        Some(backends.opensearch().await?)
    } else {
        None
    };
    let adapter = Arc::new(VectorStoreAdapter::new(pg, os, mode, adapter_cfg).await?);
    let switching = match (cfg.admin_token.is_some(), cfg.open_writes) {
        (true, false) => "writes and mode switching need the bearer token",
        (true, true) => "writes are open (--open-writes); mode switching needs the bearer token",
        (false, true) => {
            "writes are open (--open-writes); mode switching disabled (set SHADOWBENCH_ADMIN_TOKEN to enable)"
        }
        (false, false) => {
            "read-only: writes and mode switching disabled (set SHADOWBENCH_ADMIN_TOKEN, or --open-writes for writes)"
        }
    };
    let running = serve::start(adapter, cfg).await?;
    println!(
        "serving on {} in mode {}; {switching}{}",
        running.base_url(),
        mode,
        args.record
            .as_ref()
            .map(|p| format!("; recording to {}", p.display()))
            .unwrap_or_default()
    );
    let summary = running.run_until(serve::shutdown_signal()).await?;
    println!(
        "stopped: {} shadow comparisons, {} mirrored reads dropped, {} writes acknowledged",
        summary.shadow_comparisons,
        summary.adapter.mirror_dropped,
        summary.adapter.writes_acknowledged
    );
    if let Some(c) = summary.capture {
        println!(
            "capture {}: {} operations written, {} dropped",
            c.path.display(),
            c.written,
            c.dropped
        );
    }
    Ok(0)
}

async fn http_load_cmd(args: crate::cli::HttpLoadArgs) -> Result<u8, Error> {
    use shadowbench::httpload::{self, HttpLoadOptions, HttpScenario, LoadShape};
    let shape = match (args.test_plan, args.run_time) {
        (Some(plan), _) => LoadShape::TestPlan(plan),
        (None, Some(run_time)) => LoadShape::Ramp {
            users: args.users,
            hatch_rate: args.hatch_rate,
            run_time,
        },
        (None, None) => {
            return Err(ConfigError::invalid(
                "--run-time",
                "required (or --test-plan): http-load always stops by itself",
            )
            .into());
        }
    };
    let opts = HttpLoadOptions {
        target: args.target,
        dataset: args.dataset,
        scenario: HttpScenario::parse("--scenario", &args.scenario)?,
        shape,
        throttle_requests: args.throttle_requests,
        k: args.k,
        allow_remote: args.allow_remote,
        out_dir: args.out.clone(),
        goose_args: args.goose,
        quiet: false,
        write_token: admin_token(None)?,
    };
    let report = httpload::run(&opts).await?;
    for line in report.lines() {
        println!("{line}");
    }
    println!(
        "wrote {}, {} and {} in {}",
        httpload::GOOSE_HTML,
        httpload::GOOSE_JSON,
        httpload::REPORT_JSON,
        args.out.display()
    );
    Ok(if report.thresholds_failed { 1 } else { 0 })
}

async fn rollback_drill_cmd(args: crate::cli::RollbackDrillArgs) -> Result<u8, Error> {
    use shadowbench::serve::drill;
    let token = admin_token(args.admin_token_file.as_deref())?.ok_or_else(|| {
        ConfigError::invalid(
            "SHADOWBENCH_ADMIN_TOKEN",
            "set it (or --admin-token-file) to the token the service was started with",
        )
    })?;
    let mut opts = drill::DrillOptions::new(args.target, token);
    opts.allow_remote = args.allow_remote;
    opts.timeout = std::time::Duration::from_secs(args.timeout_s.max(1));
    // `rollback` checks the target before it sends anything; a refused target is a
    // usage error (exit 2).
    let report = drill::rollback(&opts).await.map_err(|e| match e {
        drill::DrillError::Target(c) => Error::Config(c),
        e => Error::failed(e),
    })?;
    for line in report.lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(Error::failed)?;
        std::fs::write(path, text).map_err(|e| ConfigError::file(path, e))?;
    }
    Ok(if report.complete() { 0 } else { 1 })
}

/// `run SCENARIO.toml [--out DIR]`: the report is written and summarised even when the
/// workload stopped on bad input (then the exit code is 2).
async fn run_cmd(backends: &Backends, args: crate::cli::RunArgs) -> Result<u8, Error> {
    use shadowbench::{report, runner, scenario};
    let scenario = scenario::Scenario::load(&args.scenario)?;
    let run_id = report::run_id(chrono::Utc::now(), &scenario.name);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("reports").join(&run_id));
    if !scenario.stages.is_empty() {
        return run_stages_cmd(backends, &args, &scenario, run_id, &dir).await;
    }
    let options = runner::RunnerOptions {
        progress: true,
        samples: args
            .samples
            .then(|| dir.join(report::samples_sink::FILE_NAME)),
        run_id: Some(run_id),
    };
    let finished = runner::run_scenario(&scenario, backends, &options).await?;
    let (report, verdict) = finished.report.gated(scenario.criteria.clone());
    let written = report::write_all(
        &report,
        Some(&verdict),
        &dir,
        report::WriteOptions::default(),
    )?;
    if let Some(junit) = &args.junit {
        std::fs::write(
            junit,
            report::junit::render(&report.scenario.name, &verdict),
        )
        .map_err(|e| ConfigError::file(junit, e))?;
    }
    print!("{}", report::summary::render(&report));
    print_verdict(&verdict);
    println!("report written to {}:", dir.display());
    for p in &written {
        println!("  {}", p.display());
    }
    if let Some(e) = &report.methodology.samples.export {
        println!("  {} ({} rows)", dir.join(&e.file).display(), e.rows);
    }
    match finished.stopped_by {
        Some(e) => Err(e.into()),
        None => Ok(verdict.outcome.exit_code()),
    }
}

/// A staged scenario: each stage's report in `DIR/<NN>-<stage>/`, written as soon as
/// the stage is gated, then `stages.md` and `stages.json` in `DIR`.
async fn run_stages_cmd(
    backends: &Backends,
    args: &crate::cli::RunArgs,
    scenario: &shadowbench::scenario::Scenario,
    run_id: String,
    dir: &std::path::Path,
) -> Result<u8, Error> {
    use shadowbench::report::{self, stages};
    use shadowbench::runner;
    let options = runner::RunnerOptions {
        progress: true,
        samples: None,
        run_id: Some(run_id),
    };
    let staged = runner::run_stages(
        scenario,
        backends,
        &options,
        args.samples.then_some(dir),
        |st| {
            let stage_dir = dir.join(&st.dir_name);
            report::write_all(
                &st.report,
                Some(&st.verdict),
                &stage_dir,
                report::WriteOptions::default(),
            )?;
            println!(
                "\n== stage {} of {}: {} (mode {}) ==",
                st.number,
                scenario.stages.len(),
                st.name,
                st.mode
            );
            print!("{}", report::summary::render(&st.report));
            print_verdict(&st.verdict);
            println!("stage report written to {}", stage_dir.display());
            Ok(())
        },
    )
    .await?;
    let summary = staged.write(&scenario.name, dir, args.junit.as_deref())?;
    println!(
        "\nstages: {:?}; {} ran, {} not run; summary in {}",
        summary.outcome,
        summary.stages.len(),
        summary.not_run.len(),
        dir.join(stages::MARKDOWN_FILE).display()
    );
    match staged.stopped_by {
        Some(e) => Err(e.into()),
        None => Ok(summary.outcome.exit_code()),
    }
}

fn print_verdict(v: &shadowbench::gate::Verdict) {
    use shadowbench::gate::Status;
    println!("gate: {:?}", v.outcome);
    for c in &v.criteria {
        let measured = c
            .measured
            .map_or_else(|| "n/a".to_string(), |m| format!("{m:.4}"));
        let status = match c.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::NoData => "no data",
            Status::Skipped => "skipped",
        };
        println!(
            "  {:<24} {:<36} {:>12}  {status}",
            c.name, c.threshold, measured
        );
    }
}

/// `gate REPORT.json [--criteria FILE] [--junit FILE]`: re-evaluates a saved report.
async fn gate_cmd(args: crate::cli::GateArgs) -> Result<u8, Error> {
    use shadowbench::{gate, report};
    let r = report::json::read(&args.report)?;
    let criteria = match &args.criteria {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::file(p, e))?;
            toml::from_str::<gate::Criteria>(&text)
                .map_err(|e| ConfigError::file(p, e.to_string().trim_end().to_string()))?
        }
        // The criteria the run itself was gated with, else the migration plan's defaults.
        None => r.gate_criteria.clone().unwrap_or_default(),
    };
    let verdict = gate::evaluate(&r.gate_input(), &criteria);
    print_verdict(&verdict);
    let mut code = verdict.outcome.exit_code();
    if let Some(base) = &args.baseline {
        let b = report::json::read(base)?;
        let cmp = shadowbench::compare::compare(&b, &r, &gate::RegressionPolicy::default());
        print!("{}", cmp.render());
        if cmp.regressions() > 0 && code == 0 {
            code = 1;
        }
    }
    if let Some(junit) = &args.junit {
        std::fs::write(junit, report::junit::render(&r.scenario.name, &verdict))
            .map_err(|e| ConfigError::file(junit, e))?;
    }
    Ok(code)
}

/// `compare A B`: B against baseline A; exit 1 when B regressed.
async fn compare_cmd(args: crate::cli::CompareArgs) -> Result<u8, Error> {
    use shadowbench::report;
    let a = report::json::read(&args.baseline)?;
    let b = report::json::read(&args.current)?;
    let cmp =
        shadowbench::compare::compare(&a, &b, &shadowbench::gate::RegressionPolicy::default());
    print!("{}", cmp.render());
    Ok(if cmp.regressions() > 0 { 1 } else { 0 })
}

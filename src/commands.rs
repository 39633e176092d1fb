//! One function per subcommand: flags to typed config, one library call, a printed
//! summary. Each returns the process's [`Exit`]; errors go back to `main` unprinted.

use std::path::Path;

use shadowbench::connect::{BackendSelection, Backends};
use shadowbench::error::{ConfigError, Error, Exit};
use shadowbench::ingest::{self, Target};
use shadowbench::{backfill, bootstrap, consistency, status};

use crate::cli::{Cli, Command, IngestArgs, SyncArgs, ValidateArgs};

pub async fn dispatch(cli: Cli) -> Result<Exit, Error> {
    let backends = cli.conn.backends()?;
    let which = cli.conn.selection();
    match cli.command {
        Command::Bootstrap => {
            print_lines(bootstrap::run(&backends, which).await?.lines());
            Ok(Exit::Pass)
        }
        Command::Ingest(args) => ingest_cmd(&backends, which, args).await,
        Command::Status => status_cmd(&backends, which).await,
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

fn print_lines(lines: impl IntoIterator<Item = String>) {
    for line in lines {
        println!("{line}");
    }
}

/// Writes `text` to a file the user named; failing is a usage error naming the file.
fn write_file(path: &Path, text: impl AsRef<[u8]>) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| ConfigError::file(path, e).into())
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(Error::failed)?;
    write_file(path, text)
}

async fn sync_cmd(backends: &Backends, args: SyncArgs) -> Result<Exit, Error> {
    let pg = backends.pgvector().await?;
    let os = backends.opensearch().await?;
    let opts = backfill::SyncOptions {
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        restart: args.restart,
        progress: true,
    };
    let index = backends.os_config()?.index.clone();
    print_lines(
        backfill::sync(pg, os.clone(), &index, &opts)
            .await?
            .lines(&index),
    );
    if args.expunge_deletes {
        println!("{}", backfill::expunge_deletes(&os).await?.line(&index));
    }
    Ok(Exit::Pass)
}

async fn validate_cmd(backends: &Backends, args: ValidateArgs) -> Result<Exit, Error> {
    let opts = consistency::ValidateOptions {
        show: args.show,
        parallel: usize::from(args.parallel),
        read: if args.from_source {
            shadowbench::store::DigestRead::FullRecord
        } else {
            shadowbench::store::DigestRead::Cheapest
        },
        progress: true,
        ..consistency::ValidateOptions::default()
    };
    let checked = consistency::check(backends, args.repair, &opts).await?;
    print_lines(checked.lines());
    print_lines(checked.outbox_lines(args.show).await?);
    if let Some(path) = &args.json {
        write_json(path, &checked.report)?;
    }
    if checked.report.consistent() {
        println!("CONSISTENT: 100%");
        Ok(Exit::Pass)
    } else {
        println!("INCONSISTENT");
        Ok(Exit::Failure)
    }
}

async fn ingest_cmd(
    backends: &Backends,
    which: BackendSelection,
    args: IngestArgs,
) -> Result<Exit, Error> {
    let target = args.mode.map_or(Target::Stores(which), Target::Adapter);
    let opts = ingest::IngestOptions {
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        progress: true,
    };
    let done = ingest::dataset(backends, target, &args.dataset, args.limit, &opts).await?;
    println!("{}", done.line());
    if let Some(d) = done.drain().await? {
        println!("{}", d.line());
        if d.report.remaining > 0 {
            println!(
                "outbox not empty: run `shadowbench sync` or ingest again once OpenSearch is healthy"
            );
            return Ok(Exit::Failure);
        }
    }
    Ok(Exit::Pass)
}

async fn status_cmd(backends: &Backends, which: BackendSelection) -> Result<Exit, Error> {
    let mut exit = Exit::Pass;
    for store in backends.open(which).await? {
        let s = status::StoreStatus::probe(store.as_ref()).await?;
        println!("{}", s.line());
        if !s.up {
            exit = Exit::Failure;
        }
    }
    if which != BackendSelection::Opensearch {
        print_lines(status::outbox_lines(backends).await?);
    }
    Ok(exit)
}

/// The admin token guarding the service's mutating endpoints: `--admin-token-file`
/// (or SHADOWBENCH_ADMIN_TOKEN_FILE), else SHADOWBENCH_ADMIN_TOKEN. Never a flag value,
/// so it stays out of argv, shell history and logs.
fn admin_token(
    file: Option<&std::path::Path>,
) -> Result<Option<shadowbench::config::Secret>, ConfigError> {
    shadowbench::serve::load_admin_token(file, std::env::var("SHADOWBENCH_ADMIN_TOKEN").ok())
}

async fn serve_cmd(backends: &Backends, args: crate::cli::ServeArgs) -> Result<Exit, Error> {
    use shadowbench::serve;
    let cfg = args.config(admin_token(args.admin_token_file.as_deref())?);
    cfg.validate()?;
    let adapter = backends
        .adapter(args.mode, args.adapter_config(&cfg))
        .await?;
    let access = crate::cli::ServeArgs::access(cfg.admin_token.is_some(), cfg.open_writes);
    let running = serve::start(adapter, cfg).await?;
    println!(
        "serving on {} in mode {}; {access}{}",
        running.base_url(),
        args.mode,
        args.record
            .as_ref()
            .map(|p| format!("; recording to {}", p.display()))
            .unwrap_or_default()
    );
    print_lines(running.run_until(serve::shutdown_signal()).await?.lines());
    Ok(Exit::Pass)
}

async fn http_load_cmd(args: crate::cli::HttpLoadArgs) -> Result<Exit, Error> {
    use shadowbench::httpload;
    let token = admin_token(args.admin_token_file.as_deref())?;
    let opts = args.options(token)?;
    let report = httpload::run(&opts).await?;
    print_lines(report.lines());
    println!(
        "wrote {}, {} and {} in {}",
        httpload::GOOSE_HTML,
        httpload::GOOSE_JSON,
        httpload::REPORT_JSON,
        opts.out_dir.display()
    );
    Ok(Exit::failure_if(report.thresholds_failed))
}

async fn rollback_drill_cmd(args: crate::cli::RollbackDrillArgs) -> Result<Exit, Error> {
    let token = admin_token(args.admin_token_file.as_deref())?.ok_or_else(|| {
        ConfigError::invalid(
            "SHADOWBENCH_ADMIN_TOKEN",
            "set it (or --admin-token-file) to the token the service was started with",
        )
    })?;
    let report = shadowbench::serve::drill::rollback(&args.options(token)).await?;
    print_lines(report.lines());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(Exit::failure_if(!report.complete()))
}

/// `run SCENARIO.toml [--out DIR]`: the report is written and summarised even when the
/// workload stopped on bad input (then the exit code is 2).
async fn run_cmd(backends: &Backends, args: crate::cli::RunArgs) -> Result<Exit, Error> {
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
        write_file(
            junit,
            report::junit::render(&report.scenario.name, &verdict),
        )?;
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
) -> Result<Exit, Error> {
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
    print_lines(v.lines());
}

/// `gate REPORT.json [--criteria FILE] [--junit FILE]`: re-evaluates a saved report.
async fn gate_cmd(args: crate::cli::GateArgs) -> Result<Exit, Error> {
    use shadowbench::{gate, report};
    let r = report::json::read(&args.report)?;
    let criteria = match &args.criteria {
        Some(p) => gate::Criteria::load(p)?,
        // The criteria the run itself was gated with, else the migration plan's defaults.
        None => r.gate_criteria.clone().unwrap_or_default(),
    };
    let verdict = gate::evaluate(&r.gate_input(), &criteria);
    print_verdict(&verdict);
    let mut exit = verdict.outcome.exit_code();
    if let Some(base) = &args.baseline {
        let b = report::json::read(base)?;
        let cmp = shadowbench::compare::compare(&b, &r, &gate::RegressionPolicy::default());
        print!("{}", cmp.render());
        if cmp.regressions() > 0 && exit == Exit::Pass {
            exit = Exit::Failure;
        }
    }
    if let Some(junit) = &args.junit {
        write_file(junit, report::junit::render(&r.scenario.name, &verdict))?;
    }
    Ok(exit)
}

/// `compare A B`: B against baseline A; exit 1 when B regressed.
async fn compare_cmd(args: crate::cli::CompareArgs) -> Result<Exit, Error> {
    use shadowbench::report;
    let a = report::json::read(&args.baseline)?;
    let b = report::json::read(&args.current)?;
    let cmp =
        shadowbench::compare::compare(&a, &b, &shadowbench::gate::RegressionPolicy::default());
    print!("{}", cmp.render());
    Ok(Exit::failure_if(cmp.regressions() > 0))
}

//! Arming and lifting a run's faults on time, and always lifting them: the per-run
//! toxiproxy proxies ([`Proxies`]) are deleted, and every fault still in force is lifted
//! by [`FaultGuard`], when the run ends, fails, panics or is cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::toxiproxy::{FaultError, Toxiproxy, toxic_for};
use super::{AdapterPoll, Fault, FaultKind, OpSample, Target, process};
use crate::connect::Backends;
use crate::measure::collector::{Event, EventTap};

/// Names proxies uniquely across the runs of one process.
static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// One proxy made for this run.
#[derive(Debug, Clone)]
struct RunProxy {
    target: Target,
    name: String,
    listen: String,
    upstream: String,
}

/// Which store each toxiproxy proxy of the run stands in front of.
pub type Routes = Vec<(Target, String)>;

/// The run's own toxiproxy proxies, one per faulted store (per OpenSearch host), each
/// listening on a fresh loopback port in front of the configured address. Only this
/// run's connections pass through them, so a fault never touches other clients.
pub struct Proxies {
    client: Option<Toxiproxy>,
    made: Vec<RunProxy>,
}

impl Proxies {
    /// No proxies (a run without network faults).
    pub fn none() -> Self {
        Proxies {
            client: None,
            made: Vec::new(),
        }
    }

    /// Creates a proxy for every store a network fault in `faults` targets, and returns
    /// `backends` with those stores reached through them.
    pub async fn route<'a>(
        faults: impl IntoIterator<Item = &'a Fault>,
        backends: &Backends,
    ) -> Result<(Proxies, Backends), FaultError> {
        let mut targets: Vec<Target> = faults
            .into_iter()
            .filter(|f| f.kind.is_network())
            .map(|f| f.target)
            .collect();
        targets.sort();
        targets.dedup();
        let mut routed = backends.clone();
        if targets.is_empty() {
            return Ok((Proxies::none(), routed));
        }
        let client = Toxiproxy::from_env()?;
        client.version().await?;
        let mut proxies = Proxies {
            client: Some(client.clone()),
            made: Vec::new(),
        };
        let run = format!(
            "sbrun_{}_{}",
            std::process::id(),
            RUN_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        for target in targets {
            match target {
                Target::Pgvector => {
                    let pg = routed.pg.as_mut().ok_or_else(|| {
                        FaultError::Routing("a pgvector fault needs a PostgreSQL connection".into())
                    })?;
                    let mut url = url::Url::parse(pg.dsn.expose()).map_err(|e| {
                        FaultError::Routing(format!(
                            "a pgvector fault routes the DSN through toxiproxy, which needs a \
                             postgres:// URL ({e})"
                        ))
                    })?;
                    let p = proxies.make(&client, &run, target, 0, &url, 5432).await?;
                    redirect(&mut url, &p.listen)?;
                    pg.dsn = crate::config::Secret::new(url.to_string());
                }
                Target::Opensearch => {
                    let os = routed.os.as_mut().ok_or_else(|| {
                        FaultError::Routing("an OpenSearch fault needs OpenSearch hosts".into())
                    })?;
                    for (i, host) in os.hosts.iter_mut().enumerate() {
                        let default = if host.scheme() == "https" { 443 } else { 80 };
                        let p = proxies
                            .make(&client, &run, target, i, host, default)
                            .await?;
                        redirect(host, &p.listen)?;
                    }
                }
            }
        }
        Ok((proxies, routed))
    }

    async fn make(
        &mut self,
        client: &Toxiproxy,
        run: &str,
        target: Target,
        i: usize,
        url: &url::Url,
        default_port: u16,
    ) -> Result<RunProxy, FaultError> {
        let host = url
            .host_str()
            .ok_or_else(|| FaultError::Routing(format!("{} has no host", target.as_str())))?;
        let upstream = format!("{host}:{}", url.port().unwrap_or(default_port));
        let name = format!("{run}_{}_{i}", target.as_str());
        let info = client.create_proxy(&name, "127.0.0.1:0", &upstream).await?;
        let p = RunProxy {
            target,
            name,
            listen: info.listen,
            upstream,
        };
        self.made.push(p.clone());
        Ok(p)
    }

    /// `(target, proxy name)` of every proxy made.
    pub fn routes(&self) -> Routes {
        self.made
            .iter()
            .map(|p| (p.target, p.name.clone()))
            .collect()
    }

    fn for_target(&self, target: Target) -> Vec<&RunProxy> {
        self.made.iter().filter(|p| p.target == target).collect()
    }

    fn client(&self) -> Option<&Toxiproxy> {
        self.client.as_ref()
    }

    /// Deletes the proxies (what `Drop` does too, blocking).
    pub async fn close(mut self) -> Result<(), FaultError> {
        let made = std::mem::take(&mut self.made);
        delete_all(self.client.as_ref(), &made).await
    }
}

async fn delete_all(client: Option<&Toxiproxy>, made: &[RunProxy]) -> Result<(), FaultError> {
    let Some(client) = client else { return Ok(()) };
    let mut first_err = None;
    for p in made {
        if let Err(e) = client.delete_proxy(&p.name).await {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

impl Drop for Proxies {
    fn drop(&mut self) {
        if self.made.is_empty() {
            return;
        }
        let made = std::mem::take(&mut self.made);
        let client = self.client.clone();
        block_on_side(async move {
            if let Err(e) = delete_all(client.as_ref(), &made).await {
                tracing::warn!("could not delete the run's toxiproxy proxies: {e}");
            }
        });
    }
}

/// Runs `f` to completion on a thread of its own with its own runtime: cleanup from
/// `Drop`, which cannot await and may run inside (or after) the caller's runtime.
fn block_on_side(f: impl Future<Output = ()> + Send + 'static) {
    let t = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(f),
            Err(e) => tracing::warn!("no runtime to lift faults with: {e}"),
        }
    });
    let _ = t.join();
}

fn redirect(url: &mut url::Url, listen: &str) -> Result<(), FaultError> {
    let port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| FaultError::Routing(format!("toxiproxy listens on {listen:?}")))?;
    url.set_host(Some("127.0.0.1"))
        .and_then(|_| {
            url.set_port(Some(port))
                .map_err(|_| url::ParseError::InvalidPort)
        })
        .map_err(|e| FaultError::Routing(format!("cannot point {url} at the proxy: {e}")))
}

/// One fault of the run as it went.
#[derive(Debug, Clone)]
pub struct Armed {
    pub fault: Fault,
    pub via: String,
    /// From the run's start.
    pub applied_at: Option<Duration>,
    pub lifted_at: Option<Duration>,
    pub error: Option<String>,
}

/// How to lift a fault in force.
#[derive(Debug, Clone)]
enum Undo {
    Toxic { proxy: String, toxic: String },
    Enable { proxy: String },
    Thaw { pids: Vec<u32> },
    Restart,
}

#[derive(Default)]
struct State {
    armed: Vec<Armed>,
    /// Faults in force: index into `armed`, and how to lift each.
    active: Vec<(usize, Vec<Undo>)>,
}

/// Arms a leg's faults on schedule and lifts every one still in force when it is
/// disarmed, dropped or cancelled.
pub struct FaultGuard {
    client: Option<Toxiproxy>,
    state: Arc<Mutex<State>>,
    start: Instant,
}

impl FaultGuard {
    /// Faults are timed from `start` (the run's start).
    pub fn new(faults: &[Fault], proxies: &Proxies, start: Instant) -> Self {
        let armed = faults
            .iter()
            .map(|f| {
                let via = if f.kind.is_network() {
                    let ps: Vec<String> = proxies
                        .for_target(f.target)
                        .iter()
                        .map(|p| format!("{} ({} → {})", p.name, p.listen, p.upstream))
                        .collect();
                    format!("toxiproxy {}", ps.join(", "))
                } else {
                    "signal to the local process".to_string()
                };
                Armed {
                    fault: f.clone(),
                    via,
                    applied_at: None,
                    lifted_at: None,
                    error: None,
                }
            })
            .collect();
        FaultGuard {
            client: proxies.client().cloned(),
            state: Arc::new(Mutex::new(State {
                armed,
                active: Vec::new(),
            })),
            start,
        }
    }

    /// Runs the schedule: each fault is armed at `start + warmup + at` and lifted
    /// `duration` later. Cancel-safe: whatever is in force when this future is dropped
    /// stays in the guard's list for [`FaultGuard::disarm`] or `Drop`.
    pub async fn run(&self, proxies: &Proxies, warmup: Duration) {
        let n = self.state.lock().expect("fault state").armed.len();
        let tasks = (0..n).map(|i| self.one(i, proxies, warmup));
        futures::future::join_all(tasks).await;
    }

    async fn one(&self, i: usize, proxies: &Proxies, warmup: Duration) {
        let fault = self.state.lock().expect("fault state").armed[i]
            .fault
            .clone();
        tokio::time::sleep_until((self.start + warmup + fault.at).into()).await;
        if let Err(e) = self.arm(i, &fault, proxies).await {
            // Whatever part of it went in (one of several hosts) is lifted by disarm.
            self.state.lock().expect("fault state").armed[i].error = Some(e.to_string());
            return;
        }
        tokio::time::sleep_until((self.start + warmup + fault.at + fault.duration).into()).await;
        self.lift(i).await;
    }

    async fn arm(&self, i: usize, fault: &Fault, proxies: &Proxies) -> Result<(), FaultError> {
        let mut undos = Vec::new();
        let result = async {
            match fault.kind {
                FaultKind::Freeze | FaultKind::Kill => {
                    let mut pids = process::pids(fault.target)?;
                    let sig = if fault.kind == FaultKind::Freeze {
                        process::signal(&pids, "STOP")?;
                        undos.push(Undo::Thaw { pids: pids.clone() });
                        "STOP"
                    } else {
                        // The postmaster (or the JVM) only; PostgreSQL's backends exit when it dies.
                        pids.truncate(1);
                        process::signal(&pids, "KILL")?;
                        undos.push(Undo::Restart);
                        "KILL"
                    };
                    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                    self.state.lock().expect("fault state").armed[i].via = format!(
                        "SIG{sig} to {} pid {}",
                        fault.target.as_str(),
                        pids.join(", ")
                    );
                    Ok(())
                }
                _ => {
                    let client = self.client.as_ref().ok_or_else(|| {
                        FaultError::Routing("no toxiproxy proxy for this fault".into())
                    })?;
                    for p in proxies.for_target(fault.target) {
                        if fault.kind == FaultKind::Down {
                            client.set_enabled(&p.name, false).await?;
                            undos.push(Undo::Enable {
                                proxy: p.name.clone(),
                            });
                        } else {
                            let name = format!("sb_fault_{i}");
                            let toxic = toxic_for(fault, &name).expect("a toxic kind");
                            client.add_toxic(&p.name, &toxic).await?;
                            undos.push(Undo::Toxic {
                                proxy: p.name.clone(),
                                toxic: name,
                            });
                        }
                    }
                    Ok(())
                }
            }
        }
        .await;
        let mut st = self.state.lock().expect("fault state");
        if result.is_ok() {
            st.armed[i].applied_at = Some(self.start.elapsed());
        }
        if !undos.is_empty() {
            st.active.push((i, undos));
        }
        result
    }

    /// Lifts fault `i` if it is in force.
    async fn lift(&self, i: usize) {
        let undos = {
            let mut st = self.state.lock().expect("fault state");
            let Some(pos) = st.active.iter().position(|(j, _)| *j == i) else {
                return;
            };
            st.active.remove(pos).1
        };
        let restart = undos.iter().any(|u| matches!(u, Undo::Restart));
        // A kill's fault ends when the restart begins; the restart is recovery.
        let begun = self.start.elapsed();
        let errors = run_undos(self.client.as_ref(), undos).await;
        let mut st = self.state.lock().expect("fault state");
        let a = &mut st.armed[i];
        a.lifted_at = Some(if restart { begun } else { self.start.elapsed() });
        if !errors.is_empty() {
            let e = format!("lifting it: {}", errors.join("; "));
            a.error = Some(match a.error.take() {
                Some(prev) => format!("{prev}; {e}"),
                None => e,
            });
        }
    }

    /// Lifts every fault still in force (the run ended before their windows did, or
    /// failed), then returns how each fault went.
    pub async fn disarm(self) -> Vec<Armed> {
        let ids: Vec<usize> = {
            let st = self.state.lock().expect("fault state");
            st.active.iter().map(|(i, _)| *i).collect()
        };
        for i in ids {
            self.lift(i).await;
        }
        let st = self.state.lock().expect("fault state");
        st.armed.clone()
    }
}

async fn run_undos(client: Option<&Toxiproxy>, undos: Vec<Undo>) -> Vec<String> {
    let mut errors = Vec::new();
    for u in undos {
        let r = match (&u, client) {
            (Undo::Toxic { proxy, toxic }, Some(c)) => c.remove_toxic(proxy, toxic).await,
            (Undo::Enable { proxy }, Some(c)) => c.set_enabled(proxy, true).await,
            (Undo::Thaw { pids }, _) => process::signal(pids, "CONT"),
            (Undo::Restart, _) => process::restart().await,
            (_, None) => Err(FaultError::Routing("no toxiproxy client".into())),
        };
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    errors
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        let active = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.active),
            // A panic while the lock was held: lift what the list still holds anyway.
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().active),
        };
        if active.is_empty() {
            return;
        }
        let client = self.client.clone();
        block_on_side(async move {
            for (_, undos) in active {
                for e in run_undos(client.as_ref(), undos).await {
                    tracing::warn!("lifting a fault after the run: {e}");
                }
            }
        });
    }
}

// ---- what the analysis reads during the run ----------------------------------------

/// Batches of the collector's tap this recorder may queue before the collector drops
/// (and counts) them: as many as samples.parquet's writer queues, so that putting the
/// recorder in front of it does not multiply what a slow disk can hold in memory. The
/// recorder itself only copies a few numbers per operation and never falls behind.
const RECORDER_BATCHES: usize = 64;

/// Side samples the recorder keeps at most (56 bytes each: about 220 MB); beyond, the
/// rest are counted and the report says the figures around the faults lack them.
pub const MAX_SAMPLES: usize = 4_000_000;

/// What the recorder kept.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Side samples of measured operations (intended at or after the warmup).
    pub samples: Vec<OpSample>,
    /// Side samples not kept: more than [`MAX_SAMPLES`].
    pub over_cap: u64,
}

/// Copies every measured operation's side samples off the collector's tap (for
/// [`super::analyze`]), forwarding each batch to the tap it replaces (samples.parquet),
/// if any.
pub struct Recorder {
    thread: std::thread::JoinHandle<Recorded>,
}

impl Recorder {
    /// The tap to give the collector, and the recorder behind it; operations intended
    /// before `warmup` are forwarded but not kept.
    pub fn spawn(forward: Option<EventTap>, warmup: Duration) -> (EventTap, Recorder) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(RECORDER_BATCHES);
        let thread = std::thread::Builder::new()
            .name("fault-recorder".into())
            .spawn(move || {
                let mut out = Recorded::default();
                for batch in rx {
                    for event in &batch {
                        let Event::Done {
                            intended, sides, ..
                        } = event;
                        if *intended < warmup {
                            continue;
                        }
                        for s in sides {
                            if out.samples.len() >= MAX_SAMPLES {
                                out.over_cap += 1;
                                continue;
                            }
                            out.samples.push(OpSample {
                                side: s.side,
                                intended: *intended,
                                finished: s.finished,
                                latency: s.latency,
                                ok: s.outcome.is_ok(),
                            });
                        }
                    }
                    if let Some(EventTap(f)) = &forward {
                        // Blocking: the parquet writer's own channel is the back-pressure.
                        let _ = f.send(batch);
                    }
                }
                out
            })
            .expect("spawn the fault recorder thread");
        (EventTap(tx), Recorder { thread })
    }

    /// What was kept, once every copy of the tap is dropped (the run is over).
    pub fn finish(self) -> Recorded {
        match self.thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// How often the adapter's breaker and outbox are read during a faulted run.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// Reads the adapter's breaker state and outbox depth every [`POLL_EVERY`].
pub struct AdapterPoller {
    task: tokio::task::JoinHandle<()>,
    polls: Arc<Mutex<Vec<AdapterPoll>>>,
}

impl AdapterPoller {
    pub fn spawn(adapter: Arc<crate::adapter::VectorStoreAdapter>, start: Instant) -> Self {
        let polls = Arc::new(Mutex::new(Vec::new()));
        let out = polls.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let at = start.elapsed();
                let breaker_closed =
                    adapter.breaker_state() == crate::adapter::breaker::BreakerState::Closed;
                // The outbox lives in pgvector: a faulted pgvector must not stall the poll.
                let outbox_depth = tokio::time::timeout(POLL_EVERY, adapter.outbox().depth())
                    .await
                    .ok()
                    .and_then(Result::ok);
                out.lock().expect("polls").push(AdapterPoll {
                    at,
                    breaker_closed,
                    outbox_depth,
                });
            }
        });
        AdapterPoller { task, polls }
    }

    pub fn finish(self) -> Vec<AdapterPoll> {
        self.task.abort();
        std::mem::take(&mut *self.polls.lock().expect("polls"))
    }
}

impl Drop for AdapterPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

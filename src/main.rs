//! The `kairos` binary: wires configuration, telemetry and the app; subcommands for
//! operations and evaluation.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos::config::{ConfigSource, Settings};

/// mimalloc: ranking allocates many small, short-lived maps and vectors per request, where
/// the system allocator spent about a third of the service's CPU (perf, docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kairos", version, about = "What to push to each shopper, and when.")]
struct Cli {
    /// Directory holding default.toml (and local.toml, {KAIROS_ENV}.toml).
    #[arg(long, global = true, env = "KAIROS_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Validate the configuration and exit (0 valid, 1 invalid).
    CheckConfig,
    /// Load-test the HTTP API (or raw COPY) and print throughput and latency.
    Loadgen(kairos::tools::loadgen::LoadgenOptions),
    /// A minimal axum server answering GET and POST with fixed bodies: the yardstick of
    /// scripts/bench.
    Baseline(kairos::tools::baseline::BaselineOptions),
    /// A paced mixed load on replicas sharing one PostgreSQL, then an audit of the store
    /// (see scripts/soak); exit 1 when a check fails.
    Soak(kairos::tools::soak::SoakOptions),
    /// Write a synthetic catalog, users and histories into the configured store.
    Datagen(kairos::tools::datagen::DatagenOptions),
    /// Replay a real behaviour log through profile and scoring; write docs/EVALUATION.md.
    Eval(kairos::tools::eval::EvalOptions),
    /// Estimate push policies off-policy (IPS, SNIPS, DR) on the Open Bandit logs; write docs/OFFPOLICY.md.
    EvalPush(kairos::tools::eval_push::EvalPushOptions),
    /// Simulate the push policy against fixed frequencies over real histories; write docs/SIMULATION.md.
    Simulate(kairos::tools::simulate::SimulateOptions),
    /// Write a behaviour log with a planted behaviour (repeat or sequential), for `eval`.
    Synth(kairos::tools::synth::SynthOptions),
    /// Train the learned ranker (on the event log) and the push-response model (on the push
    /// log) once, as the service's trainer does every `tuning.model.retrain_every_hours`;
    /// store them, deploy each if it wins.
    Train,
    /// Time the scheduler planning every due user of the configured store (after `datagen`).
    BenchScheduler,
    /// Start the service on a temporary store, load the Taobao sample over HTTP, show three users.
    Demo(kairos::tools::demo::DemoOptions),
}

fn load(cli: &Cli) -> anyhow::Result<(Settings, ConfigSource)> {
    let source = ConfigSource::from_env(&cli.config_dir);
    let settings = Settings::load(&source).context("invalid configuration")?;
    Ok((settings, source))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => {
            let (settings, source) = load(&cli)?;
            kairos::telemetry::init_tracing(&settings.telemetry);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let app = kairos::startup::App::build(settings, source).await?;
                app.run_until_stopped(kairos::startup::shutdown_signal()).await
            })
        }
        Command::Loadgen(opts) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = rt.block_on(kairos::tools::loadgen::run(opts.clone()))?;
            println!("{report}");
            Ok(())
        }
        Command::Baseline(opts) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(kairos::tools::baseline::run(opts.clone()))
        }
        Command::Soak(opts) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            if !rt.block_on(kairos::tools::soak::run(opts.clone()))? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Datagen(opts) => {
            let (settings, _) = load(&cli)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let store = kairos::store::connect(&settings.database).await?;
                let (items, users, events) = kairos::tools::datagen::run(store, opts).await?;
                println!("wrote {items} items, {users} users, {events} events to the {} store",
                    if settings.database.url.is_some() { "postgres" } else { "sqlite" });
                anyhow::Ok(())
            })
        }
        Command::Eval(opts) => {
            let opts = kairos::tools::eval::EvalOptions { config_dir: cli.config_dir.clone(), ..opts.clone() };
            let report = kairos::tools::eval::run(&opts)?;
            println!("{}", report.headline());
            println!("report: {}, plot: {}", opts.out.display(), opts.plot.display());
            Ok(())
        }
        Command::EvalPush(opts) => {
            let report = kairos::tools::eval_push::run(opts)?;
            println!("{}", report.summary());
            println!("{:.1} s; report: {}", report.runtime_secs, opts.out.display());
            Ok(())
        }
        Command::Simulate(opts) => {
            let opts = kairos::tools::simulate::SimulateOptions { config_dir: cli.config_dir.clone(), ..opts.clone() };
            let report = kairos::tools::simulate::run(&opts)?;
            println!("{}", report.table());
            println!("simulated in {:.1} s; report: {}", report.runtime.as_secs_f64(), opts.out.display());
            Ok(())
        }
        Command::Synth(opts) => {
            let n = kairos::tools::synth::run(opts)?;
            println!("wrote {n} events to {}", opts.out.display());
            Ok(())
        }
        Command::Demo(opts) => {
            let opts = kairos::tools::demo::DemoOptions { config_dir: cli.config_dir.clone(), ..opts.clone() };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(kairos::tools::demo::run(opts))
        }
        Command::Train => {
            let (settings, _) = load(&cli)?;
            kairos::telemetry::init_tracing(&settings.telemetry);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                use std::sync::Arc;
                let store = kairos::store::connect(&settings.database).await?;
                let tuning = Arc::new(kairos::config::LiveTuning::new(settings.tuning.clone()));
                let engine = Arc::new(kairos::engine::Engine::new(store.clone(), tuning.clone(), &settings.engine, kairos::clock::Clock::default()));
                engine.refresh(chrono::TimeDelta::zero()).await?;
                let trainer = kairos::engine::trainer::Trainer::new(engine, store, tuning, kairos::clock::Clock::default());
                let run = trainer.train_now().await?;
                println!("{}", serde_json::to_string_pretty(&run)?);
                anyhow::Ok(())
            })
        }
        Command::BenchScheduler => {
            let (settings, _) = load(&cli)?;
            kairos::telemetry::init_tracing(&settings.telemetry);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(bench_scheduler(settings))
        }
        Command::CheckConfig => match load(&cli) {
            Ok((settings, _)) => {
                println!(
                    "configuration in {} is valid (store: {})",
                    cli.config_dir.display(),
                    if settings.database.url.is_some() { "postgres" } else { "embedded sqlite" }
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{e:#}");
                std::process::exit(1);
            }
        },
    }
}

/// Plans every due user in rounds of `tuning.scheduler.workers` concurrent ticks (as the
/// service's scheduler runs them), and prints the rate.
async fn bench_scheduler(settings: Settings) -> anyhow::Result<()> {
    use std::sync::Arc;
    let store = kairos::store::connect(&settings.database).await?;
    let tuning = Arc::new(kairos::config::LiveTuning::new(settings.tuning.clone()));
    let engine = Arc::new(kairos::engine::Engine::new(store.clone(), tuning.clone(), &settings.engine, kairos::clock::Clock::default()));
    let t = std::time::Instant::now();
    let events = engine.refresh(chrono::TimeDelta::zero()).await?;
    println!("statistics and catalog loaded: {events} events in {:.1} s", t.elapsed().as_secs_f64());
    let scheduler = Arc::new(kairos::push::scheduler::Scheduler::new(store, engine, tuning, kairos::clock::Clock::default()));
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    let workers = settings.tuning.scheduler.workers;
    let (mut users, mut pushes, mut ticks) = (0usize, 0u64, 0u32);
    loop {
        let mut worked = false;
        for outcome in scheduler.clone().run_ticks(workers as usize, now).await {
            if let kairos::push::scheduler::Outcome::Worked { claimed, pushes: p, .. } = outcome? {
                (users, pushes, ticks, worked) = (users + claimed, pushes + p, ticks + 1, true);
            }
        }
        if !worked {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "planned {users} due users in {ticks} ticks, {secs:.1} s: {:.0} users/s; {pushes} pushes written (batch_size {}, {workers} workers)",
        users as f64 / secs,
        settings.tuning.scheduler.batch_size
    );
    Ok(())
}

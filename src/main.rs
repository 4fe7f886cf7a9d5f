//! The `cgm-hub` binary: subcommands over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cgm_hub::app::{shutdown_signal, App};
use cgm_hub::config::Settings;
use cgm_hub::telemetry;

/// mimalloc instead of the system allocator: a request allocates many small,
/// short-lived buffers, and glibc's malloc was the largest user-space cost in
/// profiles of `GET latest` under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cgm-hub",
    version,
    about = "Continuous glucose monitor data hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (and, with --demo, the synthetic demo patients).
    Serve {
        /// Write synthetic readings for a few demo patients (same as DEMO=true).
        #[arg(long)]
        demo: bool,
        /// Listen address; overrides BIND_ADDR / PORT.
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// SQLite file; overrides SQLITE_PATH.
        #[arg(long)]
        sqlite_path: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::from_process_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cgm-hub: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve {
            demo,
            bind,
            sqlite_path,
        } => {
            settings.demo |= demo;
            if let Some(bind) = bind {
                settings.bind_addr = bind;
            }
            if let Some(path) = sqlite_path {
                let cgm_hub::config::StorageSettings::Sqlite { durability, .. } = settings.storage;
                settings.storage = cgm_hub::config::StorageSettings::Sqlite { path, durability };
            }
            serve(settings)
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    let _log_guard = telemetry::init_logging(&settings);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cgm-hub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if settings.auth_disabled {
            tracing::warn!("AUTH_DISABLED=true: every request acts as admin (development only)");
        }
        let bind = settings.bind_addr;
        let app = match App::build(settings) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("cgm-hub: cannot open storage: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cgm-hub: cannot listen on {bind}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match app.serve(listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cgm-hub: server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

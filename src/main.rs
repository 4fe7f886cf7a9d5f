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
    /// Bearer tokens for development and testing.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run a stand-in for an outside service (for development and testing).
    Simulate {
        #[command(subcommand)]
        service: Simulated,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print an HS256 token signed with AUTH_JWT_SECRET (plus AUTH_ISSUER and
    /// AUTH_AUDIENCE when set).
    Mint {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// Comma-separated roles: patient, caregiver, clinician, admin, service.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Lifetime, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum Simulated {
    /// A Dexcom API simulator: OAuth login (auto-consent with &sim_user=NAME),
    /// token grants, v2/v3 egvs, dataRange and devices, and fault knobs at /sim/faults.
    Dexcom {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:5080")]
        bind: std::net::SocketAddr,
        /// Delay before a reading becomes visible, like Dexcom's (e.g. 1h, 3h).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        data_delay: std::time::Duration,
        /// Lifetime of issued access tokens (e.g. 2h, 30s).
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        access_token_ttl: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Simulate {
        service:
            Simulated::Dexcom {
                bind,
                data_delay,
                access_token_ttl,
            },
    } = cli.command
    {
        return simulate_dexcom(bind, data_delay, access_token_ttl);
    }
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
                let durability = match settings.storage {
                    cgm_hub::config::StorageSettings::Sqlite { durability, .. } => durability,
                    _ => Default::default(),
                };
                settings.storage = cgm_hub::config::StorageSettings::Sqlite { path, durability };
            }
            serve(settings)
        }
        Command::Token {
            action: TokenAction::Mint { sub, roles, ttl },
        } => mint(&settings, &sub, &roles, ttl),
        Command::Simulate { .. } => unreachable!("handled before reading settings"),
    }
}

fn simulate_dexcom(
    bind: std::net::SocketAddr,
    data_delay: std::time::Duration,
    access_token_ttl: std::time::Duration,
) -> ExitCode {
    use cgm_hub::simulator::dexcom::{serve, DexcomSimulator, SimConfig};
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cgm-hub: cannot listen on {bind}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let config = SimConfig {
            data_delay,
            access_token_ttl,
            ..SimConfig::default()
        };
        eprintln!(
            "Dexcom simulator on http://{bind} (client_id {}, client_secret {}); \
             set DEXCOM_API_BASE_URL=http://{bind} for cgm-hub",
            config.client_id, config.client_secret
        );
        match serve(listener, DexcomSimulator::new(config), shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cgm-hub: simulator error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn serve(settings: Settings) -> ExitCode {
    let _log_guard = telemetry::init_logging(&settings);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        if settings.auth_disabled {
            tracing::warn!("AUTH_DISABLED=true: every request acts as admin (development only)");
        }
        let bind = settings.bind_addr;
        let app = match App::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("cgm-hub: {e}");
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

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .inspect_err(|e| eprintln!("cgm-hub: cannot start the async runtime: {e}"))
        .ok()
}

fn mint(settings: &Settings, sub: &str, roles: &[String], ttl: std::time::Duration) -> ExitCode {
    use cgm_hub::auth::{jwt::mint_hs256, Role};
    let Some(secret) = &settings.auth_jwt_secret else {
        eprintln!("cgm-hub: set AUTH_JWT_SECRET to mint a token");
        return ExitCode::from(2);
    };
    let mut parsed = Vec::new();
    for raw in roles {
        match Role::parse(raw.trim()) {
            Some(role) => parsed.push(role),
            None => {
                eprintln!(
                    "cgm-hub: unknown role {raw:?} (patient, caregiver, clinician, admin, service)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let token = mint_hs256(
        secret.expose(),
        sub,
        &parsed,
        ttl,
        settings.auth_issuer.as_deref(),
        settings.auth_audience.as_deref(),
    );
    match token {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cgm-hub: {e}");
            ExitCode::from(2)
        }
    }
}

//! The `cgm-hub` binary: subcommands over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cgm_hub::app::{shutdown_signal, App};
use cgm_hub::config::Settings;
use cgm_hub::operator::{self, Output};
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
    /// Check the settings, or print their reference.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Apply pending store migrations (or create absent DynamoDB tables) and exit;
    /// `serve` does the same at start-up. With SQLite, stop the service first.
    Migrate,
    /// Users the service knows (those with a connection) and built-in accounts.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Users' links to data sources.
    Connections {
        #[command(subcommand)]
        action: ConnectionsAction,
    },
    /// Queue a manual sync job for a user (a running instance's workers run it).
    Sync {
        #[arg(long)]
        user: String,
        /// Start of the range (YYYY-MM-DD or RFC 3339); none: incremental.
        #[arg(long)]
        start_date: Option<String>,
        /// End of the range (exclusive; default now).
        #[arg(long)]
        end_date: Option<String>,
        /// Wait until the job has finished (at most this long, e.g. 5m); exit 1
        /// unless it succeeded.
        #[arg(long, num_args = 0..=1, default_missing_value = "10m", value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Sync jobs.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Import a file of readings (and journal entries) for a user.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// GET /health of the local instance (or --url); exit 0 only on 200 (for
    /// container health checks).
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Parse every setting, print them (secrets redacted), then connect to the store
    /// and the event bus. Exit 0: ready; 2: a setting is invalid; 1: a dependency is not.
    Check,
    /// Print the configuration reference (docs/configuration.md), or with --env the
    /// annotated .env.example.
    Reference {
        #[arg(long)]
        env: bool,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Every user with a connection: statuses, last sync, newest reading.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create a built-in account (docs/accounts.md). The password is read from
    /// standard input (one line; prompted for on a terminal), never from the
    /// command line.
    Create {
        #[arg(long)]
        email: String,
        /// Also give the account the admin role.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Disable a built-in account (docs/accounts.md): no login or refresh, its
    /// sessions revoked, its access tokens refused within ACCOUNT_STATUS_CACHE_SECONDS.
    Disable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled built-in account again (docs/accounts.md): it can log
    /// in; the sessions revoked by the disabling stay revoked.
    Enable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConnectionsAction {
    /// Connections with their status, last sync and last error.
    List {
        #[arg(long)]
        user: Option<String>,
        /// connected, reauth_required or disconnected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JobsAction {
    /// One job: status, range, counts, errors, timings.
    Show {
        job_id: String,
        #[arg(long)]
        json: bool,
    },
    /// A user's latest jobs, newest first.
    List {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// An Apple Health export (export.zip, or the export.xml in it): blood glucose
    /// as readings, sleep analysis and workouts for the journal. Streams the file;
    /// stores nothing unless it parses to its end; importing it again stores
    /// nothing new.
    AppleHealth {
        #[arg(long)]
        user: String,
        /// export.zip or export.xml.
        file: std::path::PathBuf,
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
    // Commands that need no settings (or must work without valid ones).
    match &cli.command {
        Command::Simulate {
            service:
                Simulated::Dexcom {
                    bind,
                    data_delay,
                    access_token_ttl,
                },
        } => return simulate_dexcom(*bind, *data_delay, *access_token_ttl),
        Command::Config {
            action: ConfigAction::Reference { env },
        } => {
            use cgm_hub::config::{env_example, markdown_reference};
            print!(
                "{}",
                if *env {
                    env_example()
                } else {
                    markdown_reference()
                }
            );
            return ExitCode::SUCCESS;
        }
        Command::Healthcheck { url } => {
            // A container's health check must not depend on every setting parsing.
            let settings = Settings::from_process_env().ok();
            return operate(|| cgm_hub::operator::healthcheck(settings.as_ref(), url.as_deref()));
        }
        _ => {}
    }
    let mut settings = match Settings::from_process_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cgm-hub: {e}");
            return ExitCode::from(2);
        }
    };
    let output = |json: bool| if json { Output::Json } else { Output::Table };
    let s = &settings;
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
        Command::Config {
            action: ConfigAction::Check,
        } => operate(|| operator::config_check(s)),
        Command::Migrate => operate(|| operator::migrate(s)),
        Command::Users {
            action: UsersAction::List { json },
        } => operate(|| operator::users_list(s, output(json))),
        Command::Users {
            action: UsersAction::Create { email, admin, json },
        } => match read_password() {
            Some(password) => {
                operate(|| operator::users_create(s, &email, &password, admin, output(json)))
            }
            None => ExitCode::from(2),
        },
        Command::Users {
            action: UsersAction::Disable { email, json },
        } => operate(|| operator::users_disable(s, &email, output(json))),
        Command::Users {
            action: UsersAction::Enable { email, json },
        } => operate(|| operator::users_enable(s, &email, output(json))),
        Command::Connections {
            action: ConnectionsAction::List { user, status, json },
        } => operate(|| {
            operator::connections_list(s, user.as_deref(), status.as_deref(), output(json))
        }),
        Command::Sync {
            user,
            start_date,
            end_date,
            wait,
            json,
        } => operate(|| {
            operator::sync(
                s,
                &user,
                start_date.as_deref(),
                end_date.as_deref(),
                wait,
                output(json),
            )
        }),
        Command::Jobs {
            action: JobsAction::Show { job_id, json },
        } => operate(|| operator::jobs_show(s, &job_id, output(json))),
        Command::Jobs {
            action: JobsAction::List { user, limit, json },
        } => operate(|| operator::jobs_list(s, &user, limit, output(json))),
        Command::Import {
            source: ImportSource::AppleHealth { user, file },
        } => operate(|| operator::import_apple_health(s, &user, &file)),
        Command::Simulate { .. }
        | Command::Healthcheck { .. }
        | Command::Config {
            action: ConfigAction::Reference { .. },
        } => unreachable!("handled before reading settings"),
    }
}

/// Runs an operator command: errors to stderr, exit 2 for bad input, 1 otherwise.
fn operate<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), operator::OperatorError>>,
{
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(command()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cgm-hub: {e}");
            ExitCode::from(e.exit_code())
        }
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

/// One line of standard input (without its line ending), after a prompt on
/// standard error when it is a terminal. None (and a message) when nothing
/// could be read.
fn read_password() -> Option<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (8-256 characters): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    match stdin.lock().read_line(&mut line) {
        Ok(n) if n > 0 => {
            let end = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(end);
            Some(line)
        }
        _ => {
            eprintln!("cgm-hub: no password on standard input");
            None
        }
    }
}

fn mint(settings: &Settings, sub: &str, roles: &[String], ttl: std::time::Duration) -> ExitCode {
    use cgm_hub::auth::jwt::mint_hs256;
    use cgm_hub::records::roles::Role;
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

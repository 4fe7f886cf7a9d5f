//! The compiled `cgm-hub` binary, run as a command or started as a server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::eventually;

/// Runs `cgm-hub ARGS` to completion in `dir`, with nothing in its environment
/// but `envs` (a command, not a server: see `Binary` for that).
pub fn run_cgm_hub(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cgm-hub"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run cgm-hub")
}

/// The compiled `cgm-hub` binary, started with a fresh environment.
pub struct Binary {
    pub child: Child,
    pub base: String,
    /// Every line the process wrote to stdout (its JSON logs), so far.
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts `cgm-hub serve` on a port the OS picks (no race with other tests for
    /// a "free" port) and learns the address from its own "listening" log line.
    pub fn start(db: &Path) -> Self {
        Self::start_with(db, &[], &[])
    }

    /// `cgm-hub serve ARGS` with extra environment variables.
    pub fn start_with(db: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_cgm-hub"));
        let mut child = Command::new(exe)
            .arg("serve")
            .args(args)
            .current_dir(db.parent().expect("db has a folder"))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SQLITE_PATH", db)
            .env("AUTH_DISABLED", "true")
            .env("LOG_FORMAT", "json")
            .env("RATE_LIMIT_USER_PER_MINUTE", "10000000")
            .env("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "10000000")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cgm-hub");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            // Keep draining the pipe for the process's whole life, or it would block.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["message"] == "cgm-hub listening" {
                        let _ = tx.send(event["addr"].as_str().unwrap_or_default().to_owned());
                    }
                }
                keep.lock().expect("log lines").push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("cgm-hub logs the address it listens on");
        Self {
            child,
            base: format!("http://{addr}"),
            stdout: lines,
        }
    }

    /// Starts the binary and waits until `/health` answers 200.
    pub async fn start_healthy(db: &Path, client: &reqwest::Client) -> Self {
        let mut binary = Self::start(db);
        binary.wait_healthy(client).await;
        binary
    }

    pub async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let url = format!("{}/health", self.base);
        let child = &mut self.child;
        eventually("cgm-hub answers /health", Duration::from_secs(20), || {
            assert!(
                child.try_wait().expect("poll child").is_none(),
                "cgm-hub exited early"
            );
            let health = client.get(&url).send();
            async move { health.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM");
        let mut status = None;
        eventually(
            "cgm-hub exits after SIGTERM",
            Duration::from_secs(30),
            || {
                status = self.child.try_wait().expect("poll child");
                std::future::ready(status.is_some())
            },
        )
        .await;
        status.expect("an exit status once exited")
    }

    /// SIGKILL: no shutdown hooks run.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Binary {
    /// A failed test must not leave a server behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

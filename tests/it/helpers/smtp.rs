//! A real SMTP server for the mail tests (invitations, password reset, email
//! verification): `scripts/smtp-sink.sh`, and decoding what it received.

/// `scripts/smtp-sink.sh`: a real SMTP server (aiosmtpd) writing each message
/// to a file in `dir`. None when it cannot run (no python3, no PyPI) outside
/// CI; under `CI=true` that fails the test.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Option<Self> {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smtp-sink.sh");
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let mut child = match std::process::Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if !ci => {
                eprintln!("SMTP sink not run (bash: {e}); it must run under CI=true");
                return None;
            }
            Err(e) => panic!("the SMTP sink must run under CI: {e}"),
        };
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        // The first line is the port; end of output means it could not start.
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        match line.trim().parse() {
            Ok(port) => Some(Self { child, port, dir }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                assert!(!ci, "the SMTP sink must run under CI (no port printed)");
                eprintln!("SMTP sink could not start (it must under CI=true)");
                None
            }
        }
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                (path.extension()? == "eml").then(|| std::fs::read_to_string(path).ok())?
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message body decoded from quoted-printable as far as a link needs
/// (soft line breaks, `=3D`).
pub fn decoded(message: &str) -> String {
    message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

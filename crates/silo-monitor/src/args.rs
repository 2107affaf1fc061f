//! The monitor's command line, parsed by hand (no clap) to keep the binary
//! and its idle footprint small.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One-line usage text printed with argument errors.
pub const USAGE: &str =
    "usage: silo-monitor --runtime-root DIR --id ID --bundle DIR --state-dir DIR \
[--tty] [--stdin] [--cri-log FILE] [--log-max-bytes N] [--log-max-files N] [--no-log] [--wait-attach N] [--detach]";

/// What the monitor was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The compute service's state root (runc's `--root`).
    pub runtime_root: PathBuf,
    /// The container id.
    pub id: String,
    /// The OCI bundle directory.
    pub bundle: PathBuf,
    /// Where the monitor writes its files and sockets.
    pub state_dir: PathBuf,
    /// The container gets a pty (its config.json must say `terminal: true`).
    pub tty: bool,
    /// The container's stdin is a pipe fed by attach clients (else /dev/null).
    pub stdin: bool,
    /// Rotate container-json.log once it would grow beyond this many bytes.
    pub log_max_bytes: Option<u64>,
    /// How many files the log may span, the current one included (>= 1).
    pub log_max_files: u32,
    /// Write the log in the CRI format to this file instead.
    pub cri_log: Option<PathBuf>,
    /// Write no log at all (Docker's `none` driver).
    pub no_log: bool,
    /// Accept this many attach clients before starting the container, so
    /// `docker run` sees the output of even the shortest process.
    pub wait_attach: u32,
    /// Fork, let the child carry on in a new session, print its init pid.
    pub detach: bool,
}

/// Why the command line was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("missing required option {0}")]
    Missing(&'static str),
    #[error("option {0} needs a value")]
    NoValue(String),
    #[error("option {flag} takes no value (got {value:?})")]
    UnexpectedValue { flag: String, value: String },
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{flag}: {value:?} is not a whole number of bytes")]
    BadNumber { flag: &'static str, value: String },
    #[error("{flag}: the value is not valid UTF-8")]
    NotUtf8 { flag: &'static str },
    #[error("--id: {0:?} is empty or contains '/'")]
    BadId(String),
}

/// Parses the arguments after the program name. Accepts `--flag value` and
/// `--flag=value`.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Args, ArgsError> {
    let mut runtime_root = None;
    let mut id = None;
    let mut bundle = None;
    let mut state_dir = None;
    let mut log_max_bytes = None;
    let mut log_max_files = 1u32;
    let mut cri_log = None;
    let mut no_log = false;
    let mut wait_attach = 0u32;
    let (mut tty, mut stdin, mut detach) = (false, false, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy().into_owned();
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (text.clone(), None),
        };
        let switch = |slot: &mut bool| match &inline {
            Some(v) => Err(ArgsError::UnexpectedValue {
                flag: flag.clone(),
                value: v.clone(),
            }),
            None => {
                *slot = true;
                Ok(())
            }
        };
        match flag.as_str() {
            "--tty" | "-t" => switch(&mut tty)?,
            "--stdin" | "-i" => switch(&mut stdin)?,
            "--detach" | "-d" => switch(&mut detach)?,
            "--no-log" => switch(&mut no_log)?,
            "--runtime-root" | "--id" | "--bundle" | "--state-dir" | "--log-max-bytes"
            | "--log-max-files" | "--wait-attach" | "--cri-log" => {
                let value: OsString = match inline {
                    Some(_) => {
                        // Keep non-UTF-8 bytes intact for the inline form too.
                        let raw = arg.as_bytes();
                        let at = raw.iter().position(|b| *b == b'=').map_or(0, |i| i + 1);
                        OsStr::from_bytes(&raw[at..]).to_os_string()
                    }
                    None => it.next().ok_or_else(|| ArgsError::NoValue(flag.clone()))?,
                };
                match flag.as_str() {
                    "--runtime-root" => runtime_root = Some(PathBuf::from(value)),
                    "--bundle" => bundle = Some(PathBuf::from(value)),
                    "--state-dir" => state_dir = Some(PathBuf::from(value)),
                    "--cri-log" => cri_log = Some(PathBuf::from(value)),
                    "--id" => {
                        let v = value
                            .into_string()
                            .map_err(|_| ArgsError::NotUtf8 { flag: "--id" })?;
                        if v.is_empty() || v.contains('/') {
                            return Err(ArgsError::BadId(v));
                        }
                        id = Some(v);
                    }
                    "--wait-attach" => {
                        let flag = "--wait-attach";
                        let v = value
                            .into_string()
                            .map_err(|_| ArgsError::NotUtf8 { flag })?;
                        wait_attach = v
                            .parse()
                            .map_err(|_| ArgsError::BadNumber { flag, value: v })?;
                    }
                    "--log-max-files" => {
                        let flag = "--log-max-files";
                        let v = value
                            .into_string()
                            .map_err(|_| ArgsError::NotUtf8 { flag })?;
                        log_max_files = v
                            .parse()
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or(ArgsError::BadNumber { flag, value: v })?;
                    }
                    _ => {
                        let flag = "--log-max-bytes";
                        let v = value
                            .into_string()
                            .map_err(|_| ArgsError::NotUtf8 { flag })?;
                        let n: u64 = v
                            .parse()
                            .map_err(|_| ArgsError::BadNumber { flag, value: v })?;
                        log_max_bytes = (n > 0).then_some(n);
                    }
                }
            }
            _ => return Err(ArgsError::Unknown(text)),
        }
    }
    Ok(Args {
        runtime_root: runtime_root.ok_or(ArgsError::Missing("--runtime-root"))?,
        id: id.ok_or(ArgsError::Missing("--id"))?,
        bundle: bundle.ok_or(ArgsError::Missing("--bundle"))?,
        state_dir: state_dir.ok_or(ArgsError::Missing("--state-dir"))?,
        tty,
        stdin,
        log_max_bytes,
        log_max_files,
        cri_log,
        no_log,
        wait_attach,
        detach,
    })
}

impl Args {
    /// The command line that [`parse`] reads back as these arguments: how
    /// silod starts a monitor.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::with_capacity(14);
        if self.detach {
            v.push("--detach".into());
        }
        for (flag, value) in [
            ("--runtime-root", self.runtime_root.as_os_str()),
            ("--id", OsStr::new(&self.id)),
            ("--bundle", self.bundle.as_os_str()),
            ("--state-dir", self.state_dir.as_os_str()),
        ] {
            v.push(flag.into());
            v.push(value.into());
        }
        if self.tty {
            v.push("--tty".into());
        }
        if self.stdin {
            v.push("--stdin".into());
        }
        if let Some(n) = self.log_max_bytes {
            v.push("--log-max-bytes".into());
            v.push(n.to_string().into());
        }
        if self.log_max_files != 1 {
            v.push("--log-max-files".into());
            v.push(self.log_max_files.to_string().into());
        }
        if let Some(p) = &self.cri_log {
            v.push("--cri-log".into());
            v.push(p.into());
        }
        if self.no_log {
            v.push("--no-log".into());
        }
        if self.wait_attach > 0 {
            v.push("--wait-attach".into());
            v.push(self.wait_attach.to_string().into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, ArgsError> {
        parse(v.iter().map(OsString::from))
    }

    #[test]
    fn to_args_is_read_back_by_parse() {
        let a = Args {
            runtime_root: PathBuf::from("/run/silo/runtime"),
            id: "c1".into(),
            bundle: PathBuf::from("/var/lib/silo/containers/c1"),
            state_dir: PathBuf::from("/run/silo/s/c1"),
            tty: true,
            stdin: false,
            log_max_bytes: Some(4096),
            log_max_files: 3,
            cri_log: Some(PathBuf::from("/var/log/pods/p/c/0.log")),
            no_log: true,
            wait_attach: 2,
            detach: true,
        };
        assert_eq!(parse(a.to_args()), Ok(a.clone()));
        let plain = Args {
            tty: false,
            log_max_bytes: None,
            log_max_files: 1,
            cri_log: None,
            no_log: false,
            wait_attach: 0,
            detach: false,
            ..a
        };
        assert_eq!(parse(plain.to_args()), Ok(plain));
    }

    #[test]
    fn parses_every_option() {
        let a = p(&[
            "--runtime-root",
            "/run/silo",
            "--id=c1",
            "--bundle",
            "/b",
            "--state-dir",
            "/s",
            "--tty",
            "--stdin",
            "--log-max-bytes=1000",
            "--log-max-files",
            "5",
            "--no-log",
            "--detach",
        ])
        .unwrap();
        assert_eq!((a.log_max_files, a.no_log), (5, true));
        assert_eq!(a.runtime_root, PathBuf::from("/run/silo"));
        assert_eq!(a.id, "c1");
        assert_eq!(a.bundle, PathBuf::from("/b"));
        assert_eq!(a.state_dir, PathBuf::from("/s"));
        assert!(a.tty && a.stdin && a.detach);
        assert_eq!(a.log_max_bytes, Some(1000));
    }

    #[test]
    fn reports_what_is_wrong() {
        let base = ["--runtime-root", "/r", "--id", "c", "--bundle", "/b"];
        assert_eq!(p(&base), Err(ArgsError::Missing("--state-dir")));
        assert_eq!(p(&["--id"]), Err(ArgsError::NoValue("--id".into())));
        assert_eq!(p(&["--bogus"]), Err(ArgsError::Unknown("--bogus".into())));
        assert_eq!(p(&["--id", "a/b"]), Err(ArgsError::BadId("a/b".into())));
        assert_eq!(
            p(&["--log-max-bytes", "12k"]),
            Err(ArgsError::BadNumber {
                flag: "--log-max-bytes",
                value: "12k".into()
            })
        );
        assert!(matches!(
            p(&["--tty=yes"]),
            Err(ArgsError::UnexpectedValue { .. })
        ));
        assert_eq!(
            p(&["--log-max-files", "0"]),
            Err(ArgsError::BadNumber {
                flag: "--log-max-files",
                value: "0".into()
            })
        );
        let e = p(&["--log-max-bytes", "x"]).unwrap_err().to_string();
        assert!(e.contains("--log-max-bytes") && e.contains("\"x\""), "{e}");
    }

    #[test]
    fn zero_log_max_means_no_rotation() {
        let a = p(&[
            "--runtime-root",
            "/r",
            "--id",
            "c",
            "--bundle",
            "/b",
            "--state-dir",
            "/s",
            "--log-max-bytes",
            "0",
        ])
        .unwrap();
        assert_eq!(a.log_max_bytes, None);
    }
}

//! `docker exec`: Docker's ExecConfig turned into the engine's
//! [`ExecSpec`], and exec instances shown as Docker's ExecInspect.

use crate::{invalid, Docker, Result};
use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use silo_engine::{AttachStream, ExecSpec};

/// The engine's exec for Docker's request.
pub(crate) fn spec(cfg: &ExecConfig) -> Result<ExecSpec> {
    let console_size = match cfg.console_size.as_deref() {
        None | Some([]) => None,
        Some([h, w]) => Some((
            u16::try_from(*h).map_err(|_| invalid("ConsoleSize", "ConsoleSize: out of range"))?,
            u16::try_from(*w).map_err(|_| invalid("ConsoleSize", "ConsoleSize: out of range"))?,
        )),
        Some(_) => {
            return Err(invalid(
                "ConsoleSize",
                "ConsoleSize: expected [height, width]",
            ))
        }
    };
    Ok(ExecSpec {
        args: cfg.cmd.clone().unwrap_or_default(),
        env: cfg.env.clone().unwrap_or_default(),
        cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()),
        user: cfg.user.clone().filter(|u| !u.is_empty()),
        terminal: cfg.tty.unwrap_or(false),
        stdin: cfg.attach_stdin.unwrap_or(false),
        stdout: cfg.attach_stdout.unwrap_or(false),
        stderr: cfg.attach_stderr.unwrap_or(false),
        privileged: cfg.privileged.unwrap_or(false),
        console_size,
        detach_keys: cfg.detach_keys.clone().unwrap_or_default(),
        detach_sequence: detach_keys(cfg.detach_keys.as_deref().unwrap_or(""))?,
    })
}

/// Docker's detach keys ("ctrl-p,ctrl-q", the default when empty; "a",
/// "ctrl-@" … "ctrl-_") as the bytes a client types.
pub fn detach_keys(spec: &str) -> Result<Vec<u8>> {
    let spec = if spec.is_empty() {
        "ctrl-p,ctrl-q"
    } else {
        spec
    };
    let bad = || {
        invalid(
            "detachKeys",
            format!("Invalid detach keys ({spec}) provided"),
        )
    };
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let [c] = c.as_bytes() else { return Err(bad()) };
                match c.to_ascii_lowercase() {
                    c @ b'a'..=b'z' => Ok(c - b'a' + 1),
                    b'@' => Ok(0),
                    c @ (b'[' | b'\\' | b']' | b'^' | b'_') => Ok(c - b'@'),
                    _ => Err(bad()),
                }
            } else {
                match k.as_bytes() {
                    [c] => Ok(*c),
                    _ => Err(bad()),
                }
            }
        })
        .collect()
}

/// The action of an exec event as dockerd writes it: `"<kind>: " +
/// Entrypoint + " " + strings.Join(Args, " ")`, so a command without
/// arguments keeps a trailing space ("exec_start: id ").
pub(crate) fn event_action(kind: &str, cmd: &[String]) -> String {
    match cmd.split_first() {
        Some((entrypoint, args)) => format!("{kind}: {entrypoint} {}", args.join(" ")),
        None => format!("{kind}:  "),
    }
}

/// The answer to an exec create: `{"Id": ...}`, as dockerd writes it
/// (bollard-stubs' `IdResponse` would serialize `id`, which strict clients
/// such as the Python SDK do not read).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecCreated {
    #[serde(rename = "Id")]
    pub id: String,
}

impl Docker {
    pub fn exec_create(&self, id: &str, cfg: ExecConfig) -> Result<ExecCreated> {
        let exec_id = self.engine.exec_create(id, spec(&cfg)?)?;
        Ok(ExecCreated { id: exec_id })
    }

    pub fn exec_start(
        &self,
        exec_id: &str,
        detach: bool,
        tty: bool,
    ) -> Result<Option<AttachStream>> {
        Ok(self.engine.exec_start(exec_id, detach, tty)?)
    }

    /// Whether the exec can start (it exists and has not), and whether it
    /// has a terminal: what an attached start must know before its 101.
    pub fn exec_startable(&self, exec_id: &str) -> Result<bool> {
        let e = self.engine.exec_info(exec_id)?;
        if e.running || e.exit_code.is_some() {
            return Err(silo_engine::Error::conflict(format!(
                "Exec command {exec_id} is already running"
            ))
            .into());
        }
        Ok(e.spec.terminal)
    }

    pub fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        Ok(self.engine.exec_resize(exec_id, height, width)?)
    }

    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspectResponse> {
        let e = self.engine.exec_info(exec_id)?;
        let s = &e.spec;
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(s.detach_keys.clone()),
            id: Some(e.id.clone()),
            running: Some(e.running),
            exit_code: e.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(s.privileged),
                user: Some(s.user.clone().unwrap_or_default()),
                tty: Some(s.terminal),
                entrypoint: s.args.first().cloned(),
                arguments: Some(s.args.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(s.stdin),
            open_stderr: Some(s.stderr),
            open_stdout: Some(s.stdout),
            container_id: Some(e.container_id.clone()),
            pid: Some(i64::from(e.pid)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_spells_them() {
        assert_eq!(detach_keys("").unwrap(), vec![0x10, 0x11]);
        assert_eq!(detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(
            detach_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(),
            vec![0, 27, 31]
        );
        let e = detach_keys("ctrl-1").unwrap_err();
        assert!(
            e.to_string()
                .contains("Invalid detach keys (ctrl-1) provided"),
            "{e}"
        );
        assert!(detach_keys("ab").is_err());
    }

    #[test]
    fn event_actions_are_dockers() {
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            event_action("exec_create", &cmd(&["id", "-u"])),
            "exec_create: id -u"
        );
        assert_eq!(event_action("exec_start", &cmd(&["id"])), "exec_start: id ");
        assert_eq!(
            event_action("exec_start", &cmd(&["/bin/sh", "-c", "echo a  b"])),
            "exec_start: /bin/sh -c echo a  b"
        );
    }

    #[test]
    fn exec_config_translates() {
        let s = spec(&ExecConfig {
            cmd: Some(vec!["echo".into(), "hi".into()]),
            env: Some(vec!["A=2".into()]),
            working_dir: Some("/tmp".into()),
            user: Some(String::new()),
            tty: Some(true),
            console_size: Some(vec![30, 100]),
            privileged: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.args, ["echo", "hi"]);
        assert_eq!(s.cwd.as_deref(), Some("/tmp"));
        assert_eq!(s.user, None, "an empty user is the container's");
        assert_eq!(s.console_size, Some((30, 100)));
        assert!(s.terminal && s.privileged);
        assert!(spec(&ExecConfig {
            console_size: Some(vec![1]),
            ..Default::default()
        })
        .is_err());
    }
}

//! `docker import --change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE,
//! HEALTHCHECK, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL) applied to an
//! image's container config.

use std::collections::BTreeMap;

use thiserror::Error;

use silo_oci::image_config::{ContainerConfig, Empty, HealthConfig};

/// Why a change instruction was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("change {change:?}: unsupported instruction {instruction:?} (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)")]
    Unsupported { change: String, instruction: String },
    #[error("change {change:?}: {instruction} needs an argument")]
    MissingArgument { change: String, instruction: String },
    #[error("change {change:?}: {reason}")]
    Malformed { change: String, reason: String },
}

/// Applies every instruction in `changes` (each string may hold several
/// lines; blank lines and `#` comments are ignored) to `cfg`, in order.
pub fn apply(cfg: &mut ContainerConfig, changes: &[String]) -> Result<(), ChangeError> {
    for change in changes {
        for line in change.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            apply_one(cfg, line)?;
        }
    }
    Ok(())
}

fn apply_one(cfg: &mut ContainerConfig, line: &str) -> Result<(), ChangeError> {
    let (word, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let instruction = word.to_ascii_uppercase();
    let malformed = |reason: String| ChangeError::Malformed {
        change: line.to_string(),
        reason,
    };
    if rest.is_empty() {
        return Err(ChangeError::MissingArgument {
            change: line.to_string(),
            instruction,
        });
    }
    match instruction.as_str() {
        "CMD" => cfg.cmd = Some(command_form(rest)),
        "ENTRYPOINT" => cfg.entrypoint = Some(command_form(rest)),
        "USER" => cfg.user = Some(rest.to_string()),
        "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
        "HEALTHCHECK" => cfg.healthcheck = Some(healthcheck(rest).map_err(malformed)?),
        "WORKDIR" => {
            let base = cfg.working_dir.clone().unwrap_or_else(|| "/".to_string());
            cfg.working_dir = Some(if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("{}/{rest}", base.trim_end_matches('/'))
            });
        }
        "ENV" => {
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest).map_err(malformed)? {
                let prefix = format!("{k}=");
                env.retain(|e| !e.starts_with(&prefix));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(rest).map_err(malformed)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in words(rest).map_err(malformed)? {
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let valid_num = |n: &str| !n.is_empty() && n.parse::<u16>().is_ok();
                let num_ok = match num.split_once('-') {
                    Some((a, b)) => valid_num(a) && valid_num(b),
                    None => valid_num(num),
                };
                if !num_ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(malformed(format!("bad port {p:?}")));
                }
                ports.insert(format!("{num}/{proto}"), Empty {});
            }
        }
        "VOLUME" => {
            let list = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) if rest.starts_with('[') => v,
                _ => words(rest).map_err(malformed)?,
            };
            let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
            for v in list {
                if v.is_empty() {
                    return Err(malformed("empty volume path".to_string()));
                }
                vols.insert(v, Empty {});
            }
        }
        _ => {
            return Err(ChangeError::Unsupported {
                change: line.to_string(),
                instruction,
            })
        }
    }
    Ok(())
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD command` or `HEALTHCHECK NONE`,
/// as a Dockerfile has it: the exec form gives `["CMD", args...]`, the shell
/// form `["CMD-SHELL", command]`.
fn healthcheck(rest: &str) -> Result<HealthConfig, String> {
    let mut hc = HealthConfig::default();
    let mut rest = rest.trim_start();
    let mut flags = false;
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (word, tail) = flag.split_at(end);
        rest = tail.trim_start();
        flags = true;
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| format!("flag --{word} needs a value (--{word}=VALUE)"))?;
        let duration = || -> Result<Option<i64>, String> {
            let ns = go_duration(value).map_err(|e| format!("--{name}: {e}"))?;
            match ns {
                0 => Ok(None),
                n if n < 1_000_000 => Err(format!("--{name} cannot be less than 1ms")),
                n => Ok(Some(n)),
            }
        };
        match name {
            "interval" => hc.interval = duration()?,
            "timeout" => hc.timeout = duration()?,
            "start-period" => hc.start_period = duration()?,
            "start-interval" => hc.start_interval = duration()?,
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("--retries: {value:?} is not a number"))?;
                if n < 0 {
                    return Err(format!("--retries cannot be negative ({n})"));
                }
                hc.retries = Some(n);
            }
            other => return Err(format!("unknown flag --{other}")),
        }
    }
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (kind, args) = rest.split_at(end);
    let args = args.trim();
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if flags || !args.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".to_string());
            }
            hc.test = Some(vec!["NONE".to_string()]);
        }
        "CMD" => {
            let exec_form = args
                .starts_with('[')
                .then(|| serde_json::from_str::<Vec<String>>(args).ok())
                .flatten();
            let test = match exec_form {
                Some(argv) => std::iter::once("CMD".to_string()).chain(argv).collect(),
                None => vec!["CMD-SHELL".to_string(), args.to_string()],
            };
            if test.len() < 2 || test[1].is_empty() {
                return Err("missing command after HEALTHCHECK CMD".to_string());
            }
            hc.test = Some(test);
        }
        "" => return Err("missing CMD or NONE".to_string()),
        other => return Err(format!("unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
    Ok(hc)
}

/// Go's `time.ParseDuration` ("300ms", "1.5s", "1m30s"; units ns, us, µs,
/// ms, s, m, h), in nanoseconds. Negative durations are refused.
fn go_duration(s: &str) -> Result<i64, String> {
    match silo_units::parse_go_duration(s) {
        Ok(ns) if !s.starts_with('-') => Ok(ns),
        _ => Err(format!("invalid duration {s:?}")),
    }
}

/// Exec form (a JSON string array) or shell form (run by /bin/sh -c).
fn command_form(rest: &str) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return v;
        }
    }
    vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()]
}

/// `K=V K2="v 2"` pairs, or the legacy `K value with spaces` form.
fn key_values(rest: &str) -> Result<Vec<(String, String)>, String> {
    let first_ws = rest.find(char::is_whitespace);
    let first_eq = rest.find('=');
    let legacy = match (first_eq, first_ws) {
        (None, _) => true,
        (Some(e), Some(w)) => w < e,
        (Some(_), None) => false,
    };
    if legacy {
        let (k, v) = match first_ws {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => return Err(format!("{rest:?} has no value")),
        };
        return Ok(vec![(k.to_string(), v.to_string())]);
    }
    let mut out = Vec::new();
    for w in words(rest)? {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => return Err(format!("{w:?} is not KEY=VALUE")),
        }
    }
    Ok(out)
}

/// Splits on whitespace, honouring single quotes, double quotes and backslashes.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("trailing backslash".to_string()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => return Err("trailing backslash".to_string()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(changes: &[&str]) -> Result<ContainerConfig, ChangeError> {
        let mut cfg = ContainerConfig::default();
        let v: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply(&mut cfg, &v).map(|_| cfg)
    }

    #[test]
    fn exec_and_shell_forms() {
        let c = run(&["CMD [\"sh\", \"-c\", \"echo hi\"]", "entrypoint /init --x"]).unwrap();
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/init --x"]);
    }

    #[test]
    fn env_label_expose_volume_workdir_user() {
        let c = run(&[
            "ENV A=b C=\"d e\"",
            "ENV A=z",
            "ENV LEGACY some value",
            "LABEL com.x=1 'y z'=2",
            "EXPOSE 80 53/udp 8000-8010",
            "VOLUME [\"/data\"]",
            "VOLUME /a /b",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGTERM",
        ])
        .unwrap();
        assert_eq!(c.env.unwrap(), ["C=d e", "A=z", "LEGACY=some value"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["com.x"], "1");
        assert_eq!(labels["y z"], "2");
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000-8010/tcp"]);
        let vols: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(vols, ["/a", "/b", "/data"]);
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.user.unwrap(), "1000:1000");
        assert_eq!(c.stop_signal.unwrap(), "SIGTERM");
    }

    #[test]
    fn healthcheck_forms_and_flags() {
        let c = run(&["HEALTHCHECK --interval=200ms --timeout=1m30s --start-period=1.5s --start-interval=2s --retries=2 CMD curl -f http://x/ || exit 1"]).unwrap();
        let hc = c.healthcheck.unwrap();
        assert_eq!(
            hc.test.unwrap(),
            ["CMD-SHELL", "curl -f http://x/ || exit 1"]
        );
        assert_eq!(hc.interval, Some(200_000_000));
        assert_eq!(hc.timeout, Some(90_000_000_000));
        assert_eq!(hc.start_period, Some(1_500_000_000));
        assert_eq!(hc.start_interval, Some(2_000_000_000));
        assert_eq!(hc.retries, Some(2));
        let hc = run(&["HEALTHCHECK CMD [\"true\", \"x y\"]"])
            .unwrap()
            .healthcheck
            .unwrap();
        assert_eq!(hc.test.unwrap(), ["CMD", "true", "x y"]);
        assert_eq!((hc.interval, hc.retries), (None, None));
        let hc = run(&["healthcheck none"]).unwrap().healthcheck.unwrap();
        assert_eq!(hc.test.unwrap(), ["NONE"]);
        for bad in [
            "HEALTHCHECK NONE x",
            "HEALTHCHECK --interval=1s NONE",
            "HEALTHCHECK --interval=1us CMD true",
            "HEALTHCHECK --interval=soon CMD true",
            "HEALTHCHECK --retries=-1 CMD true",
            "HEALTHCHECK --colour=red CMD true",
            "HEALTHCHECK --interval CMD true",
            "HEALTHCHECK CMD []",
            "HEALTHCHECK PING x",
            "HEALTHCHECK --retries=1",
        ] {
            assert!(
                matches!(run(&[bad]), Err(ChangeError::Malformed { .. })),
                "{bad} was accepted"
            );
        }
        // The image config keeps it in Docker's spelling.
        let json =
            serde_json::to_value(run(&["HEALTHCHECK --retries=4 CMD true"]).unwrap()).unwrap();
        assert_eq!(
            json["Healthcheck"],
            serde_json::json!({"Test": ["CMD-SHELL", "true"], "Retries": 4})
        );
    }

    #[test]
    fn go_durations() {
        // The syntax is silo-units'; here: nanoseconds, and no negatives.
        assert_eq!(go_duration("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(go_duration("+0"), Ok(0));
        for bad in ["-1s", "-0", "1x"] {
            assert_eq!(go_duration(bad), Err(format!("invalid duration {bad:?}")));
        }
    }

    #[test]
    fn rejects_bad_changes() {
        assert!(matches!(
            run(&["RUN rm -rf /"]),
            Err(ChangeError::Unsupported { .. })
        ));
        assert!(matches!(
            run(&["CMD"]),
            Err(ChangeError::MissingArgument { .. })
        ));
        assert!(matches!(
            run(&["EXPOSE 99999"]),
            Err(ChangeError::Malformed { .. })
        ));
        assert!(matches!(
            run(&["ENV A=\"open"]),
            Err(ChangeError::Malformed { .. })
        ));
        let e = run(&["FROM scratch"]).unwrap_err();
        assert!(e.to_string().contains("FROM scratch"), "{e}");
    }
}

//! Container operations with Docker's answers: 304 for a start or stop
//! that changes nothing, signals by name, `docker update` applied to both
//! the engine's limits and the kept request, `top` and the path stat in
//! Docker's shapes.

use crate::create::{resources, restart_policy};
use crate::{body_of, invalid, signal, Docker, Error, Result};
use bollard_stubs::models::{
    ContainerTopResponse, ContainerUpdateBody, ContainerUpdateResponse, ContainerWaitExitError,
    ContainerWaitResponse,
};
use silo_engine::{
    AttachOptions, AttachStream, LogChunk, LogOptions, Outcome, UpdateRequest, WaitCondition,
};
use std::io::{Read, Write};

fn opt_signal(s: Option<&str>) -> Result<Option<i32>> {
    s.filter(|s| !s.is_empty()).map(signal).transpose()
}

/// Go's `os.FileMode` bits for a stat mode (what Docker's path stat carries).
pub(crate) fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= 1 << 31,
        libc::S_IFLNK => m |= 1 << 27,
        libc::S_IFIFO => m |= 1 << 25,
        libc::S_IFSOCK => m |= 1 << 24,
        libc::S_IFBLK => m |= 1 << 26,
        libc::S_IFCHR => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

impl Docker {
    pub fn start(&self, id: &str) -> Result<()> {
        match self.engine.start(id)? {
            Outcome::Done => Ok(()),
            Outcome::Unchanged => Err(Error::NotModified(format!(
                "container {id} is already running"
            ))),
        }
    }

    pub fn stop(&self, id: &str, sig: Option<&str>, timeout: Option<i64>) -> Result<()> {
        match self.engine.stop(id, opt_signal(sig)?, timeout)? {
            Outcome::Done => Ok(()),
            Outcome::Unchanged => Err(Error::NotModified(format!(
                "container {id} is already stopped"
            ))),
        }
    }

    pub fn restart(&self, id: &str, sig: Option<&str>, timeout: Option<i64>) -> Result<()> {
        Ok(self.engine.restart(id, opt_signal(sig)?, timeout)?)
    }

    pub fn kill(&self, id: &str, sig: Option<&str>) -> Result<()> {
        Ok(self.engine.kill(id, opt_signal(sig)?)?)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        Ok(self.engine.pause(id)?)
    }

    pub fn unpause(&self, id: &str) -> Result<()> {
        Ok(self.engine.unpause(id)?)
    }

    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        Ok(self.engine.rename(id, name)?)
    }

    pub fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        Ok(self.engine.remove(id, force, volumes)?)
    }

    /// Fails with a 404 for an unknown container (before a stream starts).
    pub fn exists(&self, id: &str) -> Result<()> {
        self.engine.resolve_id(id)?;
        Ok(())
    }

    pub fn wait(&self, id: &str, condition: WaitCondition) -> Result<ContainerWaitResponse> {
        let r = self.engine.wait(id, condition)?;
        Ok(ContainerWaitResponse {
            status_code: r.exit_code,
            error: r.error.map(|m| ContainerWaitExitError { message: Some(m) }),
        })
    }

    /// `POST /containers/{id}/update`: limits and the restart policy, taken
    /// field by field over the container's HostConfig.
    pub fn update(&self, id: &str, body: ContainerUpdateBody) -> Result<ContainerUpdateResponse> {
        let c = self.engine.container(id)?;
        let mut req = body_of(&c);
        let mut hc = req.host_config.clone().unwrap_or_default();
        macro_rules! take {
            ($($f:ident),*) => { $( if body.$f.is_some() { hc.$f = body.$f.clone(); } )* };
        }
        take!(
            cpu_shares,
            memory,
            blkio_weight,
            cpu_period,
            cpu_quota,
            cpuset_cpus,
            cpuset_mems,
            memory_reservation,
            memory_swap,
            nano_cpus,
            pids_limit,
            restart_policy
        );
        if hc.nano_cpus.unwrap_or(0) != 0 && body.cpu_quota.is_some() {
            hc.nano_cpus = None;
        }
        if body.nano_cpus.unwrap_or(0) != 0 {
            hc.cpu_quota = None;
            hc.cpu_period = None;
        }
        let res = resources(&hc)?;
        let restart = if body.restart_policy.is_some() {
            Some(restart_policy(&hc)?)
        } else {
            None
        };
        req.host_config = Some(hc);
        let ext = crate::extension(&req)?;
        self.engine.update(
            &c.id,
            UpdateRequest {
                resources: Some(res),
                restart,
                extensions: ext,
            },
        )?;
        Ok(ContainerUpdateResponse {
            warnings: Some(vec![]),
        })
    }

    /// The log and whether it is a terminal's (raw, not framed).
    pub fn logs(
        &self,
        id: &str,
        opts: LogOptions,
    ) -> Result<(bool, Box<dyn Iterator<Item = LogChunk> + Send>)> {
        if !opts.stdout && !opts.stderr {
            return Err(invalid(
                "stdout",
                "you must choose at least one stream (stdout or stderr)",
            ));
        }
        let c = self.engine.container(id)?;
        if !c.config.log.enabled {
            // dockerd's words for the `none` driver.
            return Err(Error::NotImplemented(
                "configured logging driver does not support reading".into(),
            ));
        }
        Ok((c.config.process.terminal, self.engine.logs(id, opts)?))
    }

    pub fn attach(&self, id: &str, o: AttachOptions) -> Result<AttachStream> {
        Ok(self.engine.attach(id, o)?)
    }

    pub fn resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        Ok(self.engine.resize(id, height, width)?)
    }

    /// `GET /containers/{id}/changes` (`docker diff`).
    pub fn changes(&self, id: &str) -> Result<Vec<FilesystemChange>> {
        use silo_storage::ChangeKind as K;
        Ok(self
            .engine
            .changes(id)?
            .into_iter()
            .map(|c| FilesystemChange {
                path: c.path,
                kind: match c.kind {
                    K::Modified => 0,
                    K::Added => 1,
                    K::Deleted => 2,
                },
            })
            .collect())
    }

    pub fn top(&self, id: &str, ps_args: Option<&str>) -> Result<ContainerTopResponse> {
        let t = self.engine.top(id, ps_args)?;
        Ok(ContainerTopResponse {
            titles: Some(t.titles),
            processes: Some(t.rows),
        })
    }

    /// The stat Docker sends in `X-Docker-Container-Path-Stat`.
    pub fn archive_stat(&self, id: &str, path: &str) -> Result<serde_json::Value> {
        let s = self.engine.archive_stat(id, path)?;
        Ok(serde_json::json!({
            "name": s.name,
            "size": s.size,
            "mode": go_mode(s.mode),
            "mtime": s.mtime,
            "linkTarget": s.link_target,
        }))
    }

    pub fn archive_get(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<()> {
        Ok(self.engine.archive_get(id, path, out)?)
    }

    pub fn archive_put(&self, id: &str, path: &str, tar: &mut dyn Read) -> Result<()> {
        Ok(self.engine.archive_put(id, path, tar)?)
    }

    pub fn export(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        Ok(self.engine.export(id, out)?)
    }
}

/// One entry of `docker diff` as the Engine API writes it: Kind 0 is a
/// change, 1 an addition, 2 a deletion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilesystemChange {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Kind")]
    pub kind: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_mode(libc::S_IFREG | 0o4755), (1 << 23) | 0o755);
        assert_eq!(
            go_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
    }
}

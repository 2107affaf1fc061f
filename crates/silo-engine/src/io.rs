//! The engine's I/O operations on containers: logs, attach, exec, top,
//! stats, archive (cp), export, and the HCS views.

use crate::*;

impl Engine {
    /// Log chunks; with `follow` the iterator blocks for new output until the container stops.
    pub fn logs(
        &self,
        _id: &str,
        _opts: LogOptions,
    ) -> Result<Box<dyn Iterator<Item = LogChunk> + Send>> {
        todo("container logs")
    }
    pub fn attach(
        &self,
        _id: &str,
        _stdin: bool,
        _stdout: bool,
        _stderr: bool,
        _logs: bool,
    ) -> Result<AttachStream> {
        todo("container attach")
    }
    pub fn resize(&self, _id: &str, _height: u16, _width: u16) -> Result<()> {
        todo("container resize")
    }
    pub fn top(&self, _id: &str, _ps_args: Option<&str>) -> Result<ContainerTopResponse> {
        todo("container top")
    }
    /// One statistics sample (the API layer repeats it for streaming).
    pub fn stats(&self, _id: &str) -> Result<ContainerStatsResponse> {
        todo("container stats")
    }
    /// `HEAD/GET /containers/{id}/archive`: the stat header (base64 JSON in
    /// `X-Docker-Container-Path-Stat`) and, for GET, a tar written to `out`.
    pub fn archive_stat(&self, _id: &str, _path: &str) -> Result<serde_json::Value> {
        todo("container archive stat")
    }
    pub fn archive_get(&self, _id: &str, _path: &str, _out: &mut dyn Write) -> Result<()> {
        todo("container archive get")
    }
    pub fn archive_put(&self, _id: &str, _path: &str, _tar: &mut dyn Read) -> Result<()> {
        todo("container archive put")
    }
    pub fn export(&self, _id: &str, _out: &mut dyn Write) -> Result<()> {
        todo("container export")
    }
    // ---- exec ----
    pub fn exec_create(&self, _id: &str, _config: ExecConfig) -> Result<IdResponse> {
        todo("exec create")
    }
    /// Detached: starts and returns None. Otherwise the stream to relay.
    pub fn exec_start(
        &self,
        _exec_id: &str,
        _detach: bool,
        _tty: bool,
    ) -> Result<Option<AttachStream>> {
        todo("exec start")
    }
    pub fn exec_inspect(&self, _exec_id: &str) -> Result<ExecInspectResponse> {
        todo("exec inspect")
    }
    pub fn exec_resize(&self, _exec_id: &str, _height: u16, _width: u16) -> Result<()> {
        todo("exec resize")
    }

    // ---- HCS views (silo hcs list / inspect) ----
    /// Compute systems with state, owner, runtime id and job-object accounting.
    pub fn hcs_list(&self) -> Result<Vec<serde_json::Value>> {
        todo("hcs list")
    }
    /// The compute-system document (the OCI spec) with its properties and statistics.
    pub fn hcs_inspect(&self, _id: &str) -> Result<serde_json::Value> {
        todo("hcs inspect")
    }
}

//! `POST /build` as dockerd's classic builder serves it: the query turned
//! into a [`silo_build::BuildRequest`], the tar context kept as one
//! (decompressed) file that goes with the build, and
//! the builder's events turned into Docker's JSON stream (`stream`, `aux`
//! with the image ID, `errorDetail`). Also `POST /build/prune`.

use std::collections::BTreeMap;
use std::io::Read;

use silo_build::{BuildRequest, Event};
use silo_engine::NetworkMode;

use crate::{invalid, Docker, Result};

fn line(v: serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    b
}

fn stream(text: &str) -> Vec<u8> {
    line(serde_json::json!({ "stream": text }))
}

/// Query parameters that take resources or features the classic builder
/// here does not have: refused when given a value other than their
/// default, never ignored.
const UNSUPPORTED: [(&str, &str); 15] = [
    ("ulimits", "[]"),
    ("remote", ""),
    ("cpusetcpus", ""),
    ("cpusetmems", ""),
    ("cpushares", "0"),
    ("cpuquota", "0"),
    ("cpuperiod", "0"),
    ("memory", "0"),
    ("memswap", "0"),
    ("shmsize", "0"),
    ("cgroupparent", ""),
    ("isolation", ""),
    ("squash", "0"),
    ("session", ""),
    ("outputs", ""),
];

/// The query, read.
struct Query {
    req: BuildRequest,
    quiet: bool,
}

fn parse_query(q: &[(String, String)]) -> Result<Query> {
    let get = |k: &str| {
        q.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let flag = |k: &str| matches!(get(k), Some("1" | "true" | "True"));
    for (k, default) in UNSUPPORTED {
        if let Some(v) = get(k) {
            let is_default = v == default
                || v.is_empty()
                || v == "null"
                || v == "[]"
                || (default == "0" && v == "false");
            if !is_default {
                return Err(invalid(
                    k,
                    format!("build parameter {k}={v} is not supported by silo's builder"),
                ));
            }
        }
    }
    if let Some(v) = get("version").filter(|v| !v.is_empty() && *v != "1") {
        return Err(invalid(
            "version",
            format!("builder version {v}: silo serves the classic builder (version 1) only"),
        ));
    }
    let json_map = |k: &str| -> Result<BTreeMap<String, Option<String>>> {
        match get(k).filter(|v| !v.is_empty()) {
            None => Ok(BTreeMap::new()),
            Some(v) => serde_json::from_str(v)
                .map_err(|e| invalid(k, format!("{k}: not a JSON object of strings: {e}"))),
        }
    };
    let labels = json_map("labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let network = match get("networkmode").unwrap_or("") {
        "" | "default" | "bridge" | "nat" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => NetworkMode::Networks(vec![silo_engine::NetworkJoin {
            network: other.to_string(),
            aliases: Vec::new(),
            ip: None,
            ip6: None,
            mac: None,
        }]),
    };
    let extra_hosts = match get("extrahosts").filter(|v| !v.is_empty()) {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(|h| {
                h.split_once(':')
                    .or_else(|| h.split_once('='))
                    .map(|(n, a)| (n.to_string(), a.to_string()))
                    .ok_or_else(|| {
                        invalid("extrahosts", format!("extrahosts: {h:?} is not NAME:IP"))
                    })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    if let Some(p) = get("platform").filter(|p| !p.is_empty()) {
        let host = silo_oci::image::Platform::host();
        if !p.starts_with(&format!("{}/{}", host.os, host.architecture)) {
            return Err(invalid(
                "platform",
                format!(
                    "platform {p}: this host builds {}/{} only",
                    host.os, host.architecture
                ),
            ));
        }
    }
    Ok(Query {
        req: BuildRequest {
            context_tar: Default::default(),
            dockerfile: get("dockerfile").unwrap_or("").to_string(),
            tags: q
                .iter()
                .filter(|(k, v)| k == "t" && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect(),
            build_args: json_map("buildargs")?,
            labels,
            target: get("target").filter(|t| !t.is_empty()).map(str::to_string),
            no_cache: flag("nocache"),
            network,
            extra_hosts,
            // rm defaults to true (the docker CLI sends it; the SDK sends
            // rm=False unless asked).
            keep_containers: matches!(get("rm"), Some("0" | "false" | "False")) && !flag("forcerm"),
            pull: flag("pull"),
            cache_from: match get("cachefrom").filter(|v| !v.is_empty() && *v != "null") {
                None => Vec::new(),
                Some(v) => serde_json::from_str(v).map_err(|e| {
                    invalid(
                        "cachefrom",
                        format!("cachefrom: not a JSON array of image names: {e}"),
                    )
                })?,
            },
        },
        quiet: flag("q"),
    })
}

impl Docker {
    /// `POST /build`: builds from the tar context in `body`, calling `emit`
    /// with each line of Docker's stream.
    pub fn build(
        &self,
        query: &[(String, String)],
        body: &mut dyn Read,
        emit: &(dyn Fn(Vec<u8>) + Sync),
    ) -> Result<()> {
        let Query { mut req, quiet } = parse_query(query)?;
        for t in &req.tags {
            silo_storage::normalize_reference(t)
                .map_err(|e| invalid("t", format!("invalid tag {t:?}: {e}")))?;
        }
        // The context goes to one file (decompressed), indexed by the
        // builder and never unpacked; it is deleted with the build.
        let dir = self.engine.storage().root().join("build-contexts");
        std::fs::create_dir_all(&dir)
            .map_err(|e| silo_engine::Error::internal("making the build context directory", e))?;
        let path = dir.join(format!("{}.tar", silo_sys::id::random_hex(16)));
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _gone = Gone(path.clone());
        let not_tar = |e: std::io::Error| {
            invalid(
                "context",
                format!("the build context is not a tar archive (plain, gzip or zstd): {e}"),
            )
        };
        let mut input = silo_storage::decompressed(body).map_err(not_tar)?;
        let mut file = std::fs::File::create(&path)
            .map_err(|e| silo_engine::Error::internal("writing the build context", e))?;
        std::io::copy(&mut input, &mut file).map_err(not_tar)?;
        drop(file);
        silo_build::context::Context::open(&path).map_err(|e| invalid("context", e.to_string()))?;
        req.context_tar = path.clone();
        let say = |text: &str| {
            if !quiet {
                emit(stream(text));
            }
        };
        let result = silo_build::build(&self.engine, &req, &mut |ev| match ev {
            Event::Step { n, total, text } => say(&format!("Step {n}/{total} : {text}\n")),
            Event::Cached => say(" ---> Using cache\n"),
            Event::Output(b) => say(&String::from_utf8_lossy(&b)),
            Event::Made(id) => say(&format!(" ---> {id}\n")),
            Event::Removed(id) => say(&format!("Removing intermediate container {id}\n")),
        });
        match result {
            Ok(id) => {
                emit(line(serde_json::json!({ "aux": { "ID": id } })));
                let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
                if quiet {
                    emit(stream(&format!("{id}\n")));
                } else {
                    emit(stream(&format!("Successfully built {short}\n")));
                    for t in &req.tags {
                        let full =
                            silo_storage::normalize_reference(t).unwrap_or_else(|_| t.clone());
                        let shown = full.strip_prefix("docker.io/library/").unwrap_or(&full);
                        emit(stream(&format!("Successfully tagged {shown}\n")));
                    }
                }
                Ok(())
            }
            Err(e) => Err(crate::Error::Engine(silo_engine::Error::invalid(
                "Dockerfile",
                e.to_string(),
            ))),
        }
    }

    /// `POST /build/prune`: forgets the build cache (its images stay until
    /// image prune removes the dangling ones).
    pub fn build_prune(&self) -> Result<serde_json::Value> {
        let dir = self.engine.storage().root().join("build-cache");
        let n = std::fs::read_dir(&dir).map(|r| r.count()).unwrap_or(0);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(serde_json::json!({ "CachesDeleted": null, "SpaceReclaimed": 0, "Entries": n }))
    }
}

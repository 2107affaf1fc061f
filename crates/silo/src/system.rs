//! System verbs: info, version, system df, events, the HCS views and shell
//! completions.

use crate::api::App;
use crate::containers::print_formatted;
use crate::http::enc;
use crate::template::{tabulate, Template};
use crate::units::{build_filters, bytes_size, human_size, now_unix, parse_since};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use std::io::{self, Write};

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Format output using a Go template subset
    #[arg(long)]
    pub format: Option<String>,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn info(app: &App, format: Option<&str>) -> Result<()> {
    let v: Value = app.get("/info")?;
    if let Some(f) = format {
        println!("{}", Template::parse(f)?.render(&v)?);
        return Ok(());
    }
    let mut o = String::new();
    o.push_str("Server:\n");
    o.push_str(&format!(" Containers: {}\n", s(&v["Containers"])));
    o.push_str(&format!("  Running: {}\n", s(&v["ContainersRunning"])));
    o.push_str(&format!("  Paused: {}\n", s(&v["ContainersPaused"])));
    o.push_str(&format!("  Stopped: {}\n", s(&v["ContainersStopped"])));
    o.push_str(&format!(" Images: {}\n", s(&v["Images"])));
    o.push_str(&format!(" Server Version: {}\n", s(&v["ServerVersion"])));
    o.push_str(&format!(" Storage Driver: {}\n", s(&v["Driver"])));
    o.push_str(&format!(" Logging Driver: {}\n", s(&v["LoggingDriver"])));
    o.push_str(&format!(" Cgroup Driver: {}\n", s(&v["CgroupDriver"])));
    o.push_str(&format!(" Cgroup Version: {}\n", s(&v["CgroupVersion"])));
    o.push_str(&format!(" Default Runtime: {}\n", s(&v["DefaultRuntime"])));
    o.push_str(&format!(" Kernel Version: {}\n", s(&v["KernelVersion"])));
    o.push_str(&format!(
        " Operating System: {}\n",
        s(&v["OperatingSystem"])
    ));
    o.push_str(&format!(" OSType: {}\n", s(&v["OSType"])));
    o.push_str(&format!(" Architecture: {}\n", s(&v["Architecture"])));
    o.push_str(&format!(" CPUs: {}\n", s(&v["NCPU"])));
    o.push_str(&format!(
        " Total Memory: {}\n",
        bytes_size(v["MemTotal"].as_f64().unwrap_or(0.0))
    ));
    o.push_str(&format!(" Name: {}\n", s(&v["Name"])));
    o.push_str(&format!(" ID: {}\n", s(&v["ID"])));
    o.push_str(&format!(" Docker Root Dir: {}\n", s(&v["DockerRootDir"])));
    if let Some(ws) = v["Warnings"].as_array() {
        for w in ws {
            o.push_str(&format!("{}\n", s(w)));
        }
    }
    io::stdout().write_all(o.as_bytes())?;
    Ok(())
}

pub fn version(app: &App, format: Option<&str>) -> Result<()> {
    let client = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": "1.45",
        "Os": std::env::consts::OS,
        "Arch": std::env::consts::ARCH,
    });
    let server: Result<Value> = app.get("/version");
    if let Some(f) = format {
        let doc = serde_json::json!({
            "Client": client,
            "Server": server.as_ref().ok().cloned().unwrap_or(Value::Null),
        });
        println!("{}", Template::parse(f)?.render(&doc)?);
        return server.map(|_| ());
    }
    println!("Client:");
    println!(" Version:           {}", s(&client["Version"]));
    println!(" API version:       {}", s(&client["ApiVersion"]));
    println!(
        " OS/Arch:           {}/{}",
        s(&client["Os"]),
        s(&client["Arch"])
    );
    let v = server?;
    println!();
    println!("Server:");
    println!(" Engine:");
    println!("  Version:          {}", s(&v["Version"]));
    println!(
        "  API version:      {} (minimum version {})",
        s(&v["ApiVersion"]),
        s(&v["MinAPIVersion"])
    );
    println!("  Git commit:       {}", s(&v["GitCommit"]));
    println!("  OS/Arch:          {}/{}", s(&v["Os"]), s(&v["Arch"]));
    println!("  Kernel Version:   {}", s(&v["KernelVersion"]));
    Ok(())
}

pub fn df(app: &App, format: Option<&str>) -> Result<()> {
    let v: Value = app.get("/system/df")?;
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let ctrs = v["Containers"].as_array().cloned().unwrap_or_default();
    let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
    let img_size: f64 = images
        .iter()
        .map(|i| i["Size"].as_f64().unwrap_or(0.0))
        .sum();
    let img_active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let img_unused: f64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) <= 0)
        .map(|i| i["Size"].as_f64().unwrap_or(0.0))
        .sum();
    let ctr_size: f64 = ctrs
        .iter()
        .map(|c| c["SizeRw"].as_f64().unwrap_or(0.0))
        .sum();
    let ctr_active = ctrs
        .iter()
        .filter(|c| c["State"].as_str() == Some("running"))
        .count();
    let ctr_unused: f64 = ctrs
        .iter()
        .filter(|c| c["State"].as_str() != Some("running"))
        .map(|c| c["SizeRw"].as_f64().unwrap_or(0.0))
        .sum();
    let vol_size: f64 = vols
        .iter()
        .map(|x| x["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0))
        .sum();
    let vol_active = vols
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let vol_unused: f64 = vols
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) <= 0)
        .map(|x| x["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0))
        .sum();
    let pct = |u: f64, t: f64| {
        if t > 0.0 {
            format!("{} ({:.0}%)", human_size(u), u * 100.0 / t)
        } else {
            format!("{} (0%)", human_size(u))
        }
    };
    let row = |t: &str, total: usize, active: usize, size: f64, unused: f64| {
        serde_json::json!({
            "Type": t, "TotalCount": total.to_string(), "Active": active.to_string(),
            "Size": human_size(size), "Reclaimable": pct(unused, size),
        })
    };
    let rows = vec![
        row("Images", images.len(), img_active, img_size, img_unused),
        row("Containers", ctrs.len(), ctr_active, ctr_size, ctr_unused),
        row(
            "Local Volumes",
            vols.len(),
            vol_active,
            vol_size,
            vol_unused,
        ),
    ];
    print_formatted(
        &rows,
        format,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &[
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ],
    )
}

pub fn events(app: &App, a: EventsArgs) -> Result<()> {
    let now = now_unix();
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(format!("since={}", parse_since(s, now)?));
    }
    if let Some(u) = &a.until {
        q.push(format!("until={}", parse_since(u, now)?));
    }
    if let Some(f) = build_filters(&a.filter)? {
        q.push(format!("filters={}", enc(&f)));
    }
    let q = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let resp = app.stream("GET", &format!("/events{q}"))?;
    let tmpl = a.format.as_deref().map(Template::parse).transpose()?;
    let mut out = io::stdout().lock();
    for ev in serde_json::Deserializer::from_reader(resp).into_iter::<Value>() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) if e.is_eof() => break,
            Err(e) => return Err(e.into()),
        };
        let line = match &tmpl {
            Some(t) => t.render(&ev)?,
            None => {
                let nanos = ev["timeNano"].as_i64().unwrap_or(0);
                let secs = nanos / 1_000_000_000;
                let ts = crate::units::format_unix(secs);
                // "2024-01-02 03:04:05 +0000 UTC" → RFC 3339 with nanoseconds, like docker.
                let date = ts.get(0..10).unwrap_or_default();
                let time = ts.get(11..19).unwrap_or_default();
                let mut attrs: Vec<String> = ev["Actor"]["Attributes"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
                    .unwrap_or_default();
                attrs.sort();
                format!(
                    "{date}T{time}.{:09}Z {} {} {} ({})",
                    nanos.rem_euclid(1_000_000_000),
                    s(&ev["Type"]),
                    s(&ev["Action"]),
                    s(&ev["Actor"]["ID"]),
                    attrs.join(", ")
                )
            }
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

fn opt_bytes(v: &Value) -> String {
    match v.as_f64() {
        Some(b) => bytes_size(b),
        None => "-".into(),
    }
}

/// One row of `silo hcs list` from one compute-system document.
pub fn hcs_row(v: &Value) -> String {
    let st = &v["Statistics"];
    let id = s(&v["Id"]);
    let cpu_ns = st["cpu"]["usage_ns"].as_f64().unwrap_or(0.0);
    let mem = format!(
        "{} / {} / {}",
        opt_bytes(&st["memory"]["current"]),
        opt_bytes(&st["memory"]["peak"]),
        match st["memory"]["limit"].as_f64() {
            Some(l) => bytes_size(l),
            None => "unlimited".into(),
        }
    );
    let pids = match st["pids"]["limit"].as_u64() {
        Some(l) => format!("{}/{l}", st["pids"]["current"].as_u64().unwrap_or(0)),
        None => st["pids"]["current"].as_u64().unwrap_or(0).to_string(),
    };
    [
        id.chars().take(12).collect::<String>(),
        s(&v["State"]),
        s(&v["Owner"]),
        match v["Pod"]["Id"].as_str() {
            Some(p) => p.chars().take(12).collect(),
            None => "-".into(),
        },
        s(&v["RuntimeId"]).chars().take(12).collect(),
        format!("{:.2}s", cpu_ns / 1e9),
        mem,
        pids,
        st["memory"]["oom_kills"].as_u64().unwrap_or(0).to_string(),
    ]
    .join("\t")
}

pub fn hcs_list(app: &App) -> Result<()> {
    let list: Vec<Value> = app.get("/silo/hcs")?;
    let mut rows = vec![
        "ID\tSTATE\tOWNER\tPOD\tRUNTIME ID\tCPU\tMEMORY (CURRENT / PEAK / LIMIT)\tPIDS\tOOM KILLS"
            .to_string(),
    ];
    rows.extend(list.iter().map(hcs_row));
    print!("{}", tabulate(&rows));
    Ok(())
}

pub fn hcs_inspect(app: &App, id: &str) -> Result<()> {
    let v: Value = app.get(&format!("/silo/hcs/{}", enc(id)))?;
    let mut out = serde_json::to_string_pretty(&v)?;
    out.push('\n');
    io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

fn print_json(v: &Value) -> Result<()> {
    let mut out = serde_json::to_string_pretty(v)?;
    out.push('\n');
    io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// `silo hns network|endpoint|policy …`.
pub fn hns(app: &App, cmd: crate::cli::HnsCmd) -> Result<()> {
    use crate::cli::{HnsCmd as H, HnsEndpoints as E, HnsNetworks as N, HnsPolicies as P};
    let v: Value = match cmd {
        H::Network(N::List) => app.get("/hns/networks")?,
        H::Network(N::Inspect { id }) => app.get(&format!("/hns/networks/{}", enc(&id)))?,
        H::Endpoint(E::List) => app.get("/hns/endpoints")?,
        H::Endpoint(E::Inspect { id }) => app.get(&format!("/hns/endpoints/{}", enc(&id)))?,
        H::Policy(P::List) => app.get("/hns/policies")?,
        H::Network(N::AddRemoteSubnet {
            network,
            prefix,
            provider_address,
            router_mac,
        }) => app.post(
            &format!("/hns/networks/{}/remote-subnets", enc(&network)),
            Some(&serde_json::json!({
                "DestinationPrefix": prefix,
                "ProviderAddress": provider_address,
                "DistributedRouterMacAddress": router_mac,
            })),
        )?,
        H::Network(N::RemoveRemoteSubnet { network, id }) => {
            app.delete(&format!(
                "/hns/networks/{}/remote-subnets/{}",
                enc(&network),
                enc(&id)
            ))?;
            return Ok(());
        }
        H::Endpoint(E::AddRemote {
            network,
            ip,
            provider_address,
            mac,
            name,
        }) => {
            let mut body = serde_json::json!({
                "IPAddress": ip,
                "ProviderAddress": provider_address,
            });
            if let Some(m) = mac {
                body["MacAddress"] = serde_json::json!(m);
            }
            if let Some(n) = name {
                body["Name"] = serde_json::json!(n);
            }
            app.post(
                &format!("/hns/networks/{}/remote-endpoints", enc(&network)),
                Some(&body),
            )?
        }
        H::Endpoint(E::RemoveRemote { network, id }) => {
            app.delete(&format!(
                "/hns/networks/{}/remote-endpoints/{}",
                enc(&network),
                enc(&id)
            ))?;
            return Ok(());
        }
        H::Policy(P::Add(a)) => {
            let body = policy_json(&a)?;
            let made: Value = app.post(
                &format!("/hns/endpoints/{}/policies", enc(&a.endpoint)),
                Some(&body),
            )?;
            println!("{}", made["ID"].as_str().unwrap_or_default());
            return Ok(());
        }
        H::Policy(P::Remove { endpoint, policy }) => {
            app.delete(&format!(
                "/hns/endpoints/{}/policies/{}",
                enc(&endpoint),
                enc(&policy)
            ))?;
            return Ok(());
        }
    };
    print_json(&v)
}

/// The HNS JSON of `silo hns policy add`'s flags; flags of another type
/// than the one given are refused, never ignored.
fn policy_json(a: &crate::cli::PolicyArgs) -> Result<Value> {
    use serde_json::json;
    if let Some(j) = &a.json {
        return serde_json::from_str(j).context("--json is not JSON");
    }
    let kind = a.kind.as_deref().unwrap_or_default();
    let acl_flags = a.action.is_some()
        || a.direction.is_some()
        || a.protocol.is_some()
        || a.local_address.is_some()
        || a.remote_address.is_some()
        || a.local_port.is_some()
        || a.remote_port.is_some()
        || a.priority.is_some();
    let used = [
        ("acl", acl_flags),
        ("qos", a.max_bandwidth.is_some()),
        ("outboundnat", !a.exception.is_empty()),
        ("route", a.destination.is_some() || a.next_hop.is_some()),
    ];
    if let Some((other, _)) = used.iter().find(|(k, u)| *u && *k != kind) {
        bail!("flags of a {other} policy were given to a {kind} policy");
    }
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    Ok(match kind {
        "acl" => {
            let (Some(action), Some(direction)) = (&a.action, &a.direction) else {
                bail!("an acl policy needs --action and --direction");
            };
            let mut s = json!({ "Action": cap(action), "Direction": cap(direction) });
            for (k, v) in [
                ("Protocols", &a.protocol),
                ("LocalAddresses", &a.local_address),
                ("RemoteAddresses", &a.remote_address),
                ("LocalPorts", &a.local_port),
                ("RemotePorts", &a.remote_port),
            ] {
                if let Some(v) = v {
                    s[k] = json!(v);
                }
            }
            if let Some(p) = a.priority {
                s["Priority"] = json!(p);
            }
            json!({ "Type": "ACL", "Settings": s })
        }
        "qos" => {
            let Some(rate) = &a.max_bandwidth else {
                bail!("a qos policy needs --max-bandwidth");
            };
            let bytes = silo_units::parse_rate(rate).map_err(|e| {
                anyhow::anyhow!(
                    "--max-bandwidth: {e} (write it as tc does: 10mbit, 1gbit, 500kbps)"
                )
            })?;
            json!({ "Type": "QOS", "Settings": { "MaximumOutgoingBandwidthInBytes": bytes } })
        }
        "outboundnat" => {
            json!({ "Type": "OutBoundNAT", "Settings": { "Exceptions": a.exception } })
        }
        _ => {
            let Some(d) = &a.destination else {
                bail!("a route policy needs --destination");
            };
            let mut s = json!({ "DestinationPrefix": d });
            if let Some(h) = &a.next_hop {
                s["NextHop"] = json!(h);
            }
            json!({ "Type": "Route", "Settings": s })
        }
    })
}

/// `silo network ls|create|inspect|rm|prune`.
pub fn network(app: &App, cmd: crate::cli::NetworkCmd) -> Result<()> {
    use crate::cli::NetworkCmd as N;
    match cmd {
        N::List => {
            let list: Vec<Value> = app.get("/networks")?;
            let mut rows = vec!["NETWORK ID\tNAME\tDRIVER\tSCOPE".to_string()];
            for n in &list {
                let id: String = n["Id"].as_str().unwrap_or("").chars().take(12).collect();
                rows.push(format!(
                    "{id}\t{}\t{}\t{}",
                    n["Name"].as_str().unwrap_or(""),
                    n["Driver"].as_str().unwrap_or(""),
                    n["Scope"].as_str().unwrap_or("")
                ));
            }
            print!("{}", tabulate(&rows));
        }
        N::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            ipv6,
            internal,
            label,
            opt,
            name,
        } => {
            let mut labels = serde_json::Map::new();
            for l in &label {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                labels.insert(k.to_string(), Value::String(v.to_string()));
            }
            let mut options = serde_json::Map::new();
            for o in &opt {
                let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
                options.insert(k.to_string(), Value::String(v.to_string()));
            }
            // Each subnet with the gateway and range of its family.
            let v6 = |s: &String| s.contains(':');
            let pick = |v: &[String], six: bool| v.iter().find(|x| v6(x) == six).cloned();
            let mut cfg: Vec<Value> = subnet
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "Subnet": s,
                        "Gateway": pick(&gateway, v6(s)),
                        "IPRange": pick(&ip_range, v6(s)),
                    })
                })
                .collect();
            if subnet.is_empty() && (!gateway.is_empty() || !ip_range.is_empty()) {
                cfg.push(serde_json::json!({
                    "Gateway": pick(&gateway, false),
                    "IPRange": pick(&ip_range, false),
                }));
            }
            let body = serde_json::json!({
                "Name": name, "Driver": driver, "Internal": internal, "EnableIPv6": ipv6,
                "IPAM": {"Config": cfg}, "Labels": labels, "Options": options,
            });
            let v: Value = app.post("/networks/create", Some(&body))?;
            println!("{}", v["Id"].as_str().unwrap_or(""));
        }
        N::Inspect { networks } => {
            let mut all = Vec::new();
            for n in networks {
                let v: Value = app.get(&format!("/networks/{}", enc(&n)))?;
                all.push(v);
            }
            print_json(&Value::Array(all))?;
        }
        N::Rm { networks } => {
            for n in networks {
                app.delete(&format!("/networks/{}", enc(&n)))?;
                println!("{n}");
            }
        }
        N::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let body = serde_json::json!({
                "Container": container,
                "EndpointConfig": {
                    "Aliases": alias,
                    "IPAMConfig": ip.map(|ip| serde_json::json!({"IPv4Address": ip})),
                },
            });
            app.post_raw(&format!("/networks/{}/connect", enc(&network)), Some(&body))?;
        }
        N::Disconnect {
            force,
            network,
            container,
        } => {
            let body = serde_json::json!({"Container": container, "Force": force});
            app.post_raw(
                &format!("/networks/{}/disconnect", enc(&network)),
                Some(&body),
            )?;
        }
        N::Prune => {
            let v: Value = app.post("/networks/prune", None::<&()>)?;
            for n in v["NetworksDeleted"].as_array().into_iter().flatten() {
                println!("Deleted Network: {}", n.as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

pub fn completion(shell: &str) -> Result<()> {
    use clap_complete::{generate, Shell};
    let sh = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => anyhow::bail!("unsupported shell {other:?}: use bash, zsh or fish"),
    };
    let mut cmd = crate::cli::command();
    generate(sh, &mut cmd, "silo", &mut io::stdout());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcs_row_columns() {
        let v = serde_json::json!({
            "Id": "0123456789abcdef", "State": "running", "Owner": "silod",
            "RuntimeId": "0123456789abcdef",
            "Statistics": {"cpu": {"usage_ns": 1_500_000_000u64},
                "memory": {"current": 1048576, "peak": 2097152, "limit": null, "oom_kills": 1},
                "pids": {"current": 2, "limit": 10}}
        });
        assert_eq!(
            hcs_row(&v),
            "0123456789ab\trunning\tsilod\t-\t0123456789ab\t1.50s\t1MiB / 2MiB / unlimited\t2/10\t1"
        );
        let mut in_pod = v.clone();
        in_pod["Pod"] = serde_json::json!({"Id": "feedfacecafe0123", "Name": "k8s_POD_web"});
        assert!(
            hcs_row(&in_pod).contains("\tfeedfacecafe\t"),
            "{}",
            hcs_row(&in_pod)
        );
    }
}

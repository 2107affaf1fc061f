//! The command-line grammar (clap derive) and the dispatch to each verb.

use crate::api::App;
use crate::{containers, create, images, registry, system};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};

pub const DEFAULT_HOST: &str = "unix:///run/silo/silod.sock";

/// `-H`, then `$SILO_HOST`, then the default socket. A bare path is accepted too.
pub fn resolve_host(flag: Option<&str>) -> String {
    let h = flag
        .map(str::to_string)
        .or_else(|| std::env::var("SILO_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    if h.starts_with('/') {
        format!("unix://{h}")
    } else {
        h
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "silo",
    version,
    about = "A docker-like CLI for the silo container daemon (silod)"
)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path); default $SILO_HOST or unix:///run/silo/silod.sock
    #[arg(short = 'H', long = "host", global = true)]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and run a new container from an image
    Run(Box<create::RunArgs>),
    /// Create a new container
    Create(Box<create::RunArgs>),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Pause all processes within one or more containers
    Pause(Ids),
    /// Unpause all processes within one or more containers
    Unpause(Ids),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Ids),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// List containers
    Ps(PsArgs),
    /// Return low-level information on containers or images
    Inspect(InspectArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Display the running processes of a container
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Display a live stream of container resource usage statistics
    Stats(StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// List port mappings or a specific mapping for the container
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO]
        port: Option<String>,
    },
    /// Export a container's filesystem as a tar archive
    Export {
        container: String,
        /// Write to a file, instead of STDOUT
        #[arg(short, long)]
        output: Option<String>,
    },
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Build an image from a Dockerfile
    Build(images::BuildArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry (credentials go to the docker client's config.json)
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout { server: Option<String> },
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(registry::SaveArgs),
    /// Load images from a tar archive or STDIN
    Load(registry::LoadArgs),
    /// Create a new image from a container's changes
    Commit(registry::CommitArgs),
    /// Show the history of an image
    History(registry::HistoryArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(images::VolumeCmd),
    /// Manage silod
    #[command(subcommand)]
    System(SystemCmd),
    /// Display system-wide information
    Info(FormatArg),
    /// Show the silo version information
    Version(FormatArg),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Compute-system (HCS) views of the containers
    #[command(subcommand)]
    Hcs(HcsCmd),
    /// Network-service (HNS) views: networks, endpoints, policies
    #[command(subcommand)]
    Hns(HnsCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// A stopped container's sandbox disk, seen from the host
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Print shell completions
    Completion {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// List containers
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Return low-level information on one or more containers
    Inspect(InspectArgs),
    /// Create and run a new container
    Run(Box<create::RunArgs>),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show silod disk usage
    Df(FormatArg),
    /// Display system-wide information
    Info(FormatArg),
    /// Get real time events from the server
    Events(system::EventsArgs),
}

#[derive(Subcommand, Debug)]
pub enum HnsCmd {
    /// HNS networks (and an overlay's remote subnets)
    #[command(subcommand)]
    Network(HnsNetworks),
    /// HNS endpoints, with their counters (and an overlay's remote ones)
    #[command(subcommand)]
    Endpoint(HnsEndpoints),
    /// HNS policies
    #[command(subcommand)]
    Policy(HnsPolicies),
}

#[derive(Subcommand, Debug)]
pub enum HnsNetworks {
    /// List them as JSON
    #[command(alias = "ls")]
    List,
    /// One of them as JSON
    Inspect { id: String },
    /// Route another host's subnet of an overlay network (RemoteSubnetRoute)
    AddRemoteSubnet {
        network: String,
        /// The remote subnet (CIDR)
        #[arg(long)]
        prefix: String,
        /// The underlay address of the host that holds it
        #[arg(long)]
        provider_address: String,
        /// That host's overlay bridge MAC (its DistributedRouterMacAddress)
        #[arg(long)]
        router_mac: String,
    },
    /// Remove a remote subnet (by id or prefix)
    RemoveRemoteSubnet { network: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum HnsEndpoints {
    /// List them as JSON
    #[command(alias = "ls")]
    List,
    /// One of them as JSON
    Inspect { id: String },
    /// Tell an overlay network of an endpoint on another host
    AddRemote {
        network: String,
        /// Its address on the overlay
        #[arg(long)]
        ip: String,
        /// The underlay address (VTEP) of its host
        #[arg(long)]
        provider_address: String,
        /// Its MAC (default: the one silo derives from the address)
        #[arg(long)]
        mac: Option<String>,
        /// A name the embedded DNS server answers for it
        #[arg(long)]
        name: Option<String>,
    },
    /// Forget a remote endpoint (by id or address)
    RemoveRemote { network: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum HnsPolicies {
    /// List the policies as JSON
    #[command(alias = "ls")]
    List,
    /// Add a policy to a running endpoint; prints its id
    Add(Box<PolicyArgs>),
    /// Remove a policy from an endpoint
    Remove { endpoint: String, policy: String },
}

/// `silo hns policy add`: a policy by type and flags, or as HNS JSON.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    /// The endpoint (id or unique prefix)
    pub endpoint: String,
    /// acl, qos, outboundnat or route
    #[arg(long = "type", value_parser = ["acl", "qos", "outboundnat", "route"], required_unless_present = "json")]
    pub kind: Option<String>,
    /// The whole policy as HNS JSON ({"Type": …, "Settings": {…}})
    #[arg(long, conflicts_with_all = ["kind", "action", "direction", "protocol", "local_address", "remote_address", "local_port", "remote_port", "priority", "max_bandwidth", "exception", "destination", "next_hop"])]
    pub json: Option<String>,
    /// ACL: allow or block
    #[arg(long, value_parser = ["allow", "block"])]
    pub action: Option<String>,
    /// ACL: in or out
    #[arg(long, value_parser = ["in", "out"])]
    pub direction: Option<String>,
    /// ACL: tcp, udp, icmp, icmpv6 or a protocol number
    #[arg(long)]
    pub protocol: Option<String>,
    /// ACL: local addresses (comma-separated IPs or prefixes)
    #[arg(long)]
    pub local_address: Option<String>,
    /// ACL: remote addresses
    #[arg(long)]
    pub remote_address: Option<String>,
    /// ACL: local port or range
    #[arg(long)]
    pub local_port: Option<String>,
    /// ACL: remote port or range
    #[arg(long)]
    pub remote_port: Option<String>,
    /// ACL: lower numbers match first (default 1000)
    #[arg(long)]
    pub priority: Option<u16>,
    /// QOS: the outgoing cap, as tc writes rates (10mbit, 1gbit, 500kbps)
    #[arg(long)]
    pub max_bandwidth: Option<String>,
    /// OutBoundNAT: a destination that keeps the container's address (repeatable)
    #[arg(long)]
    pub exception: Vec<String>,
    /// Route: the destination prefix
    #[arg(long)]
    pub destination: Option<String>,
    /// Route: the next hop (none: on the link)
    #[arg(long)]
    pub next_hop: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// List networks
    #[command(alias = "ls")]
    List,
    /// Create a network
    Create {
        /// nat (default; bridge is the same), transparent (macvlan),
        /// l2bridge (ipvlan), l2tunnel or overlay
        #[arg(short, long)]
        driver: Option<String>,
        /// Subnet (one IPv4 and, with --ipv6, one IPv6)
        #[arg(long)]
        subnet: Vec<String>,
        /// Gateway of the subnet of its family
        #[arg(long)]
        gateway: Vec<String>,
        /// Range of the subnet of its family that containers get
        #[arg(long = "ip-range")]
        ip_range: Vec<String>,
        /// Enable IPv6 (dual stack)
        #[arg(long)]
        ipv6: bool,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        label: Vec<String>,
        /// Driver options (nat: com.docker.network.bridge.name, .driver.mtu, …;
        /// transparent, l2bridge: parent=IFACE; overlay: vni, vxlan_port, local)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        name: String,
    },
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune,
    /// Connect a container to a network (a running one gains the interface at once)
    Connect {
        /// Add a network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        /// IPv4 address
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Accepted for docker's sake; a disconnect never waits
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SandboxCmd {
    /// Mount a stopped container's sandbox read-only at DIR
    Attach { container: String, dir: String },
    /// Unmount a sandbox attached at DIR
    Detach { dir: String },
    /// Write a stopped container's sandbox as a disk image file
    Export {
        container: String,
        file: String,
        /// raw, vhdx or qcow2
        #[arg(long, default_value = "raw", value_parser = ["raw", "vhdx", "qcow2"])]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum HcsCmd {
    /// List compute systems with their job-object accounting
    #[command(alias = "ls")]
    List,
    /// Show a compute system's document, properties and statistics
    Inspect { id: String },
}

#[derive(Args, Debug)]
pub struct Ids {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FormatArg {
    /// Format output using a Go template subset
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: crate::create::ResourceArgs,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template subset
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long = "latest")]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template subset
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only inspect objects of the given type (container, image, volume)
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a Go template subset
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH or local path or - for a tar stream
    pub src: String,
    /// CONTAINER:DEST_PATH or local path or - for a tar stream
    pub dest: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// Runs one parsed command against the daemon.
pub fn dispatch(app: &App, cmd: Command) -> Result<()> {
    use Command as C;
    match cmd {
        C::Run(a) => create::run(app, *a),
        C::Create(a) => create::create(app, *a),
        C::Start(a) => containers::start(app, a),
        C::Stop(a) => containers::stop(app, a, false),
        C::Restart(a) => containers::stop(app, a, true),
        C::Kill(a) => containers::kill(app, a),
        C::Pause(a) => containers::simple(app, &a.containers, "pause"),
        C::Unpause(a) => containers::simple(app, &a.containers, "unpause"),
        C::Wait(a) => containers::wait(app, &a.containers),
        C::Rm(a) => containers::rm(app, a),
        C::Rename {
            container,
            new_name,
        } => containers::rename(app, &container, &new_name),
        C::Update(a) => containers::update(app, a),
        C::Ps(a) => containers::ps(app, a),
        C::Inspect(a) => containers::inspect(app, a),
        C::Logs(a) => containers::logs(app, a),
        C::Attach(a) => containers::attach(app, a),
        C::Exec(a) => containers::exec(app, a),
        C::Top { container, ps_args } => containers::top(app, &container, &ps_args),
        C::Stats(a) => containers::stats(app, a),
        C::Cp(a) => containers::cp(app, a),
        C::Export { container, output } => containers::export(app, &container, output.as_deref()),
        C::Port { container, port } => containers::port(app, &container, port.as_deref()),
        C::Container(sub) => match sub {
            ContainerCmd::Prune(a) => containers::prune(app, a),
            ContainerCmd::Ls(a) => containers::ps(app, a),
            ContainerCmd::Inspect(mut a) => {
                a.kind = Some("container".into());
                containers::inspect(app, a)
            }
            ContainerCmd::Run(a) => create::run(app, *a),
            ContainerCmd::Rm(a) => containers::rm(app, a),
            ContainerCmd::Logs(a) => containers::logs(app, a),
        },
        C::Import(a) => images::import(app, a),
        C::Build(a) => images::build(app, a),
        C::Pull(a) => registry::pull(app, a),
        C::Push(a) => registry::push(app, a),
        C::Login(a) => registry::login(app, a),
        C::Logout { server } => registry::logout(server),
        C::Save(a) => registry::save(app, a),
        C::Load(a) => registry::load(app, a),
        C::Commit(a) => registry::commit(app, a),
        C::History(a) => registry::history(app, a),
        C::Images(a) => images::images(app, a),
        C::Image(sub) => images::image_cmd(app, sub),
        C::Tag { source, target } => images::tag(app, &source, &target),
        C::Rmi(a) => images::rmi(app, a),
        C::Volume(sub) => images::volume_cmd(app, sub),
        C::System(sub) => match sub {
            SystemCmd::Df(f) => system::df(app, f.format.as_deref()),
            SystemCmd::Info(f) => system::info(app, f.format.as_deref()),
            SystemCmd::Events(a) => system::events(app, a),
        },
        C::Info(f) => system::info(app, f.format.as_deref()),
        C::Version(f) => system::version(app, f.format.as_deref()),
        C::Events(a) => system::events(app, a),
        C::Hcs(HcsCmd::List) => system::hcs_list(app),
        C::Hcs(HcsCmd::Inspect { id }) => system::hcs_inspect(app, &id),
        C::Sandbox(cmd) => registry::sandbox(app, cmd),
        C::Hns(cmd) => system::hns(app, cmd),
        C::Network(cmd) => system::network(app, cmd),
        C::Completion { shell } => system::completion(&shell),
    }
}

/// Used by `completion`: the clap command tree.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

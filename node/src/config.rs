//! Command-line configuration of the node.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_API: &str = "127.0.0.1:50052";
pub const DEFAULT_SERVICE_API: &str = "0.0.0.0:50053";

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Where the node keeps its key, database and packages [default: ~/.mesg]
    #[arg(long, env = "MESG_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Address of the Application API (HTTP). Every call needs the API token, on loopback
    /// too (a web page the operator visits can reach loopback).
    #[arg(long, env = "MESG_API", default_value = DEFAULT_API, value_name = "ADDR", global = true)]
    pub api: SocketAddr,

    /// Bearer token required on every Application API call. Unset: the node generates one
    /// into DATA_DIR/api.token on first start (mode 0600) and keeps it; `mesg` reads it
    /// there for a node on this machine.
    #[arg(
        long,
        env = "MESG_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub api_token: Option<String>,

    /// A host name that names this node in the Application API's `Host` header, besides IP
    /// addresses and `localhost` (repeatable), e.g. the node's DNS name behind a proxy.
    /// Other names are refused, which defeats DNS rebinding from web pages.
    #[arg(
        long = "api-host",
        env = "MESG_API_HOSTS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub api_hosts: Vec<String>,

    /// Address of the service API that the node's containers call. Containers reach it
    /// through their network's gateway, so it must listen beyond loopback; it serves only
    /// connections from loopback and from this node's instance networks (any other is
    /// closed unanswered), and every call needs the instance's secret token.
    #[arg(long, env = "MESG_SERVICE_API", default_value = DEFAULT_SERVICE_API, value_name = "ADDR")]
    pub service_api: SocketAddr,

    /// When the node itself runs in a Docker container of the same engine: that
    /// container's name or id, or `auto` to take it from the hostname (Docker's default
    /// hostname is the container id). The node then joins each instance network and its
    /// containers reach it by name. Unset: the node runs on the host and containers reach
    /// it through their network's gateway.
    #[arg(long, env = "MESG_SELF_CONTAINER", value_name = "CONTAINER")]
    pub self_container: Option<String>,

    /// Host address on which service containers' `ports:` are published. Loopback by
    /// default, so only this host reaches them; e.g. `0.0.0.0` publishes them to every
    /// network the host is on.
    #[arg(
        long,
        env = "MESG_PUBLISH_PORTS_ON",
        default_value_t = crate::runtime::policy::DEFAULT_PUBLISH_IP,
        value_name = "IP"
    )]
    pub publish_ports_on: std::net::IpAddr,

    /// A Linux capability (e.g. NET_BIND_SERVICE) given back to every service container
    /// (repeatable). Containers run with every capability dropped unless allowed here.
    #[arg(
        long = "allow-capability",
        env = "MESG_ALLOW_CAPABILITIES",
        value_delimiter = ',',
        value_name = "CAP"
    )]
    pub allow_capabilities: Vec<String>,

    /// A local image that services may use as a dependency (`image:` in mesg.yml), besides
    /// the images this node built (repeatable): `redis:7` allows that tag, `redis` every
    /// tag of it.
    #[arg(
        long = "allow-image",
        env = "MESG_ALLOW_IMAGES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub allow_images: Vec<String>,

    /// How many times a crashed container is restarted (with doubling backoff) before
    /// its instance is reported crashed.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_restarts: u32,

    /// Most memory (bytes) an Application may give an instance (`limits.memory` of
    /// `POST /v1/instances`); larger requests are lowered to it. [default: 4 GiB]
    #[arg(long, env = "MESG_MAX_INSTANCE_MEMORY", value_name = "BYTES")]
    pub max_instance_memory: Option<i64>,

    /// Most CPU (billionths of a CPU) an Application may give an instance; larger
    /// requests are lowered to it. [default: every CPU of the host]
    #[arg(long, env = "MESG_MAX_INSTANCE_NANO_CPUS", value_name = "NANO_CPUS")]
    pub max_instance_nano_cpus: Option<i64>,

    /// Most processes an Application may give an instance; larger requests are lowered
    /// to it. [default: 4096]
    #[arg(long, env = "MESG_MAX_INSTANCE_PIDS", value_name = "N")]
    pub max_instance_pids: Option<i64>,

    /// How many executions the node keeps for `mesg executions list/get/verify`; beyond that the
    /// oldest finished ones are removed (every 30 s). Executions still running and
    /// results still owed to another node are always kept. 0 keeps every execution.
    #[arg(
        long,
        env = "MESG_EXECUTION_HISTORY",
        default_value_t = 100_000,
        value_name = "N"
    )]
    pub execution_history: usize,

    /// Bind a service name to its publisher: `mesg exec SID` then runs only services whose
    /// publisher (the key that signed the deploy, see `mesg service list`) is KEY, whatever
    /// other nodes announce (repeatable), e.g. --pin echo=6Mk3...
    #[arg(long = "pin", env = "MESG_PIN", value_delimiter = ',', value_name = "SID=KEY", value_parser = parse_pin)]
    pub pin: Vec<(String, mesg_protocol::PublicKey)>,
    /// Work requests (submits, results, cancels) one peer may send per second; beyond it,
    /// plus a burst of two seconds' worth, its requests are refused as busy.
    #[arg(
        long,
        env = "MESG_PEER_WORK_RATE",
        default_value_t = crate::engine::peer_limits::DEFAULT_PEER_WORK_RATE,
        value_name = "N"
    )]
    pub peer_work_rate: u32,
    /// How long an idempotency key names its execution: for at least this long the same
    /// key (from the same requester) answers the existing execution and the execution is
    /// kept; after it, the key may be used again for a new one. e.g. 24h, 30m, 90s.
    #[arg(
        long,
        env = "MESG_IDEMPOTENCY_TTL",
        default_value = "24h",
        value_name = "DURATION",
        value_parser = parse_ttl
    )]
    pub idempotency_ttl: u64,

    /// Adaptive replication, as BOINC does: a verified execution whose first-choice
    /// provider has a long clean record (10 or more agreed verdicts in a row here) is
    /// verified by the other executors only at that provider's sample rate (10/N after N
    /// agreed verdicts in a row, at least 10 %); otherwise that provider alone runs it.
    /// Off by default: every execution that asks for verification is verified.
    #[arg(long, env = "MESG_ADAPTIVE_VERIFICATION")]
    pub adaptive_verification: bool,

    /// Default credit limit of a peer, in µc: what another node may owe this one
    /// (receipts not settled, plus the caps of its calls in progress) before its priced
    /// calls are refused with `credit limit`. Per-peer limits: `mesg ledger limit`.
    #[arg(
        long,
        env = "MESG_CREDIT_LIMIT",
        default_value_t = crate::ledger::DEFAULT_CREDIT_LIMIT,
        value_name = "MICRO_CREDITS"
    )]
    pub credit_limit: u64,

    /// Most process triggers in a causal chain: a process run triggered by an event or a
    /// result sits one deeper than it, and a trigger whose run would go deeper than N is
    /// refused (a loop between processes and services, or between nodes). A process's
    /// `max_depth` may lower it for that process, not raise it.
    #[arg(
        long,
        env = "MESG_MAX_TRIGGER_DEPTH",
        default_value_t = crate::processes::DEFAULT_MAX_TRIGGER_DEPTH,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(mesg_protocol::process::MAX_DEPTH)),
        value_name = "N"
    )]
    pub max_trigger_depth: u32,

    /// Address to listen on for peers (repeatable).
    /// [default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1]
    #[arg(
        long = "listen",
        env = "MESG_LISTEN",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub listen: Vec<libp2p::Multiaddr>,

    /// A peer to join the network through, e.g. /dns4/node1/tcp/4001 or
    /// /ip4/10.0.0.5/tcp/4001/p2p/12D3Koo... (repeatable). Re-dialled with backoff while
    /// unreachable.
    #[arg(
        long = "bootstrap",
        env = "MESG_BOOTSTRAP",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub bootstrap: Vec<libp2p::Multiaddr>,

    /// Whether peers may make this node dial loopback and private addresses (their
    /// announcements and identify messages name the addresses to reach them at). `on` for
    /// a network of nodes on loopback, a LAN or a Docker network; `off` for the public
    /// internet, where such addresses only let a peer make the node dial hosts of its own
    /// network. `auto`: on when one of --listen or --bootstrap is a loopback or private
    /// IP address.
    #[arg(
        long,
        env = "MESG_PRIVATE_NETWORK",
        value_enum,
        default_value = "auto",
        value_name = "MODE"
    )]
    pub private_network: crate::network::addrs::PrivateNetwork,

    /// Peers this node keeps connections to: it dials peers it has heard of until it has
    /// this many, not every node of the network. Work to a peer that is not connected
    /// dials it when needed.
    #[arg(
        long,
        env = "MESG_TARGET_PEERS",
        default_value_t = crate::network::DEFAULT_TARGET_PEERS,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub target_peers: u16,

    /// Connections above which this node closes random ones without recent work, down to
    /// --target-peers (at least --target-peers).
    #[arg(
        long,
        env = "MESG_MAX_PEERS",
        default_value_t = crate::network::DEFAULT_MAX_PEERS,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_peers: u16,

    /// Relay other nodes' connections (circuit relay v2): nodes behind NAT reserve a slot
    /// here and are reached through this node. Only for a node others can dial (a public
    /// address, or --external-address). Limits: 128 reservations (4 per peer), 64
    /// circuits (8 per peer), each closed after 5 minutes or 4 MiB (docs/network.md).
    #[arg(long, env = "MESG_RELAY_SERVER")]
    pub relay_server: bool,

    /// A relay to keep a reservation on, e.g. /dns4/relay/tcp/4001/p2p/12D3Koo...
    /// (repeatable; the relay must run with --relay-server). For a node behind NAT or a
    /// firewall: it announces `<relay>/p2p-circuit/p2p/<itself>` and is reached there.
    /// Without it, a node that AutoNAT finds unreachable reserves on up to two connected
    /// relays by itself.
    #[arg(
        long = "relay",
        env = "MESG_RELAY",
        value_delimiter = ',',
        value_name = "MULTIADDR",
        value_parser = parse_relay
    )]
    pub relays: Vec<libp2p::Multiaddr>,

    /// An address others reach this node at (repeatable): a public IP, a forwarded port,
    /// a DNS name. Announced with the listen addresses; a relay server gives them to the
    /// nodes that reserve on it (without it, its own listen addresses).
    #[arg(
        long = "external-address",
        env = "MESG_EXTERNAL_ADDRESS",
        value_delimiter = ',',
        value_name = "MULTIADDR"
    )]
    pub external_addrs: Vec<libp2p::Multiaddr>,

    /// Log filter, e.g. `info`, `mesg_node=debug`.
    #[arg(
        long,
        env = "MESG_LOG",
        default_value = "info",
        value_name = "FILTER",
        global = true
    )]
    pub log: String,
}

impl NodeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::datadir::DataDir::default_path)
    }

    /// The node's own container, if it runs in one.
    pub fn self_container(&self) -> Option<String> {
        match self.self_container.as_deref() {
            None | Some("") => None,
            // Docker sets a container's hostname to its short id unless told otherwise.
            Some("auto") => std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty()),
            Some(name) => Some(name.to_string()),
        }
    }
}

/// `SID=PUBLISHER_KEY` of `--pin`.
fn parse_ttl(s: &str) -> Result<u64, String> {
    match mesg_protocol::definition::parse_duration_ms(s)? {
        0 => Err("must be longer than 0".into()),
        ms => Ok(ms),
    }
}

fn parse_relay(s: &str) -> Result<libp2p::Multiaddr, String> {
    let addr: libp2p::Multiaddr = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    crate::network::nat::relay_listen_addr(&addr).map_err(|e| e.to_string())?;
    Ok(addr)
}

fn parse_pin(s: &str) -> Result<(String, mesg_protocol::PublicKey), String> {
    let (sid, key) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not SID=PUBLISHER_KEY"))?;
    let sid = sid.trim().to_ascii_lowercase();
    if !mesg_protocol::definition::is_valid_sid(&sid) {
        return Err(format!("`{sid}` is not a valid sid"));
    }
    let key = mesg_protocol::PublicKey::from_base58(key.trim())
        .map_err(|e| format!("`{key}` is not a publisher key: {e}"))?;
    Ok((sid, key))
}

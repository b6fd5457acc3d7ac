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

    /// Address of the Application API (HTTP). Anything but a loopback address requires
    /// --api-token.
    #[arg(long, env = "MESG_API", default_value = DEFAULT_API, value_name = "ADDR", global = true)]
    pub api: SocketAddr,

    /// Bearer token required on every Application API call.
    #[arg(
        long,
        env = "MESG_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

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

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesg_node::config::NodeArgs;
use mesg_node::datadir::DataDir;

/// mesg-node: run Services in Docker and join the mesg network.
///
/// On first start the node creates its ed25519 key in the data dir: the key is its
/// identity (PeerId) on the network and signs everything it announces and executes.
/// Applications talk to it over HTTP (`--api`, loopback by default; the `mesg` CLI uses
/// it); its service containers talk to it over the service API (`--service-api`).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the node's identity (creating it if needed) and exit.
    Identity,
    /// Exit 0 when the node's API at `--api` answers (for container healthchecks).
    Health,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The node itself (not `identity` or `health`): before any thread or allocation of
    // note, so the limit holds from the start (see `malloc_arenas`).
    let arenas = match cli.command {
        None => mesg_node::malloc_arenas::cap().err(),
        Some(_) => None,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli, arenas))
}

async fn run(cli: Cli, arenas: Option<std::io::Error>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.node.log))
        .with_target(false)
        .init();
    if let Some(e) = arenas {
        tracing::warn!("could not cap malloc arenas (MALLOC_ARENA_MAX): {e}");
    }
    match cli.command {
        Some(Command::Identity) => {
            let dir = DataDir::open(&cli.node.data_dir())?;
            let (key, created) = dir.load_or_create_key().context("node key")?;
            if created {
                println!(
                    "created a new node identity in {}",
                    dir.key_path().display()
                );
            }
            println!("public key: {}", key.public());
            println!("peer id:    {}", key.peer_id());
            Ok(())
        }
        Some(Command::Health) => mesg_node::health(&cli.node).await,
        None => mesg_node::run(cli.node).await,
    }
}

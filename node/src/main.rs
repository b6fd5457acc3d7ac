use anyhow::Context;
use clap::Parser;
use mesg_node::datadir::DataDir;
use std::path::PathBuf;

/// mesg-node: run Services in Docker and join the mesg network.
///
/// On first start the node creates its ed25519 key in the data dir; the key is its
/// identity (PeerId) on the network and signs everything it announces.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Where the node keeps its key, database and packages. Default: ~/.mesg
    #[arg(long, env = "MESG_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log filter, e.g. `info`, `mesg_node=debug`.
    #[arg(long, env = "MESG_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .init();
    let root = args.data_dir.unwrap_or_else(DataDir::default_path);
    let dir = DataDir::open(&root)?;
    let (key, created) = dir.load_or_create_key().context("node key")?;
    if created {
        println!(
            "created a new node identity in {}",
            dir.key_path().display()
        );
    }
    println!("node public key: {}", key.public());
    println!("node peer id:    {}", key.peer_id());
    println!("data dir:        {}", dir.root().display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

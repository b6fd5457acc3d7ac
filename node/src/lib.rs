//! mesg-node: runs Services in Docker, joins the mesg peer network, routes executions.
//!
//! One module, one noun: [`datadir`] (the node's directory and key), [`store`] (sled),
//! [`runtime`] (Docker), [`engine`] (executions and processes), [`network`] (libp2p),
//! [`api`] (HTTP for Applications and for service containers).

pub mod datadir;
pub mod store;

//! The output of an instance's containers: each container's stdout and stderr, split
//! into lines tagged with the container's key and merged into one stream as they come.

use super::DockerRuntime;
use super::names::{summary_key, summary_name};
use crate::runtime::{LogLine, RuntimeError};
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::stream::{self, BoxStream, StreamExt};
use mesg_protocol::InstanceHash;

impl DockerRuntime {
    /// [`crate::runtime::Runtime::logs`].
    pub(super) fn log_stream(
        &self,
        instance: InstanceHash,
        follow: bool,
        tail: Option<usize>,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let this = self.clone();
        let s = async_stream::stream! {
            let docker = match this.docker().await {
                Ok(d) => d,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let containers = match this.instance_containers(&docker, &instance).await {
                Ok(c) => c,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            if containers.is_empty() {
                yield Err(RuntimeError::UnknownInstance(instance));
                return;
            }
            let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
            let streams = containers.iter().map(|c| {
                let key = summary_key(c).to_string();
                let name = summary_name(c);
                let opts = LogsOptionsBuilder::new()
                    .follow(follow)
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build();
                let inner = this.inner.clone();
                docker
                    .logs(&name, Some(opts))
                    .flat_map(move |item| {
                        let lines: Vec<Result<LogLine, RuntimeError>> = match item {
                            Ok(out) => log_lines(&key, out).map(Ok).collect(),
                            Err(e) => vec![Err(inner.fail(format!("logs of {name}"), e))],
                        };
                        stream::iter(lines)
                    })
                    .boxed()
            });
            let mut merged = stream::select_all(streams);
            while let Some(item) = merged.next().await {
                yield item;
            }
        };
        Box::pin(s)
    }
}

/// One chunk of container `key`'s output as lines.
fn log_lines(key: &str, out: LogOutput) -> impl Iterator<Item = LogLine> {
    let (stream, bytes) = match out {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => ("stdout", message),
        LogOutput::StdIn { message } => ("stdin", message),
    };
    let key = key.to_string();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|text| LogLine {
            key: key.clone(),
            stream: stream.to_string(),
            text: text.to_string(),
        })
        .collect::<Vec<_>>()
        .into_iter()
}

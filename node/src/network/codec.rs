//! Request-response codec: each message is a length-prefixed versioned frame
//! (`u32` big-endian length, then [`mesg_protocol::wire::encode_frame`] bytes). The length
//! is checked against the protocol's limit before anything is allocated, and a frame that
//! does not decode is an I/O error for libp2p (the stream is dropped, the node goes on).

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use mesg_protocol::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::marker::PhantomData;

/// A codec for requests `Req` and responses `Resp`, each at most `LIMIT` bytes.
#[derive(Debug)]
pub struct FrameCodec<Req, Resp, const LIMIT: usize> {
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp, const LIMIT: usize> Default for FrameCodec<Req, Resp, LIMIT> {
    fn default() -> Self {
        FrameCodec {
            _types: PhantomData,
        }
    }
}

impl<Req, Resp, const LIMIT: usize> Clone for FrameCodec<Req, Resp, LIMIT> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send, M: DeserializeOwned>(
    io: &mut T,
    limit: usize,
) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the {limit} byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    wire::decode_frame(&buf, limit).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn encode_frame<M: Serialize>(msg: &M, limit: usize) -> io::Result<Vec<u8>> {
    wire::encode_frame(msg, limit).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

async fn write_bytes<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    // One write for prefix and body: fewer syscalls and yamux frames per message.
    let mut out = Vec::with_capacity(bytes.len() + 4);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    io.write_all(&out).await?;
    io.flush().await
}

fn encode<M: Serialize>(msg: &M) -> io::Result<Vec<u8>> {
    encode_frame(msg, usize::MAX)
}

impl<Req, Resp, const LIMIT: usize> libp2p::request_response::Codec for FrameCodec<Req, Resp, LIMIT>
where
    Req: Serialize + DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, LIMIT).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, LIMIT).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode(&req)?;
        write_bytes(io, &bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode(&res)?;
        write_bytes(io, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_or_garbage_is_an_error() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, &encode_frame(&"hello".to_string(), 100).unwrap())
            .await
            .unwrap();
        let back: String = read_frame(&mut buf.as_slice(), 100).await.unwrap();
        assert_eq!(back, "hello");
        // A length prefix beyond the limit is refused before reading the body.
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        let err = read_frame::<_, String>(&mut huge.as_slice(), 100)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut garbage = 4u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0, 1, 0xff, 0xff]);
        let err = read_frame::<_, String>(&mut garbage.as_slice(), 100)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

//! Request-response codec: each message is a length-prefixed versioned frame
//! (`u32` big-endian length, then [`mesg_protocol::wire::encode_frame`] bytes). The length
//! is checked against the protocol's limit before anything is allocated, the body's buffer
//! grows as its bytes arrive (a declared length is a peer's claim: reserving it up front
//! let one peer pin 4 MiB per stream by sending four bytes), and a frame that does not
//! decode is an I/O error for libp2p (the stream is dropped, the node goes on).

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use mesg_protocol::wire::{self, LARGE_WORK_MESSAGE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of a frame's body reserved before they arrive; beyond this the buffer grows with
/// what the peer really sends.
pub const FRAME_PREALLOC: usize = 64 * 1024;

/// Bytes of frames above [`LARGE_WORK_MESSAGE`] read at once by this node, all peers and
/// protocols together: four 16 MiB messages. A large frame that does not fit is refused
/// before its body is read (its stream dropped, the sender sees an error and may retry):
/// raising the work limit to 16 MiB multiplied what streams could pin by four, this keeps
/// large messages to a fixed amount whoever sends them.
pub const LARGE_FRAME_BUDGET: usize = 64 * 1024 * 1024;

static LARGE_FRAME_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A share of [`LARGE_FRAME_BUDGET`], given back on drop.
struct LargeFrame(usize);

impl LargeFrame {
    fn reserve(len: usize) -> io::Result<Option<LargeFrame>> {
        if len <= LARGE_WORK_MESSAGE {
            return Ok(None);
        }
        let mut held = LARGE_FRAME_BYTES.load(Ordering::Relaxed);
        loop {
            if held + len > LARGE_FRAME_BUDGET {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "a message of {len} bytes does not fit in the {LARGE_FRAME_BUDGET} bytes this node reads of large messages at once ({held} in use); retry later"
                    ),
                ));
            }
            match LARGE_FRAME_BYTES.compare_exchange_weak(
                held,
                held + len,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Some(LargeFrame(len))),
                Err(now) => held = now,
            }
        }
    }
}

impl Drop for LargeFrame {
    fn drop(&mut self) {
        LARGE_FRAME_BYTES.fetch_sub(self.0, Ordering::AcqRel);
    }
}

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
    let _budget = LargeFrame::reserve(len)?;
    let buf = read_body(io, len).await?;
    wire::decode_frame(&buf, limit).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Read exactly `len` bytes, reserving at most [`FRAME_PREALLOC`] before they arrive.
async fn read_body<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len.min(FRAME_PREALLOC));
    let got = io.take(len as u64).read_to_end(&mut buf).await?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the stream ended after {got} of the {len} bytes its frame declared"),
        ));
    }
    Ok(buf)
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

    #[tokio::test]
    async fn large_frames_are_read_within_a_node_wide_budget() {
        let big = LARGE_WORK_MESSAGE + 1;
        let held: Vec<_> = (0..LARGE_FRAME_BUDGET / big)
            .map(|_| LargeFrame::reserve(big).unwrap().unwrap())
            .collect();
        let err = LargeFrame::reserve(big).err().unwrap();
        assert!(err.to_string().contains("retry later"), "{err}");
        // Small frames never count; a large one fits again once one is read.
        assert!(LargeFrame::reserve(LARGE_WORK_MESSAGE).unwrap().is_none());
        drop(held);
        assert!(LargeFrame::reserve(big).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_declared_length_is_not_reserved_before_its_bytes_arrive() {
        // Declares 4 MiB, sends 10 bytes and ends: an error, and nothing near 4 MiB held.
        let declared = 4 * 1024 * 1024;
        let mut short = (declared as u32).to_be_bytes().to_vec();
        short.extend_from_slice(&[7; 10]);
        let err = read_frame::<_, String>(&mut short.as_slice(), declared)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("10 of the 4194304 bytes"), "{err}");
        let body = read_body(&mut &[7u8; 10][..], 10).await.unwrap();
        assert_eq!(body, vec![7; 10]);
        // The buffer of a body still arriving is bounded by the bytes received.
        let mut partial = &[1u8; 100][..];
        let mut buf = Vec::with_capacity(declared.min(FRAME_PREALLOC));
        let _ = (&mut partial)
            .take(declared as u64)
            .read_to_end(&mut buf)
            .await;
        assert!(buf.capacity() <= FRAME_PREALLOC, "{}", buf.capacity());
    }
}

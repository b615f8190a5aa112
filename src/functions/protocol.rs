//! The frames fnlb and a runtime bootstrap exchange (docs/function-protocol.md).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const INVOKE: u8 = 1;
/// fnlb → zygote: fork an instance that connects to this socket path.
pub const FORK: u8 = 2;
/// fnlb → forked instance: load the function now (an instance forked ahead of time waits for it).
pub const START: u8 = 3;
/// fnlb → zygote: start a Node.js spare under a keeper (payload: JSON `{socket, argv, env}`).
pub const SPARE: u8 = 4;
pub const READY: u8 = 10;
pub const INIT_ERROR: u8 = 11;
pub const LOG: u8 = 12;
pub const RESULT: u8 = 13;
pub const ERROR: u8 = 14;
/// zygote → fnlb: the fork happened (payload: the child's pid as the zygote sees it).
pub const FORKED: u8 = 15;

/// The largest frame either side may send: a 6 MB event or response with room for its envelope.
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 1;

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the instance closed its channel")]
    Closed,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("channel i/o failed")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. A clean end of stream before a frame starts is `Closed`.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Frame, FrameError> {
    let mut header = [0u8; 5];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = BytesMut::zeroed(len - 1);
    reader.read_exact(&mut payload).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })?;
    Ok(Frame { kind: header[4], payload: payload.freeze() })
}

/// Writes one frame built from parts, in one write.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, kind: u8, parts: &[&[u8]]) -> Result<(), FrameError> {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.push(kind);
    for part in parts {
        buf.extend_from_slice(part);
    }
    writer.write_all(&buf).await?;
    Ok(())
}

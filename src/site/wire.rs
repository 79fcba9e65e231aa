//! Faults below HTTP framing, which hyper refuses to produce: a body longer
//! than its Content-Length (`long-body`) and malformed chunked encoding
//! (`bad-chunked`). The site answers such a request with a 307 to a second,
//! raw listener on the same address, which reads the request head and writes
//! the broken bytes itself, then closes the connection. When the site speaks
//! HTTPS, so does this listener, with the same certificate: the broken bytes
//! arrive inside a sound TLS stream, as from a buggy server behind TLS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::faults::{resolve, Fault};

/// Bytes of `long-body` sent beyond the declared Content-Length.
pub const LONG_BODY_EXTRA: usize = 256;

/// Largest request head read; a client sending more is cut off.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves wire faults on `listener`, over TLS with `tls`, until the runtime
/// stops.
pub async fn serve(
    listener: TcpListener,
    flags: Arc<HashMap<String, Bytes>>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: as the TLS listener does,
            // wait rather than spin until some are closed.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (flags, tls) = (Arc::clone(&flags), tls.clone());
        tokio::spawn(async move {
            // The handshake shares the deadline of the whole answer.
            let _ = tokio::time::timeout(HEAD_TIMEOUT * 2, async {
                match tls {
                    Some(tls) => answer(tls.accept(stream).await?, &flags).await,
                    None => answer(stream, &flags).await,
                }
            })
            .await;
        });
    }
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    flags: &HashMap<String, Bytes>,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let requested = request_name(&head);
    let resolved = requested
        .as_deref()
        .and_then(|name| resolve(name, |n| flags.contains_key(n)));
    let response = match resolved {
        Some((flag, Some(fault @ (Fault::LongBody | Fault::BadChunked)))) => {
            let jpeg = &flags[flag];
            broken(fault, jpeg)
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    stream.write_all(&response).await?;
    stream.flush().await?;
    // Let the client read it all before the close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.shutdown().await
}

/// The bytes of a broken answer.
fn broken(fault: Fault, jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + 256);
    if fault == Fault::LongBody {
        // Declares less than it sends: a client that trusts the header keeps a
        // truncated picture and finds the rest where the next response should be.
        let declared = jpeg.len().saturating_sub(LONG_BODY_EXTRA);
        out.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(jpeg);
    } else {
        // A valid first chunk, then a chunk size that is not hexadecimal.
        let half = &jpeg[..jpeg.len() / 2];
        out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        out.extend_from_slice(format!("{:x}\r\n", half.len()).as_bytes());
        out.extend_from_slice(half);
        out.extend_from_slice(b"\r\nzz\r\nnot a chunk\r\n");
    }
    out
}

async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The flag name of `GET /.../{name}.jpg HTTP/1.1`, percent-decoded.
fn request_name(head: &[u8]) -> Option<String> {
    let line = head.split(|&b| b == b'\r').next()?;
    let path = std::str::from_utf8(line).ok()?.split(' ').nth(1)?;
    let file = path.split('?').next()?.rsplit('/').next()?;
    let name = file.strip_suffix(".jpg")?;
    Some(
        percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .ok()?
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names() {
        let head =
            b"GET /images/pictures/flags96/C%C3%B4te__long-body.jpg HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(request_name(head).as_deref(), Some("Côte__long-body"));
        assert_eq!(request_name(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_name(b"\xff\xfe"), None);
    }

    #[test]
    fn long_body_sends_more_than_it_declares() {
        let jpeg = vec![7u8; 1000];
        let out = broken(Fault::LongBody, &jpeg);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Content-Length: 744\r\n"), "{text}");
        assert!(out.ends_with(&jpeg));
    }
}

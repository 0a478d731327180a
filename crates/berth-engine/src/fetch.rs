//! Plain-HTTP downloads for `ADD <url>`: enough HTTP/1.1 for a file
//! server (redirects, Content-Length, chunked bodies). TLS arrives with the
//! registry client; until then https URLs are refused with that reason.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use berth_oci::{Digest, Hasher};

use crate::{Error, Result};

fn fail(url: &str, msg: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("ADD {url}: {msg}"))
}

/// Downloads `url` into `dest`; returns the content's sha256.
pub(crate) fn http_get(url: &str, dest: &Path) -> Result<Digest> {
    let mut current = url.to_string();
    for _ in 0..6 {
        if current.starts_with("https://") {
            return Err(fail(
                url,
                "https downloads are not supported yet (TLS comes with the registry client); use http:// or a file in the context",
            ));
        }
        let rest = current
            .strip_prefix("http://")
            .ok_or_else(|| fail(url, format!("unsupported URL {current:?}")))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let mut sock =
            TcpStream::connect(&addr).map_err(|e| fail(url, format!("connect to {addr}: {e}")))?;
        sock.set_read_timeout(Some(Duration::from_secs(60))).ok();
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: berth\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| fail(url, e))?;
        let mut r = BufReader::new(sock);
        let mut status = String::new();
        r.read_line(&mut status).map_err(|e| fail(url, e))?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| fail(url, format!("not an HTTP response: {:?}", status.trim())))?;
        let (length, chunked, location) = read_headers(&mut r, url)?;
        if matches!(code, 301 | 302 | 303 | 307 | 308) {
            let loc =
                location.ok_or_else(|| fail(url, format!("redirect {code} without a Location")))?;
            current = if loc.starts_with('/') {
                format!("http://{hostport}{loc}")
            } else {
                loc
            };
            continue;
        }
        if code != 200 {
            return Err(fail(url, format!("the server answered {}", status.trim())));
        }
        let mut out = File::create(dest).map_err(Error::io("create", dest))?;
        let mut hasher = Hasher::sha256();
        let mut sink = |buf: &[u8]| -> Result<()> {
            hasher.update(buf);
            out.write_all(buf).map_err(Error::io("write", dest))
        };
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).map_err(|e| fail(url, e))?;
                let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| fail(url, format!("bad chunk size {:?}", size.trim())))?;
                if n == 0 {
                    break;
                }
                copy_exact(&mut r, n, &mut sink).map_err(|e| fail(url, e))?;
                let mut crlf = String::new();
                r.read_line(&mut crlf).map_err(|e| fail(url, e))?;
            }
        } else if let Some(n) = length {
            copy_exact(&mut r, n, &mut sink).map_err(|e| fail(url, e))?;
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = r.read(&mut buf).map_err(|e| fail(url, e))?;
                if n == 0 {
                    break;
                }
                sink(&buf[..n])?;
            }
        }
        return Ok(hasher.finish());
    }
    Err(fail(url, "too many redirects"))
}

/// The response headers Berth acts on: Content-Length, chunked
/// Transfer-Encoding, Location.
fn read_headers(
    r: &mut BufReader<TcpStream>,
    url: &str,
) -> Result<(Option<u64>, bool, Option<String>)> {
    let mut length = None;
    let mut chunked = false;
    let mut location = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| fail(url, e))? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse::<u64>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "location" => location = Some(v.to_string()),
                _ => {}
            }
        }
    }
    Ok((length, chunked, location))
}

fn copy_exact<R: Read>(
    r: &mut R,
    mut n: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body ended early",
            ));
        }
        sink(&buf[..got]).map_err(|e| io::Error::other(e.to_string()))?;
        n -= got as u64;
    }
    Ok(())
}

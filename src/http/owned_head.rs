//! Gives each Socket.IO request a head of its own, so a connected socket does not pin the 8 KiB
//! buffer its connection was read with.
//!
//! hyper parses a request without copying: the URI and every header value are slices of the
//! connection's read buffer (8 KiB to start). Engine.IO keeps the parts of the request that opened
//! a socket for the socket's whole life, and the websocket task keeps its upgrade request's parts
//! too. Any one slice keeps the whole buffer alive, which was 8 KiB of every idle socket's ~33 KiB.
//! Copying the URI and the header values (a few hundred bytes) lets hyper's buffer go as soon as
//! the request has been read.

use axum::http::{HeaderValue, Uri};

/// Where Socket.IO requests arrive; other routes answer at once and need no copy.
const SOCKET_IO_PATH: &str = "/socket.io";

/// Copies the head of a Socket.IO request out of the connection's read buffer; other requests
/// are left as they are.
pub fn own_socket_io_head<B>(request: &mut axum::http::Request<B>) {
    if request.uri().path().starts_with(SOCKET_IO_PATH) {
        detach_head(request);
    }
}

/// Replaces the URI and every header value with copies that share nothing with the read buffer.
/// Header names need no copy: hyper already copies the ones it does not know.
fn detach_head<B>(request: &mut axum::http::Request<B>) {
    // Parsing what was already parsed cannot fail; were it to, the original stays in place.
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    for value in request.headers_mut().values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;

    use super::*;

    /// A request built the way hyper builds one: URI and header values sliced from one buffer.
    fn request_sliced_from(buffer: &Bytes) -> axum::http::Request<()> {
        let text = std::str::from_utf8(buffer).unwrap();
        let slice = |needle: &str| {
            let start = text.find(needle).unwrap();
            buffer.slice(start..start + needle.len())
        };
        let mut request = axum::http::Request::new(());
        *request.uri_mut() = Uri::from_maybe_shared(slice("/socket.io/?EIO=4&transport=websocket")).unwrap();
        let headers = request.headers_mut();
        headers.insert("host", HeaderValue::from_maybe_shared(slice("127.0.0.1:3000")).unwrap());
        let mut cookie = HeaderValue::from_maybe_shared(slice("io=abc")).unwrap();
        cookie.set_sensitive(true);
        headers.insert("cookie", cookie);
        headers.append("x-forwarded-for", HeaderValue::from_maybe_shared(slice("10.0.0.1")).unwrap());
        headers.append("x-forwarded-for", HeaderValue::from_maybe_shared(slice("10.0.0.2")).unwrap());
        request
    }

    fn read_buffer() -> Bytes {
        let head = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\
                    Cookie: io=abc\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n";
        let mut buffer = head.as_bytes().to_vec();
        buffer.resize(8192, 0);
        Bytes::from(buffer)
    }

    #[test]
    fn a_detached_request_releases_the_read_buffer_and_reads_the_same() {
        let buffer = read_buffer();
        let mut request = request_sliced_from(&buffer);
        assert!(!buffer.is_unique(), "the request starts out sharing the buffer");

        detach_head(&mut request);

        assert!(buffer.is_unique(), "nothing in the request may still point into the read buffer");
        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(request.uri().query(), Some("EIO=4&transport=websocket"));
        assert_eq!(request.headers()["host"], "127.0.0.1:3000");
        assert!(request.headers()["cookie"].is_sensitive());
        let forwarded: Vec<_> = request.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn only_socket_io_requests_are_copied() {
        let buffer = read_buffer();
        let mut other = request_sliced_from(&buffer);
        *other.uri_mut() = Uri::from_static("/health");
        own_socket_io_head(&mut other);
        assert!(!buffer.is_unique(), "a short-lived request keeps hyper's zero-copy head");
        drop(other);

        let mut socket_io = request_sliced_from(&buffer);
        own_socket_io_head(&mut socket_io);
        assert!(buffer.is_unique());
    }
}

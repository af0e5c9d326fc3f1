//! The table of hostile (and control) requests: each a client's raw bytes, the statuses it
//! must get, whether the connection then closes, and what the upstream may receive.

use crate::support::token;
use crate::upstream::Received;
use platform_auth::Role;

/// A hostile (or control) exchange and what must come of it.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) send: Vec<u8>,
    /// The statuses the client gets, in order.
    pub(crate) statuses: &'static [u16],
    /// The gateway closes the connection after them.
    pub(crate) closes: bool,
    /// What the upstream receives: method, path, body.
    pub(crate) upstream: &'static [(&'static str, &'static str, &'static [u8])],
    /// Further checks of what the upstream received.
    pub(crate) check: fn(&[Received]),
}

fn no_check(_: &[Received]) {}

const LOGIN: &str = "POST /api/v1/auth/login HTTP/1.1\r\nHost: shop\r\n";

fn raw(parts: &[&str]) -> Vec<u8> {
    parts.concat().into_bytes()
}

pub(crate) fn cases() -> Vec<Case> {
    let admin = token(Role::Admin, uuid::Uuid::now_v7());
    let smuggled_register =
        "POST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\n{}";
    let mut long_line = "GET /api/v1/products?q=".to_owned();
    long_line.push_str(&"a".repeat(9 * 1024));
    long_line.push_str(" HTTP/1.1\r\nHost: shop\r\n\r\n");
    let mut big_head = "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\n".to_owned();
    for i in 0..400 {
        big_head.push_str(&format!(
            "X-Pad-{i}: 0123456789012345678901234567890123\r\n"
        ));
    }
    big_head.push_str("\r\n");
    vec![
        // --- Controls: what must pass, exactly once.
        Case {
            name: "plain GET",
            send: raw(&["GET /api/v1/products/a HTTP/1.1\r\nHost: shop\r\n\r\n"]),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/products/a", b"")],
            check: no_check,
        },
        Case {
            name: "POST with a length",
            send: raw(&[LOGIN, "Content-Length: 5\r\n\r\nhello"]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: |r| assert_eq!(r[0].header("content-length"), Some("5")),
        },
        Case {
            name: "chunked POST (case-insensitive coding)",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: no_check,
        },
        Case {
            name: "equal repeated lengths are one length",
            send: raw(&[
                LOGIN,
                "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"hello")],
            check: |r| assert_eq!(r[0].header("content-length"), Some("5")),
        },
        Case {
            name: "pipelined requests are answered in order",
            send: raw(&[
                LOGIN,
                "Content-Length: 3\r\n\r\nonePOST /api/v1/auth/login HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\n\r\ntwoGET /api/v1/products/3 HTTP/1.1\r\nHost: shop\r\n\r\n",
            ]),
            statuses: &[200, 200, 200],
            closes: false,
            upstream: &[
                ("POST", "/api/v1/auth/login", b"one"),
                ("POST", "/api/v1/auth/login", b"two"),
                ("GET", "/api/v1/products/3", b""),
            ],
            check: no_check,
        },
        Case {
            name: "Connection: close is echoed and honoured",
            send: raw(&[
                "GET /api/v1/products/a HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\nGET /api/v1/products/b HTTP/1.1\r\nHost: shop\r\n\r\n",
            ]),
            statuses: &[200],
            closes: true,
            upstream: &[("GET", "/api/v1/products/a", b"")],
            check: no_check,
        },
        // --- CL.TE, TE.CL, TE.TE.
        Case {
            name: "CL.TE: Content-Length and chunked",
            send: raw(&[
                LOGIN,
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.CL: chunked then Content-Length",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: a second, unknown coding",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: coding list ending in chunked",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: chunked twice",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: xchunked",
            send: raw(&[LOGIN, "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: whitespace before the colon",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: tab before the colon",
            send: raw(&[LOGIN, "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "TE.TE: obs-fold hides the coding",
            send: raw(&[
                LOGIN,
                "Content-Length: 3\r\nX-Pad: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "Transfer-Encoding on HTTP/1.0",
            send: raw(&[
                "POST /api/v1/auth/login HTTP/1.0\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Lengths.
        Case {
            name: "two different Content-Lengths",
            send: raw(&[
                LOGIN,
                "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a Content-Length list with different values",
            send: raw(&[LOGIN, "Content-Length: 5, 6\r\n\r\nhello!"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a Content-Length list, even of equal values",
            send: raw(&[LOGIN, "Content-Length: 5, 5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "Content-Length with a sign",
            send: raw(&[LOGIN, "Content-Length: +5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "negative Content-Length",
            send: raw(&[LOGIN, "Content-Length: -1\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "hexadecimal Content-Length",
            send: raw(&[LOGIN, "Content-Length: 0x5\r\n\r\nhello"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "empty Content-Length",
            send: raw(&[LOGIN, "Content-Length: \r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Connection naming framing headers (the hole this suite was written for).
        Case {
            name: "Connection names Content-Length around a smuggled request",
            send: raw(&[
                LOGIN,
                &format!(
                    "Connection: Content-Length\r\nContent-Length: {}\r\n\r\n{smuggled_register}",
                    smuggled_register.len()
                ),
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"POST /api/v1/users HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\n{}")],
            check: |r| {
                let length = r[0].body.len().to_string();
                assert_eq!(r[0].header("content-length"), Some(length.as_str()));
            },
        },
        Case {
            name: "Connection names Transfer-Encoding on a chunked body",
            send: raw(&[
                LOGIN,
                "Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("POST", "/api/v1/auth/login", b"abc")],
            check: no_check,
        },
        Case {
            name: "Connection names Host and the identity headers",
            send: raw(&[
                "GET /api/v1/products/x HTTP/1.1\r\nHost: shop\r\nConnection: host, x-request-id, x-forwarded-for\r\nX-Request-Id: mine-1\r\n\r\n",
            ]),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/products/x", b"")],
            check: |r| {
                assert!(r[0].header("host").is_some());
                assert_eq!(r[0].header("x-request-id"), Some("mine-1"));
                assert_eq!(r[0].header("x-forwarded-for"), Some("127.0.0.1"));
            },
        },
        Case {
            name: "Connection names Authorization on an admin route",
            send: format!(
                "GET /api/v1/admin/products/x HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {admin}\r\nConnection: authorization, x-user-role\r\n\r\n"
            )
            .into_bytes(),
            statuses: &[200],
            closes: false,
            upstream: &[("GET", "/api/v1/admin/products/x", b"")],
            check: |r| {
                assert!(r[0].header("authorization").is_some_and(|a| a.starts_with("Bearer ")));
                assert_eq!(r[0].header("x-user-role"), Some("admin"));
            },
        },
        // --- Heads that parse two ways.
        Case {
            name: "bare LF line endings",
            send: raw(&["GET /api/v1/products HTTP/1.1\nHost: shop\n\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a bare LF inside the head",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\nTransfer-Encoding: chunked\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a bare CR inside the head",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\rX: 1\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "no Host on HTTP/1.1",
            send: raw(&["GET /api/v1/products HTTP/1.1\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "two Hosts",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nHost: evil\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a NUL in a header value",
            send: raw(&[
                "GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nX-A: a\0b\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a request line over the limit",
            send: long_line.into_bytes(),
            statuses: &[414],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a head over the limit",
            send: big_head.into_bytes(),
            statuses: &[431],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "CONNECT",
            send: raw(&["CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n"]),
            statuses: &[405],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Chunked bodies (streamed to the upstream, so it may see a cut-off request,
        // never a complete one).
        Case {
            name: "a chunk size that is not hex",
            send: raw(&[LOGIN, "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a chunk size over 16 hex digits",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "a chunk extension with a bare LF",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        Case {
            name: "chunk data not followed by CRLF",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
            ]),
            statuses: &[400],
            closes: true,
            upstream: &[],
            check: no_check,
        },
        // --- Pipelines with a hostile request behind a good one.
        Case {
            name: "a good request, then CL.TE",
            send: raw(&[
                "GET /api/v1/products/first HTTP/1.1\r\nHost: shop\r\n\r\n",
                LOGIN,
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            ]),
            statuses: &[200, 400],
            closes: true,
            upstream: &[("GET", "/api/v1/products/first", b"")],
            check: no_check,
        },
        Case {
            name: "a good chunked request, then a bare-LF one",
            send: raw(&[
                LOGIN,
                "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nGET /api/v1/products HTTP/1.1\nHost: shop\n\n",
            ]),
            statuses: &[200, 400],
            closes: true,
            upstream: &[("POST", "/api/v1/auth/login", b"ok")],
            check: no_check,
        },
    ]
}

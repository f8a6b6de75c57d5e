//! The browser client at `/demo`: its files are built into the binary, so the page works wherever
//! the server runs, with nothing loaded from the internet.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

/// `(path under /demo/, content type, bytes)`.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../examples/web/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../examples/web/app.js")),
    ("bandsync-clock.js", "text/javascript; charset=utf-8", include_bytes!("../../examples/web/bandsync-clock.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../examples/web/style.css")),
    (
        "vendor/socket.io.esm.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../examples/web/vendor/socket.io.esm.min.js"),
    ),
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| async { file("index.html") }))
        .route("/demo/{*path}", get(|Path(path): Path<String>| async move { file(&path) }))
}

fn file(path: &str) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => {
            let mut response = bytes.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

//! The web dashboard at `/ui`: a single page of plain HTML, CSS and JavaScript (no npm, no
//! CDN, nothing fetched from elsewhere), compiled into the binary. docs/ui.md describes it.
//!
//! The page and its assets hold no data, so they are served without the token (the guard
//! still checks Host and Origin); every call the page makes for data goes to the API with
//! the bearer token, which the page keeps in the browser's `sessionStorage`. Every answer
//! here carries strict security headers ([`SECURITY_HEADERS`]): scripts and styles only
//! from the node itself, none inline, no framing.

use super::ApiErr;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the dashboard lives.
pub const UI_PATH: &str = "/ui";

/// Whether a request path belongs to the dashboard's static files (served without the token).
pub fn is_ui_path(path: &str) -> bool {
    path == UI_PATH || path.starts_with("/ui/")
}

/// The headers of every dashboard answer.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-cache"),
];

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// Every file under `/ui/assets/`.
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("graph.js", JS),
    asset!("overview.js", JS),
    asset!("peers.js", JS),
    asset!("services.js", JS),
    asset!("executions.js", JS),
    asset!("execution.js", JS),
    asset!("processes.js", JS),
    asset!("events.js", JS),
];

const INDEX: &[u8] = include_bytes!("assets/index.html");

/// The dashboard's routes, merged into the Application API's router (inside its guard).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(UI_PATH, get(index))
        .route("/ui/", get(index))
        .route("/ui/assets/{name}", get(asset))
}

fn with_headers(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
    for (k, v) in SECURITY_HEADERS {
        r.headers_mut().insert(
            HeaderName::from_static(k),
            v.parse().expect("a valid header"),
        );
    }
    r
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => with_headers(a.content_type, a.body),
        None => ApiErr::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file `{name}`"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_the_page_loads_no_inline_script() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
        let html = std::str::from_utf8(INDEX).unwrap();
        assert!(
            !html.contains("<script>"),
            "inline scripts are refused by the CSP"
        );
        assert!(
            !html.contains("style="),
            "inline styles are refused by the CSP"
        );
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            assert!(!text.contains("innerHTML"), "{}: use textContent", a.name);
            for far in ["https://", "src=\"http", "href=\"http", "url(http"] {
                assert!(!text.contains(far), "{}: nothing from elsewhere", a.name);
            }
        }
    }

    #[test]
    fn the_dashboard_paths_are_recognised() {
        assert!(is_ui_path("/ui"));
        assert!(is_ui_path("/ui/assets/app.js"));
        assert!(!is_ui_path("/uix"));
        assert!(!is_ui_path("/v1/node"));
    }
}

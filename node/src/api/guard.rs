//! Who may call the Application API, checked before any handler runs.
//!
//! The API drives Docker builds that run as root, so it is never open, not even on
//! loopback: a web page the operator visits can reach loopback too. Three checks, each
//! answering with its own code:
//! - a bearer token, always (generated into the data dir on first start; [`ApiToken`]);
//! - `Host` must name this node: an IP literal, `localhost`, or a name the operator
//!   allowed (`--api-host`). DNS rebinding sends the attacker's domain name as Host;
//! - `Origin`, when a browser sends one, must be the node's own (same scheme, host and
//!   port as the request's Host): a cross-origin page cannot use the API, the node's own
//!   pages (the dashboard) can;
//! - a request body must say what it is (`application/json`, or `application/x-tar` for
//!   a deploy): an HTML form can only send urlencoded, multipart or text bodies.

use super::{ApiErr, bearer, constant_time_eq};
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};

/// Paths anyone may read without the token: the API's own description. The dashboard's
/// static files (`/ui`, `/ui/...`: no data in them) are public too, see [`is_public`].
pub const PUBLIC_PATHS: &[&str] = &["/v1/openapi.json"];

/// Whether `path` may be read without the token.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || super::ui::is_ui_path(path)
}

/// What a request must show to be served.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The bearer token.
    pub token: String,
    /// Host names (besides IP literals and `localhost`) that name this node, lowercase.
    pub allowed_hosts: Vec<String>,
}

impl AccessPolicy {
    /// Check a request's headers; `Err` is the answer to send instead of serving it.
    pub fn check(&self, req: &Request) -> Result<(), ApiErr> {
        let headers = req.headers();
        let host = self.check_host(headers)?;
        check_origin(headers, host)?;
        if !is_public(req.uri().path()) {
            let ok = bearer(headers).is_some_and(|t| constant_time_eq(t, &self.token));
            if !ok {
                return Err(ApiErr::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this node's API requires `Authorization: Bearer <token>`: the node wrote its token to \
                     <data dir>/api.token at first start (mesg finds it there for a local node; otherwise \
                     pass --token or set MESG_TOKEN)",
                ));
            }
        }
        check_content_type(req.method(), req.uri().path(), headers)
    }

    /// The request's Host (`name` or `name:port`), when it names this node.
    fn check_host<'a>(&self, headers: &'a HeaderMap) -> Result<&'a str, ApiErr> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                ApiErr::new(
                    StatusCode::BAD_REQUEST,
                    "bad_host",
                    "the request has no valid Host header",
                )
            })?;
        let name = host_name(host).to_ascii_lowercase();
        let trimmed = name.trim_start_matches('[').trim_end_matches(']');
        let allowed = trimmed.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.contains(&name);
        if allowed {
            Ok(host)
        } else {
            Err(ApiErr::new(
                StatusCode::MISDIRECTED_REQUEST,
                "bad_host",
                format!(
                    "Host `{host}` does not name this node (DNS rebinding is refused); use its IP address or \
                     `localhost`, or start the node with --api-host {name}"
                ),
            ))
        }
    }
}

/// The host part of a Host header value (`a.b:80` → `a.b`, `[::1]:80` → `[::1]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// A browser's `Origin` must be the origin the request was sent to.
fn check_origin(headers: &HeaderMap, host: &str) -> Result<(), ApiErr> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host));
    if same {
        Ok(())
    } else {
        Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            format!(
                "cross-origin calls are refused: Origin `{origin}` is not this node's (`http://{host}`)"
            ),
        ))
    }
}

/// A body-carrying request must declare JSON (or a tar for a deploy).
fn check_content_type(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiErr> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() != "0");
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let expected = if path == "/v1/services" {
        "application/x-tar"
    } else {
        "application/json"
    };
    match content_type.as_deref() {
        Some(t) if t == expected => Ok(()),
        None if !has_body => Ok(()),
        other => Err(ApiErr::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{method} {path} takes `Content-Type: {expected}`, not {}",
                other.map_or("none".to_string(), |t| format!("`{t}`"))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn policy() -> AccessPolicy {
        AccessPolicy {
            token: "t0ken".into(),
            allowed_hosts: vec!["node1".into()],
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn code(r: Result<(), ApiErr>) -> String {
        r.err().map(|e| e.body.code).unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn the_token_is_always_required_but_for_the_api_description() {
        let p = policy();
        let host = ("host", "127.0.0.1:50052");
        assert_eq!(
            code(p.check(&req("GET", "/v1/node", &[host]))),
            "unauthorized"
        );
        let wrong = ("authorization", "Bearer nope");
        assert_eq!(
            code(p.check(&req("GET", "/v1/node", &[host, wrong]))),
            "unauthorized"
        );
        let right = ("authorization", "Bearer t0ken");
        assert_eq!(code(p.check(&req("GET", "/v1/node", &[host, right]))), "ok");
        assert_eq!(
            code(p.check(&req("GET", "/v1/openapi.json", &[host]))),
            "ok"
        );
        // The dashboard's static files hold no data; its calls for data need the token.
        for page in ["/ui", "/ui/", "/ui/assets/app.js"] {
            assert_eq!(code(p.check(&req("GET", page, &[host]))), "ok", "{page}");
        }
        assert_eq!(code(p.check(&req("GET", "/uix", &[host]))), "unauthorized");
        // Host and Origin are still checked on the dashboard.
        let evil = ("host", "evil.example");
        assert_eq!(code(p.check(&req("GET", "/ui", &[evil]))), "bad_host");
        let foreign = ("origin", "https://evil.example");
        assert_eq!(
            code(p.check(&req("GET", "/ui", &[host, foreign]))),
            "forbidden_origin"
        );
    }

    #[test]
    fn a_foreign_host_name_is_refused_ip_literals_localhost_and_allowed_names_pass() {
        let p = policy();
        let auth = ("authorization", "Bearer t0ken");
        for ok in [
            "127.0.0.1:50052",
            "localhost:50052",
            "[::1]:50052",
            "10.0.0.5",
            "node1:50052",
        ] {
            assert_eq!(
                code(p.check(&req("GET", "/v1/node", &[("host", ok), auth]))),
                "ok",
                "{ok}"
            );
        }
        for bad in [
            "evil.example:50052",
            "evil.example",
            "127.0.0.1.evil.example:50052",
        ] {
            assert_eq!(
                code(p.check(&req("GET", "/v1/node", &[("host", bad), auth]))),
                "bad_host",
                "{bad}"
            );
        }
        assert_eq!(code(p.check(&req("GET", "/v1/node", &[auth]))), "bad_host");
    }

    #[test]
    fn a_cross_origin_page_is_refused_the_nodes_own_origin_passes() {
        let p = policy();
        let (host, auth) = (
            ("host", "127.0.0.1:50052"),
            ("authorization", "Bearer t0ken"),
        );
        let own = ("origin", "http://127.0.0.1:50052");
        assert_eq!(
            code(p.check(&req("GET", "/v1/node", &[host, auth, own]))),
            "ok"
        );
        for bad in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:8080",
            "http://localhost:50052",
        ] {
            let o = ("origin", bad);
            assert_eq!(
                code(p.check(&req("GET", "/v1/node", &[host, auth, o]))),
                "forbidden_origin",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_body_must_declare_json_or_a_tar_for_a_deploy() {
        let p = policy();
        let (host, auth) = (
            ("host", "127.0.0.1:50052"),
            ("authorization", "Bearer t0ken"),
        );
        let form = ("content-type", "application/x-www-form-urlencoded");
        let text = ("content-type", "text/plain");
        let json = ("content-type", "application/json; charset=utf-8");
        let tar = ("content-type", "application/x-tar");
        let cancel = "/v1/executions/x/cancel";
        assert_eq!(
            code(p.check(&req("POST", cancel, &[host, auth, form]))),
            "unsupported_media_type"
        );
        assert_eq!(
            code(p.check(&req("POST", cancel, &[host, auth, text]))),
            "unsupported_media_type"
        );
        assert_eq!(
            code(p.check(&req("POST", cancel, &[host, auth, json]))),
            "ok"
        );
        assert_eq!(
            code(p.check(&req("POST", cancel, &[host, auth, ("content-length", "0")]))),
            "ok"
        );
        assert_eq!(
            code(p.check(&req("POST", "/v1/services", &[host, auth, tar]))),
            "ok"
        );
        assert_eq!(
            code(p.check(&req("POST", "/v1/services", &[host, auth, text]))),
            "unsupported_media_type"
        );
        assert_eq!(
            code(p.check(&req("POST", "/v1/services", &[host, auth]))),
            "unsupported_media_type"
        );
    }
}

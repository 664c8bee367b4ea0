//! The browser chat page, embedded in the binary: the HTML, its script and
//! its style sheet, each served with headers that keep the page from being
//! framed by another site or running script from anywhere else.

use axum::http::header::{self, HeaderName};
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../static/index.html");
const SCRIPT: &str = include_str!("../static/app.js");
const STYLE: &str = include_str!("../static/app.css");

/// Only this server's own script, style and WebSocket; no inline script
/// (which is why the script and style are files of their own), no plugins,
/// no framing (clickjacking), forms and `<base>` pinned to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The headers every page resource carries.
pub fn security_headers() -> [(HeaderName, &'static str); 4] {
    [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // For browsers without `frame-ancestors`.
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // The WebSocket URL carries the token; no page URL should leak by Referer.
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

fn resource(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (security_headers(), [(header::CONTENT_TYPE, content_type)], body)
}

pub async fn index() -> impl IntoResponse {
    resource("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> impl IntoResponse {
    resource("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    resource("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_the_policy_would_block() {
        assert!(INDEX.contains(r#"<script src="/app.js"></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/app.css">"#));
        assert_eq!(INDEX.matches("<script").count(), 1, "only the external script");
        assert!(!INDEX.contains("<style") && !INDEX.contains("style=\""));
        assert!(!INDEX.contains(" onclick=") && !INDEX.contains(" onsubmit="));
        assert!(!SCRIPT.contains(".innerHTML"), "user text goes through textContent");
    }
}

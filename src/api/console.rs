//! The console: the web app for operators and admins (`console/src/`), served
//! at `/` on the API's origin. Its files are compiled into the binary
//! (`include_bytes!`): nothing is fetched at run time and there is no JS build
//! step — plain ES modules, one stylesheet, a service worker and a web app
//! manifest. Only the paths of [`ASSETS`] are served (GET and HEAD); anything
//! else falls through to the API's routes.
//!
//! Every console answer carries a strict Content-Security-Policy: scripts,
//! styles, connections (HTTP and the `/ws` WebSocket), the manifest and the
//! worker from this origin only, no inline script or style, no frames, no
//! plugins. Assets are revalidated (`cache-control: no-cache` with an ETag that
//! is the SHA-256 of the bytes), so a new binary's console is picked up at the
//! next load; the service worker keeps the shell for offline reading.
//!
//! `PROGNOS_CONSOLE_DIR` (development only) serves the same file names from a
//! directory instead, so the console can be edited without rebuilding.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use warp::Filter;
use warp::http::{HeaderValue, Response, StatusCode};

/// One file of the console.
#[derive(Debug)]
pub struct Asset {
    /// The URL path.
    pub path: &'static str,
    /// The file's name under `console/src/`.
    pub file: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// The bytes compiled in.
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:literal) => {
        Asset {
            path: $path,
            file: $file,
            content_type: $ct,
            body: include_bytes!(concat!("../../console/src/", $file)),
        }
    };
}

/// The console's files (the shell is `/`).
pub const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/api.js", "api.js", "text/javascript; charset=utf-8"),
    asset!("/ui.js", "ui.js", "text/javascript; charset=utf-8"),
    asset!("/alerts.js", "alerts.js", "text/javascript; charset=utf-8"),
    asset!("/fleet.js", "fleet.js", "text/javascript; charset=utf-8"),
    asset!("/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    asset!(
        "/onboard.js",
        "onboard.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("/chart.js", "chart.js", "text/javascript; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/sw.js", "sw.js", "text/javascript; charset=utf-8"),
    asset!(
        "/manifest.webmanifest",
        "manifest.webmanifest",
        "application/manifest+json"
    ),
    asset!("/icon.svg", "icon.svg", "image/svg+xml"),
];

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The bytes of `a`: compiled in, or read from `PROGNOS_CONSOLE_DIR`.
fn body_of(a: &Asset) -> (Bytes, Option<String>) {
    if let Some(dir) = std::env::var_os("PROGNOS_CONSOLE_DIR")
        && let Ok(b) = std::fs::read(std::path::Path::new(&dir).join(a.file))
    {
        return (Bytes::from(b), None);
    }
    let i = ASSETS
        .iter()
        .position(|x| std::ptr::eq(x, a))
        .unwrap_or_default();
    (Bytes::from_static(a.body), etags().get(i).cloned())
}

/// The answer for `a` (304 when `if_none_match` names its current ETag).
pub fn respond(a: &Asset, head: bool, if_none_match: Option<&str>) -> Response<Bytes> {
    let (body, etag) = body_of(a);
    let not_modified = match (&etag, if_none_match) {
        (Some(t), Some(h)) => h.split(',').any(|x| x.trim() == t),
        _ => false,
    };
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let body = if head || not_modified {
        Bytes::new()
    } else {
        body
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(a.content_type));
    if let Some(t) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert("etag", t);
    }
    for (k, v) in [
        ("cache-control", "no-cache"),
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

/// GET and HEAD of the console's paths; every other request is rejected (and
/// goes on to the API).
pub fn routes() -> impl Filter<Extract = (Response<Bytes>,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(
            |m: warp::http::Method, p: warp::path::FullPath, inm: Option<String>| async move {
                let head = m == warp::http::Method::HEAD;
                if m != warp::http::Method::GET && !head {
                    return Err(warp::reject::not_found());
                }
                match find(p.as_str()) {
                    Some(a) => Ok(respond(a, head, inm.as_deref())),
                    None => Err(warp::reject::not_found()),
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_present_and_the_shell_loads_only_same_origin_modules() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.file);
        }
        let shell = std::str::from_utf8(find("/").unwrap().body).unwrap();
        // No inline script or style: the CSP would refuse them.
        assert!(!shell.contains("<script>"), "inline script in index.html");
        assert!(!shell.contains("<style"), "inline style in index.html");
        assert!(!shell.contains(" style="), "style attribute in index.html");
        assert!(!shell.contains("http://") && !shell.contains("https://"));
        // Every module a script imports is served.
        for a in ASSETS.iter().filter(|a| a.file.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let name = line.split(['\'', '"']).nth(1).unwrap();
                let path = name.trim_start_matches('.');
                assert!(
                    find(path).is_some(),
                    "{} imports {name}, not served",
                    a.file
                );
            }
        }
    }

    #[test]
    fn answers_carry_the_csp_and_revalidate_by_etag() {
        let a = find("/app.js").unwrap();
        let r = respond(a, false, None);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-security-policy"], CSP);
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let tag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(r.body().len(), a.body.len());
        let again = respond(a, false, Some(&tag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        let other = respond(a, false, Some("\"nope\""));
        assert_eq!(other.status(), StatusCode::OK);
        assert!(find("/nope.js").is_none());
        assert!(find("/api/auth/me").is_none());
    }
}

//! The status page `/` (`cloud.md` §18.1): lineages, pending reviews, the quarantine count and
//! the age of each lineage's last batch, as plain HTML that reloads itself every
//! [`REFRESH_SECONDS`]. Open without a token, but only to clients connecting from a loopback
//! address; anyone else gets 404.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{Html, IntoResponse, Response};
use time::OffsetDateTime;

use super::{ApiError, ApiState};
use crate::quarantine::QuarantineFilter;
use crate::schema_review::ReviewStatus;
use crate::store::LineageFilter;
use crate::{lineage, quarantine, schema_review, with_store};

/// How often the page reloads itself (`<meta http-equiv="refresh">`).
pub const REFRESH_SECONDS: u32 = 5;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`.
pub(super) async fn page(State(state): State<ApiState>, req: Request) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().is_loopback());
    if !local {
        return ApiError::not_found("no such route").into_response();
    }
    match render(&state).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn render(state: &ApiState) -> Result<String, ApiError> {
    let all = LineageFilter::default();
    let lineages = with_store!(&state.inner.store, s => lineage::ops::list(s, &all).await)?;
    let pending = Some(ReviewStatus::Pending);
    let reviews = with_store!(&state.inner.store, s => schema_review::ops::list(s, pending).await)?;
    let all = QuarantineFilter::default();
    let quarantined = with_store!(&state.inner.store, s => quarantine::list(s, &all).await)?.len();
    let now = OffsetDateTime::now_utc();
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>Omega cloud</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style>\
         </head><body><h1>Omega cloud</h1><p id=\"quarantine\">Quarantined messages and rows: \
         {quarantined}</p>",
    );
    let _ = write!(
        h,
        "<h2>Lineages ({})</h2><table><tr><th>device</th><th>table</th><th>status</th>\
         <th>pause causes</th><th>staged rows</th><th>last batch</th><th>lag (s)</th></tr>",
        lineages.len()
    );
    for l in &lineages {
        let causes: Vec<&str> = l.pause_causes.iter().map(|c| c.as_str()).collect();
        let (last, lag) = match l.last_batch_at {
            Some(t) => (
                omega_protocol::time::format_rfc3339(t),
                (now - t).whole_seconds().max(0).to_string(),
            ),
            None => ("—".to_string(), "—".to_string()),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(&l.device_id),
            esc(&l.source_table),
            l.status().as_str(),
            causes.join(", "),
            l.staged_rows,
            last,
            lag
        );
    }
    let _ = write!(
        h,
        "</table><h2>Pending reviews ({})</h2><table><tr><th>id</th><th>scope</th>\
         <th>table</th><th>class</th><th>created</th></tr>",
        reviews.len()
    );
    for r in &reviews {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            esc(&r.scope.key()),
            esc(&r.source_table),
            r.class.as_str(),
            omega_protocol::time::format_rfc3339(r.created_at)
        );
    }
    h.push_str("</table></body></html>");
    Ok(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_is_escaped() {
        assert_eq!(
            super::esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}

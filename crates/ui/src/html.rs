//! HTML building blocks: escaping (everything from storage and from the request is untrusted:
//! repository names, tags, labels, annotations, history lines), URL pieces, sizes and dates,
//! and the page frame every page shares.

use std::fmt::Write;
use std::time::SystemTime;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// What a query parameter value keeps unencoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// A query parameter value, percent-encoded (then HTML-escaped by the caller's [`esc`]).
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY).to_string()
}

/// A byte count for people: `512 B`, `1.5 KiB`, `23.4 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time as `2026-12-06 09:30:12 UTC`.
pub fn date(time: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

/// The short form of a digest for tables: `sha256:0123456789ab`.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// A list's search and sort, carried by its paging and sort links.
#[derive(Clone, Copy)]
pub struct ListQuery<'a> {
    /// The search (`q`).
    pub q: Option<&'a str>,
    /// The sort key (`sort`), when not the default.
    pub sort: Option<&'a str>,
}

impl ListQuery<'_> {
    /// `&q=…&sort=…` for the parameters set.
    fn suffix(&self) -> String {
        let mut out = String::new();
        for (name, value) in [("q", self.q), ("sort", self.sort)] {
            if let Some(value) = value {
                out.push_str(&format!("&{name}={}", query_value(value)));
            }
        }
        out
    }
}

/// "Sort by" links for the list at `path`: `(key, label)` choices, the first the default.
pub fn sort_links(path: &str, query: ListQuery<'_>, choices: &[(&str, &str)]) -> String {
    let current = query.sort.unwrap_or(choices[0].0);
    let mut out = String::from("<nav class=\"sort\" aria-label=\"sort\"><span>Sort by</span>");
    for (key, label) in choices {
        if *key == current {
            let _ = write!(out, "<strong aria-current=\"true\">{}</strong>", esc(label));
        } else {
            let mut url = format!("{path}?sort={key}");
            if let Some(q) = query.q {
                url.push_str(&format!("&q={}", query_value(q)));
            }
            let _ = write!(out, "<a href=\"{}\">{}</a>", esc(&url), esc(label));
        }
    }
    out.push_str("</nav>");
    out
}

/// Paging links and a "showing a–b of n" line for a list at `path` (already a URL path, not
/// escaped), with its search and sort.
pub fn pager(
    path: &str,
    query: ListQuery<'_>,
    start: usize,
    n: usize,
    shown: usize,
    total: usize,
) -> String {
    let link = |from: usize| esc(&format!("{path}?start={from}&n={n}{}", query.suffix()));
    let mut out = String::from("<nav class=\"pager\" aria-label=\"pages\">");
    if shown == 0 {
        let _ = write!(out, "<span>Nothing to show ({total} in all)</span>");
    } else {
        let _ = write!(
            out,
            "<span>Showing {}–{} of {total}</span>",
            start + 1,
            start + shown
        );
    }
    if start > 0 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"{}\">Previous</a>",
            link(start.saturating_sub(n))
        );
    }
    if start + shown < total {
        let _ = write!(out, "<a rel=\"next\" href=\"{}\">Next</a>", link(start + n));
    }
    out.push_str("</nav>");
    out
}

/// A search form for the list at `path`, keeping its sort.
pub fn search_form(path: &str, query: ListQuery<'_>, label: &str) -> String {
    let sort = query.sort.map_or_else(String::new, |s| {
        format!("<input type=\"hidden\" name=\"sort\" value=\"{}\">", esc(s))
    });
    format!(
        "<form class=\"search\" method=\"get\" action=\"{}\" role=\"search\">\
         <label for=\"q\">{}</label><input id=\"q\" name=\"q\" value=\"{}\">{sort}\
         <button type=\"submit\">Search</button></form>",
        esc(path),
        esc(label),
        esc(query.q.unwrap_or(""))
    )
}

/// A page's frame: the header (title, who is logged in, log in/out), then `body`.
pub struct Frame<'a> {
    /// The UI's base path, ending in `/` (`/registry/ui/`).
    pub base: &'a str,
    /// `ui.title`.
    pub site: &'a str,
    /// The page's own title (shown in the browser tab).
    pub title: &'a str,
    /// The logged-in user, when there is one.
    pub user: Option<&'a str>,
    /// Whether the UI offers a login (htpasswd).
    pub login: bool,
    /// Whether to link the administration page.
    pub admin: bool,
    /// Whether to link the access tokens page (OIDC users).
    pub tokens: bool,
}

impl Frame<'_> {
    /// The whole document around `body` (already HTML).
    pub fn render(&self, body: &str) -> String {
        let base = esc(self.base);
        let mut nav = String::new();
        if self.tokens {
            let _ = write!(nav, " <a href=\"{base}tokens\">Access tokens</a>");
        }
        if self.admin {
            let _ = write!(nav, " <a href=\"{base}admin\">Registry</a>");
        }
        let mut out = String::with_capacity(body.len() + 1500);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · {}</title>\
             <link rel=\"stylesheet\" href=\"{base}static/ui.css\">\
             <script src=\"{base}static/ui.js\" defer></script></head><body>\
             <header><a class=\"title\" href=\"{base}\">{}</a><nav><a href=\"{base}\">Repositories</a>{}</nav>\
             <div class=\"who\">",
            esc(self.title),
            esc(self.site),
            esc(self.site),
            nav,
        );
        match (self.user, self.login) {
            (Some(user), _) => {
                let _ = write!(
                    out,
                    "<span>Logged in as <strong>{}</strong></span>\
                     <form method=\"post\" action=\"{base}logout\"><button type=\"submit\">Log out</button></form>",
                    esc(user)
                );
            }
            (None, true) => {
                let _ = write!(out, "<a href=\"{base}login\">Log in</a>");
            }
            (None, false) => {}
        }
        let _ = writeln!(out, "</div></header><main>{body}</main></body></html>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn sizes_and_digests() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(
            short_digest(&format!("sha256:{}", "a".repeat(64))),
            "sha256:aaaaaaaaaaaa"
        );
        assert_eq!(query_value("a b&c"), "a%20b%26c");
    }

    #[test]
    fn dates_are_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 + 61);
        assert_eq!(date(t), "1970-01-02 00:01:01 UTC");
    }
}

//! Prometheus scrapes of a running server's debug server (`http.debug.prometheus`).

use super::oci::Reg;

/// One scrape of the metrics page.
pub struct Scrape(pub String);

impl Scrape {
    pub async fn take(reg: &Reg) -> Scrape {
        let url = reg.server.debug_url.as_ref().expect("debug server started");
        let r = reqwest::get(format!("{url}/metrics"))
            .await
            .expect("scrape");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain"));
        Scrape(r.text().await.expect("body"))
    }

    /// The value of the sample `name` whose labels include every pair in `labels` (0 when
    /// there is none, as for a counter that never moved).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = match series.split_once('{') {
                    Some((m, rest)) => (m, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                (metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

//! Copy-paste pull commands for the common clients, by tag and pinned by digest.

use std::fmt::Write;

use crate::html::esc;

/// The commands for `reference` (`host/repo:tag` or `host/repo@sha256:…`).
fn commands(reference: &str) -> [(&'static str, String); 7] {
    [
        ("docker", format!("docker pull {reference}")),
        ("podman", format!("podman pull {reference}")),
        ("nerdctl", format!("nerdctl pull {reference}")),
        ("ctr", format!("ctr image pull {reference}")),
        ("crictl", format!("crictl pull {reference}")),
        (
            "skopeo",
            format!("skopeo copy docker://{reference} oci-archive:image.tar"),
        ),
        ("Kubernetes", format!("image: {reference}")),
    ]
}

/// The pull command tables for `repo` on `host`: by `tag` (when the page was reached by
/// one) and by `digest`.
pub fn section(host: &str, repo: &str, tag: Option<&str>, digest: &str) -> String {
    let mut out = String::from("<h2>Pull</h2>");
    let mut refs = Vec::new();
    if let Some(tag) = tag {
        refs.push(("By tag", format!("{host}/{repo}:{tag}")));
    }
    refs.push(("By digest", format!("{host}/{repo}@{digest}")));
    for (label, reference) in refs {
        let _ = write!(out, "<h3>{}</h3><table class=\"cmds\"><tbody>", esc(label));
        for (client, command) in commands(&reference) {
            let command = esc(&command);
            let _ = write!(
                out,
                "<tr><td>{client}</td><td><code>{command}</code></td>\
                 <td><button type=\"button\" data-copy=\"{command}\">Copy</button></td></tr>"
            );
        }
        out.push_str("</tbody></table>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_by_tag_and_digest() {
        let d = format!("sha256:{}", "b".repeat(64));
        let html = section("reg.test:5000", "team/app", Some("v1"), &d);
        assert!(html.contains("docker pull reg.test:5000/team/app:v1"));
        assert!(html.contains(&format!("crictl pull reg.test:5000/team/app@{d}")));
        assert!(html.contains(&format!("image: reg.test:5000/team/app@{d}")));
        assert!(
            html.contains("skopeo copy docker://reg.test:5000/team/app:v1 oci-archive:image.tar")
        );
        assert_eq!(html.matches("data-copy=").count(), 14);
        assert!(!section("h", "r", None, &d).contains("By tag"));
    }
}

//! Why an image cannot be pulled, from the kubelet's message (which carries containerd's error),
//! and from which registry: the table is built from what containerd and the kubelet wrote on the
//! real node, against registries on loopback that refuse connections, answer 401, 404 and 429, and
//! present a certificate nobody signed (`docs/events.md`, "Image pulls").

/// The kind of pull failure (`restart_watcher.image_pull.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    NotFound,
    Unauthorized,
    Timeout,
    Unreachable,
    RateLimited,
    Tls,
    Other,
}

impl PullFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            PullFailure::NotFound => "not_found",
            PullFailure::Unauthorized => "unauthorized",
            PullFailure::Timeout => "timeout",
            PullFailure::Unreachable => "unreachable",
            PullFailure::RateLimited => "rate_limited",
            PullFailure::Tls => "tls",
            PullFailure::Other => "other",
        }
    }
}

/// The first rule whose words the message contains decides (lowercase; checked in this order:
/// a 429 body can also say "denied", a TLS error can name a timeout).
const RULES: [(PullFailure, &[&str]); 6] = [
    (PullFailure::RateLimited, &["429 too many requests", "toomanyrequests", "rate limit"]),
    (PullFailure::Tls, &["x509:", "tls:", "certificate"]),
    (
        PullFailure::Unauthorized,
        &[
            "401 unauthorized",
            "403 forbidden",
            "unauthorized",
            "authorization failed",
            "failed to authorize",
            "access denied",
            "insufficient_scope",
        ],
    ),
    (
        PullFailure::NotFound,
        &["404 not found", ": not found", "manifest unknown", "name unknown", "repository does not exist"],
    ),
    (PullFailure::Timeout, &["i/o timeout", "deadline exceeded", "timeout awaiting", "handshake timeout"]),
    (
        PullFailure::Unreachable,
        &[
            "connection refused",
            "no such host",
            "network is unreachable",
            "no route to host",
            "connection reset",
            "server misbehaving",
        ],
    ),
];

/// The kind of a pull failure from the kubelet's message (`ErrImagePull`, `ImagePullBackOff`).
pub fn classify(message: &str) -> PullFailure {
    let m = message.to_ascii_lowercase();
    RULES.iter().find(|(_, words)| words.iter().any(|w| m.contains(w))).map_or(PullFailure::Other, |(k, _)| *k)
}

/// The registry host of an image reference: its first component when that names a host (it has a
/// `.` or a `:`, or is `localhost`), else Docker Hub's `docker.io`.
pub fn registry(image: &str) -> Option<&str> {
    let image = image.trim();
    if image.is_empty() {
        return None;
    }
    match image.split_once('/') {
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => Some(host),
        _ => Some("docker.io"),
    }
}

/// The image a kubelet message names (`... image "127.0.0.1:5000/app:1": ...`).
pub fn image_in(message: &str) -> Option<&str> {
    let rest = &message[message.find("image \"")? + "image \"".len()..];
    rest.split('"').next().filter(|i| !i.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet's messages on the real node (kubelet v1.35.4, containerd 2.4.2), then messages
    /// of registries the tests cannot run (Docker Hub's and GHCR's answers, DNS, a 403).
    #[test]
    fn pull_failures_by_message() {
        let real = [
            (
                r#"failed to pull and unpack image "127.0.0.1:1/team/app:1.0": failed to resolve image: failed to do request: Head "https://127.0.0.1:1/v2/team/app/manifests/1.0": dial tcp 127.0.0.1:1: connect: connection refused"#,
                PullFailure::Unreachable,
            ),
            (
                r#"Back-off pulling image "127.0.0.1:25001/team/app:1.0": ErrImagePull: failed to pull and unpack image "127.0.0.1:25001/team/app:1.0": failed to resolve image: pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials"#,
                PullFailure::Unauthorized,
            ),
            (
                r#"rpc error: code = NotFound desc = failed to pull and unpack image "127.0.0.1:25002/team/app:1.0": failed to resolve image: 127.0.0.1:25002/team/app:1.0: not found"#,
                PullFailure::NotFound,
            ),
            (
                r#"failed to pull and unpack image "127.0.0.1:25003/team/app:1.0": failed to resolve image: unexpected status from HEAD request to http://127.0.0.1:25003/v2/team/app/manifests/1.0: 429 Too Many Requests"#,
                PullFailure::RateLimited,
            ),
            (
                r#"rpc error: code = DeadlineExceeded desc = failed to pull and unpack image "127.0.0.1:25004/team/app:1.0": failed to resolve image: failed to do request: Head "https://127.0.0.1:25004/v2/team/app/manifests/1.0": net/http: timeout awaiting response headers"#,
                PullFailure::Timeout,
            ),
            (
                r#"failed to pull and unpack image "127.0.0.1:25005/team/app:2.0": failed to resolve image: failed to do request: Head "https://127.0.0.1:25005/v2/team/app/manifests/2.0": tls: failed to verify certificate: x509: certificate signed by unknown authority"#,
                PullFailure::Tls,
            ),
            (
                r#"failed to pull and unpack image "127.0.0.1:25001/team/app:1.0": failed to resolve image: failed to do request: Head "https://127.0.0.1:25001/v2/team/app/manifests/1.0": tls: first record does not look like a TLS handshake"#,
                PullFailure::Tls,
            ),
        ];
        let elsewhere = [
            (
                r#"failed to pull and unpack image "docker.io/library/nginx:1.99": failed to resolve reference "docker.io/library/nginx:1.99": docker.io/library/nginx:1.99: not found"#,
                PullFailure::NotFound,
            ),
            (
                r#"failed to resolve reference "ghcr.io/acme/private:1": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token: 401 Unauthorized"#,
                PullFailure::Unauthorized,
            ),
            (
                r#"failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/redis/manifests/sha256:ab: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit."#,
                PullFailure::RateLimited,
            ),
            (
                r#"failed to do request: Head "https://registry.internal/v2/app/manifests/1": dial tcp: lookup registry.internal on 10.96.0.10:53: no such host"#,
                PullFailure::Unreachable,
            ),
            (
                r#"failed to do request: Head "https://10.1.2.3/v2/app/manifests/1": dial tcp 10.1.2.3:443: i/o timeout"#,
                PullFailure::Timeout,
            ),
            (
                r#"unexpected status from HEAD request to https://registry.example.com/v2/app/manifests/1: 403 Forbidden"#,
                PullFailure::Unauthorized,
            ),
            (r#"Back-off pulling image "app:1""#, PullFailure::Other),
        ];
        for (message, want) in real.into_iter().chain(elsewhere) {
            assert_eq!(classify(message), want, "{message}");
        }
    }

    #[test]
    fn hosts_of_image_references() {
        for (image, host) in [
            ("nginx:1.27", Some("docker.io")),
            ("library/nginx", Some("docker.io")),
            ("ghcr.io/acme/app:1", Some("ghcr.io")),
            ("127.0.0.1:5000/app@sha256:ab", Some("127.0.0.1:5000")),
            ("localhost/app", Some("localhost")),
            ("", None),
        ] {
            assert_eq!(registry(image), host, "{image}");
        }
        assert_eq!(
            image_in(r#"Back-off pulling image "127.0.0.1:1/rw-test:pull": ErrImagePull"#),
            Some("127.0.0.1:1/rw-test:pull")
        );
        assert_eq!(image_in("no image here"), None);
    }
}

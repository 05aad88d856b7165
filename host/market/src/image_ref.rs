//! Container image references: `[host[:port]/]path[:tag][@sha256:<64 hex>]`, as Docker
//! accepts them.

/// Longest accepted reference, in bytes.
pub const MAX_IMAGE_REF_LEN: usize = 512;

/// Why `reference` is not a valid image reference, or `None` when it is.
pub fn problem(reference: &str) -> Option<&'static str> {
    if reference.is_empty() {
        return Some("is empty");
    }
    if reference.len() > MAX_IMAGE_REF_LEN {
        return Some("is longer than 512 characters");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:");
        if !hex.is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        }) {
            return Some("has a digest that is not sha256:<64 lowercase hex digits>");
        }
    }
    // A tag follows the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return Some("has a tag that is not 1-128 of [A-Za-z0-9_.-] starting with [A-Za-z0-9_]");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first component is a registry host when it has a '.' or ':' or is localhost.
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            if !valid_host(first) {
                return Some("has a malformed registry host");
            }
            components.remove(0);
        }
    }
    if components.iter().any(|c| !valid_path_component(c)) {
        return Some(
            "has a name component that is not lowercase [a-z0-9] separated by '.', '_', '__' or '-'",
        );
    }
    None
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    port_ok
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

fn valid_path_component(component: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn accepts_what_docker_accepts() {
        for ok in [
            "ubuntu",
            "ubuntu:22.04",
            "library/ubuntu:latest",
            "docker.io/library/python:3.12-slim",
            "registry.example:5000/team/app_x:v1.2",
            "localhost/app",
            "ghcr.io/org/img__name/sub-part:tag_1",
            "nvidia/cuda@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in [
            "",
            "Ubuntu",
            "ubuntu:",
            "ubuntu:-x",
            "/ubuntu",
            "ubuntu/",
            "a//b",
            "app@sha256:short",
            "bad host.example/app",
            "ubuntu;rm -rf /",
            "evil.example:99999999/app",
        ] {
            assert!(problem(bad).is_some(), "{bad:?} must be refused");
        }
        assert!(problem(&"a".repeat(513)).is_some());
    }
}

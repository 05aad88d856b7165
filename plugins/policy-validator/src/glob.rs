//! Whole-string wildcard matching: `*` is any run of characters, `?` exactly one.

/// Whether `text` matches `pattern` entirely. ASCII (every image reference the market
/// admits) is matched byte by byte without allocating; other text by characters.
pub fn matches(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        wildcard(pattern.as_bytes(), text.as_bytes(), b'*', b'?')
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        wildcard(&p, &t, '*', '?')
    }
}

/// Whether `t` matches `p`, in which `any` stands for any run and `one` for one item.
fn wildcard<T: Copy + PartialEq>(p: &[T], t: &[T], any: T, one: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was seen and how much text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_pi, star_ti)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == any)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches(
            "docker.io/library/*",
            "docker.io/library/ubuntu:22.04"
        ));
        assert!(matches("*:latest", "nginx:latest"));
        assert!(!matches("*:latest", "nginx:latest2"));
        assert!(matches("team?/app", "team1/app"));
        assert!(!matches("team?/app", "team12/app"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(!matches(
            "registry.example/*",
            "evil.example/registry.example/x"
        ));
        // Beyond ASCII `?` is one character, not one byte.
        assert!(matches("café:?", "café:é"));
        assert!(!matches("caf?:1", "cafés:1"));
        assert!(matches("*é*", "résumé"));
    }
}

//! Removing a test's bridge and everything the agent set up for it.

use std::process::{Command, Stdio};

/// tepui's chains that hold per-bridge rules.
const CHAINS: [(&str, &str); 4] = [
    ("nat", "TEPUI-POSTROUTING"),
    ("nat", "TEPUI-DNS"),
    ("filter", "TEPUI-FORWARD"),
    ("filter", "TEPUI-INPUT"),
];

/// Deletes the bridge `name` and the rules the agent added for it (its interface in `-i`/`-o`,
/// or the resolver's `tepui-dns:NAME` tag). The runtime leaves both when an agent stops (its
/// tasks may outlive it); a test that made its own bridge removes them, after its agent is gone,
/// or every loopback packet on the machine crosses more rules with each run.
pub fn remove_bridge(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "del", name])
        .stderr(Stdio::null())
        .status();
    let tag = format!("tepui-dns:{name}");
    for (table, chain) in CHAINS {
        let Ok(out) = Command::new("iptables")
            .args(["-w", "10", "-t", table, "-S", chain])
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        for rule in String::from_utf8_lossy(&out.stdout).lines() {
            let words = split_rule(rule);
            if words.first().map(String::as_str) != Some("-A") {
                continue;
            }
            if !words.iter().any(|w| w == name || *w == tag) {
                continue;
            }
            let mut delete = vec!["-w".to_string(), "10".into(), "-t".into(), table.into(), "-D".into()];
            delete.extend(words.into_iter().skip(1));
            let _ = Command::new("iptables").args(&delete).stderr(Stdio::null()).status();
        }
    }
}

/// The words of an `iptables -S` line; a double-quoted word (a comment) is one word, unquoted.
fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::split_rule;

    #[test]
    fn quoted_comments_are_one_word() {
        assert_eq!(
            split_rule(r#"-A TEPUI-DNS -d 10.1.0.1/32 -p udp -m comment --comment "tepui-dns:tpx" -j DNAT"#),
            [
                "-A",
                "TEPUI-DNS",
                "-d",
                "10.1.0.1/32",
                "-p",
                "udp",
                "-m",
                "comment",
                "--comment",
                "tepui-dns:tpx",
                "-j",
                "DNAT"
            ]
        );
        assert_eq!(split_rule(r#"-A X --comment """#), ["-A", "X", "--comment", ""]);
    }
}

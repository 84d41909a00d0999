//! Names as Mesos-DNS makes them: labels cleaned by its RFC 1123 rule, framework names kept
//! dotted, and the short hash of a task id that tells instances apart.

use sha1::{Digest, Sha1};

/// The longest DNS label.
pub const MAX_LABEL: usize = 63;

/// One DNS label from any name, exactly as Mesos-DNS's `labels.RFC1123` makes it: ASCII letters
/// lowercased, digits kept, `-`, `.` and `_` become `-`, every other character is dropped;
/// leading dashes are trimmed, the label is cut at 63 characters without a trailing dash (what
/// follows the cut fills the room the trimmed dashes left, as Mesos-DNS does).
pub fn label(name: &str) -> String {
    let mapped: Vec<u8> = name
        .chars()
        .filter_map(|c| match c {
            'A'..='Z' => Some(c.to_ascii_lowercase() as u8),
            'a'..='z' | '0'..='9' => Some(c as u8),
            '-' | '.' | '_' => Some(b'-'),
            _ => None,
        })
        .collect();
    let trimmed = trim_start(&mapped);
    let size = trimmed.len().min(MAX_LABEL);
    let mut head = trim_end(&trimmed[..size]).to_vec();
    if head.len() < size {
        let tail = trim_start(&trimmed[size..]);
        let room = size - head.len();
        head.extend_from_slice(&tail[..tail.len().min(room)]);
    }
    // Only ASCII was kept.
    String::from_utf8(head).unwrap_or_default()
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b'-').count();
    &b[n..]
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|c| **c == b'-').count();
    &b[..b.len() - n]
}

/// A name of several labels (a framework's name may have dots: `marathon.prod`): each part
/// between dots cleaned by [`label`], empty ones dropped (Mesos-DNS's `labels.DomainFrag`).
pub fn domain_frag(name: &str) -> String {
    name.split('.')
        .map(label)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// The name Marathon gives the tasks of an app: its path reversed, joined with dots
/// (`/prod/web` is `web.prod`), which [`label`] then makes `web-prod`.
pub fn marathon_task_name(app_id: &str) -> String {
    let parts: Vec<&str> = app_id.split('/').filter(|p| !p.is_empty()).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join(".")
}

/// The name Metronome's tasks carry: the run's path (the job id's dotted parts, then the run
/// id) reversed, as Marathon names the run spec's tasks (`prod.backup`'s run `r1` is
/// `r1.backup.prod`).
pub fn metronome_task_name(job_id: &str, run_id: &str) -> String {
    let mut parts: Vec<&str> = job_id.split('.').filter(|p| !p.is_empty()).collect();
    parts.push(run_id);
    parts.into_iter().rev().collect::<Vec<_>>().join(".")
}

/// Mesos-DNS's short hash of a task id: the first 5 characters of the z-base-32 form of its
/// SHA-1, enough to tell a task's instances apart in their canonical names.
pub fn task_hash(task_id: &str) -> String {
    const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let digest = Sha1::digest(task_id.as_bytes());
    // 5 characters are the first 25 bits.
    let bits = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (0..5)
        .map(|i| ZBASE32[((bits >> (27 - 5 * i)) & 0x1f) as usize] as char)
        .collect()
}

/// The last `-` separated part of an agent id, lowercased (Mesos-DNS's `slaveIDTail`: `S3` of
/// `...-S3`; tepui's agent ids are numbers, which stay as they are).
pub fn agent_tail(agent_id: &str) -> String {
    agent_id.rsplit('-').next().unwrap_or(agent_id).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cleaned_as_mesos_dns_cleans_them() {
        assert_eq!(label("web"), "web");
        assert_eq!(label("Web_Server"), "web-server");
        assert_eq!(label("apiserver.myservice"), "apiserver-myservice");
        // Other characters are dropped, not replaced.
        assert_eq!(label("my app!"), "myapp");
        assert_eq!(label("café"), "caf");
        assert_eq!(label("--web--"), "web");
        assert_eq!(label("..."), "");
        assert_eq!(label(""), "");
        let long = "a".repeat(70);
        assert_eq!(label(&long), "a".repeat(63));
        // A dash at the cut is trimmed and what follows fills its room.
        let s = format!("{}-{}", "a".repeat(62), "bcdef");
        assert_eq!(label(&s), format!("{}b", "a".repeat(62)));
        assert!(label(&s).len() <= MAX_LABEL);
    }

    #[test]
    fn framework_names_keep_their_dots() {
        assert_eq!(domain_frag("marathon"), "marathon");
        assert_eq!(domain_frag("Marathon.Prod"), "marathon.prod");
        assert_eq!(domain_frag("marathon-0.7.5"), "marathon-0.7.5");
        assert_eq!(domain_frag("a..b."), "a.b");
        assert_eq!(domain_frag("my_fw"), "my-fw");
    }

    #[test]
    fn marathon_and_metronome_task_names() {
        assert_eq!(marathon_task_name("/prod/web"), "web.prod");
        assert_eq!(label(&marathon_task_name("/prod/web")), "web-prod");
        assert_eq!(marathon_task_name("/web"), "web");
        assert_eq!(
            label(&metronome_task_name("prod.backup", "20240101120000AbCdE")),
            "20240101120000abcde-backup-prod"
        );
        assert_eq!(metronome_task_name("sleepy", "r1"), "r1.sleepy");
    }

    #[test]
    fn task_hash_is_five_zbase32_characters_of_the_sha1() {
        // SHA-1("") = da39a3ee...: the first 25 bits 11011 01000 11100 11010 00111 are
        // 27, 8, 28, 26, 7 in z-base-32.
        assert_eq!(task_hash(""), "5eh48");
        let h = task_hash("web.0123");
        assert_eq!(h.len(), 5);
        assert_eq!(h, task_hash("web.0123"));
        assert_ne!(h, task_hash("web.0124"));
        assert!(h.chars().all(|c| "ybndrfg8ejkmcpqxot1uwisza345h769".contains(c)));
    }

    #[test]
    fn agent_tails() {
        assert_eq!(agent_tail("20150101-0000-S3"), "s3");
        assert_eq!(agent_tail("7"), "7");
    }
}

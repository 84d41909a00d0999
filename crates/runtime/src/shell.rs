//! A shell command line that the shell would only split into words and run is run without
//! the shell. `/bin/sh -c "sleep 600"` (Marathon's `cmd`, a Mesos shell command) costs the
//! shell's exec and a fork per task, and leaves two processes where one does the work: dash
//! forks its one command instead of replacing itself with it. Anything the shell would
//! interpret (quotes, variables, globs, redirections, operators, builtins, assignments) keeps
//! the shell, and so does a command that is not found, so its error stays the shell's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Characters that mean nothing to the shell: a line made of these and spaces is only words.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:,=@%+".contains(c)
}

/// Words that are the shell's own (keywords and builtins), even where a program of the same
/// name exists: they keep the shell, so they behave as the shell has them.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done", "echo", "elif", "else",
    "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for", "getopts", "hash", "if", "in", "jobs",
    "kill", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift", "test", "then", "times", "trap",
    "true", "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
];

/// The words to run in place of `args`, when `args` is `sh -c LINE` and LINE is a plain
/// command whose program is an executable file in the task's filesystem (`root`, searched
/// along `path` as the shell would). `visible`: whether a path in `root` is one the task sees.
pub fn direct(args: &[String], root: &Path, path: &str, visible: impl Fn(&Path) -> bool) -> Option<Vec<String>> {
    let [shell, flag, line] = args else {
        return None;
    };
    if !matches!(shell.as_str(), "/bin/sh" | "sh") || flag != "-c" {
        return None;
    }
    if !line.chars().all(|c| c == ' ' || plain(c)) {
        return None;
    }
    let words: Vec<String> = line.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
    let program = words.first()?;
    if program.contains('=') || program.starts_with('-') || SHELL_WORDS.contains(&program.as_str()) {
        return None;
    }
    let found = if program.contains('/') {
        (program.starts_with('/') && executable(&inside(root, program))).then(|| PathBuf::from(program))
    } else {
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| Path::new(d).join(program))
            .find(|p| executable(&inside(root, &p.to_string_lossy())))
    };
    found.filter(|p| visible(p)).map(|_| words)
}

fn inside(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), line.into()]
    }

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        for (name, mode) in [("sleep", 0o755), ("data", 0o644), ("true", 0o755)] {
            let p = dir.path().join("bin").join(name);
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn a_plain_command_runs_without_the_shell() {
        let r = root();
        let all = |_: &Path| true;
        assert_eq!(
            direct(&args("sleep 600"), r.path(), "/usr/bin:/bin", all),
            Some(vec!["sleep".to_string(), "600".to_string()])
        );
        assert_eq!(
            direct(&args("  /bin/sleep   1.5 --x=y,z@a:b%c+d "), r.path(), "", all),
            Some(vec!["/bin/sleep".into(), "1.5".into(), "--x=y,z@a:b%c+d".into()])
        );
        assert_eq!(
            direct(&["sh".into(), "-c".into(), "sleep 1".into()], r.path(), "/bin", all).map(|w| w.len()),
            Some(2)
        );
    }

    #[test]
    fn anything_the_shell_interprets_keeps_the_shell() {
        let r = root();
        let all = |_: &Path| true;
        for line in [
            "sleep $T",
            "sleep 1; sleep 2",
            "sleep 1 && true",
            "sleep 1 | cat",
            "sleep 1 > out",
            "sleep 'a b'",
            "sleep \"1\"",
            "sleep *",
            "sleep ~",
            "sleep 1 # note",
            "sleep\t1",
            "sleep 1\nsleep 2",
            "sleep `x`",
            "sleep \\1",
            "A=1 sleep 1",
            "exec sleep 1",
            "true",
            "exit 3",
            "cd /tmp",
            "",
            "   ",
        ] {
            assert_eq!(direct(&args(line), r.path(), "/bin", all), None, "{line:?}");
        }
    }

    #[test]
    fn a_program_that_is_not_there_or_not_executable_keeps_the_shell() {
        let r = root();
        let all = |_: &Path| true;
        assert_eq!(direct(&args("nosuch 1"), r.path(), "/bin", all), None);
        assert_eq!(direct(&args("data"), r.path(), "/bin", all), None);
        assert_eq!(
            direct(&args("sleep 1"), r.path(), "/usr/bin", all),
            None,
            "not on the PATH"
        );
        assert_eq!(
            direct(&args("bin/sleep 1"), r.path(), "/", all),
            None,
            "relative to the cwd"
        );
        assert_eq!(
            direct(&args("sleep 1"), r.path(), "/bin", |_| false),
            None,
            "not visible"
        );
        assert_eq!(
            direct(
                &["/bin/bash".into(), "-c".into(), "sleep 1".into()],
                r.path(),
                "/bin",
                all
            ),
            None
        );
        assert_eq!(direct(&["sleep".into(), "1".into()], r.path(), "/bin", all), None);
    }
}

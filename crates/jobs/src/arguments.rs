//! A run's own arguments (Chronos' run now, `?arguments=`): one string, as Chronos takes it,
//! read as a POSIX shell reads words, so that an argument with spaces travels quoted; and
//! how they reach a shell command. Chronos appends its arguments' text to the command; here
//! each argument is appended quoted, so it arrives as that one argument and is never read as
//! shell syntax.

/// The words of `text`, as a POSIX shell splits them: blanks separate words; single quotes
/// keep everything up to the next one; double quotes keep everything but `\"`, `\\`, `\$`
/// and `` \` `` (unquoted); a backslash outside quotes keeps the next character. An
/// unterminated quote runs to the end. Nothing is expanded.
pub fn split(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word was started (`''` is an empty word, blanks are none).
    let mut started = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                started = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => word.push('\\'),
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                started = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// `arg` as one word of a POSIX shell: as it is when nothing in it is special, else in
/// single quotes (a quote inside closed, escaped and reopened).
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A shell command with `args` after it, each one word.
pub fn append_to_command(cmd: &str, args: &[String]) -> String {
    let mut out = cmd.to_string();
    for a in args {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text)
    }

    #[test]
    fn words_split_as_a_shell_splits_them() {
        assert_eq!(words(" -v  --level 3 "), vec!["-v", "--level", "3"]);
        assert_eq!(words("'a b' \"c d\" e\\ f"), vec!["a b", "c d", "e f"]);
        assert_eq!(words("'' x"), vec!["", "x"]);
        assert_eq!(words(r#""say \"hi\" \n""#), vec![r#"say "hi" \n"#]);
        assert_eq!(words(r"'it'\''s'"), vec!["it's"]);
        assert_eq!(words("$HOME `id`"), vec!["$HOME", "`id`"], "nothing expands");
        assert_eq!(words("'open"), vec!["open"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn quoted_words_split_back_into_themselves() {
        let args = [
            "plain",
            "a b",
            "it's",
            "",
            "$(rm -rf /)",
            "semi;colon",
            "tab\there",
            "ünï",
        ];
        let text: Vec<String> = args.iter().map(|a| quote(a)).collect();
        assert_eq!(split(&text.join(" ")), args);
        assert_eq!(quote("x/y.z-1"), "x/y.z-1");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(
            append_to_command("printf '[%s]'", &["a".into(), "b c".into()]),
            "printf '[%s]' a 'b c'"
        );
    }
}

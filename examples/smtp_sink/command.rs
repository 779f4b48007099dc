//! SMTP command lines (RFC 5321 section 4.1) parsed into [`Command`]s, with the reply for a
//! line that is not one. Pure functions over bytes, so they can be fuzzed on their own.

/// One command of a receive-only server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// `MAIL FROM:<path>` with its ESMTP parameters (`SIZE=n`, `BODY=7BIT|8BITMIME`).
    Mail {
        from: String,
        size: Option<u64>,
        body_8bit: bool,
    },
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    Expn,
    /// RFC 3207.
    StartTls,
}

/// A reply code and text for a line that is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub text: &'static str,
}

const fn refuse(code: u16, text: &'static str) -> Refusal {
    Refusal { code, text }
}

const SYNTAX: Refusal = refuse(501, "5.5.4 Syntax error in parameters or arguments");
const UNKNOWN: Refusal = refuse(500, "5.5.2 Syntax error, command unrecognized");
const PARAM: Refusal = refuse(555, "5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented");

/// Parses one command line (without its line ending).
pub fn parse(line: &[u8]) -> Result<Command, Refusal> {
    let line = std::str::from_utf8(line).map_err(|_| UNKNOWN)?;
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(UNKNOWN);
    }
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| if args.is_empty() { Ok(c) } else { Err(SYNTAX) };
    match verb.as_str() {
        "HELO" | "EHLO" => {
            if args.is_empty() || args.contains(char::is_whitespace) {
                return Err(SYNTAX);
            }
            Ok(if verb == "HELO" { Command::Helo(args.to_string()) } else { Command::Ehlo(args.to_string()) })
        }
        "MAIL" => {
            let (from, params) = path_after(args, "FROM:")?;
            let (mut size, mut body_8bit) = (None, false);
            for p in params.split_ascii_whitespace() {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                if key.eq_ignore_ascii_case("SIZE") {
                    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SYNTAX);
                    }
                    size = Some(value.parse().map_err(|_| SYNTAX)?);
                } else if key.eq_ignore_ascii_case("BODY") {
                    if value.eq_ignore_ascii_case("8BITMIME") {
                        body_8bit = true;
                    } else if !value.eq_ignore_ascii_case("7BIT") {
                        return Err(SYNTAX);
                    }
                } else {
                    return Err(PARAM);
                }
            }
            Ok(Command::Mail { from, size, body_8bit })
        }
        "RCPT" => {
            let (to, params) = path_after(args, "TO:")?;
            if to.is_empty() {
                return Err(SYNTAX);
            }
            if !params.trim().is_empty() {
                return Err(PARAM);
            }
            Ok(Command::Rcpt(to))
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => {
            if args.is_empty() {
                Err(SYNTAX)
            } else {
                Ok(Command::Vrfy)
            }
        }
        "EXPN" => {
            if args.is_empty() {
                Err(SYNTAX)
            } else {
                Ok(Command::Expn)
            }
        }
        _ => Err(UNKNOWN),
    }
}

/// `FROM:<path> params` (the keyword case-insensitive, spaces allowed after the colon):
/// the path without brackets and the rest.
fn path_after<'a>(args: &'a str, keyword: &str) -> Result<(String, &'a str), Refusal> {
    let head = args.get(..keyword.len()).ok_or(SYNTAX)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(SYNTAX);
    }
    let rest = args[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<').ok_or(SYNTAX)?;
    let end = inner.find('>').ok_or(SYNTAX)?;
    let path = &inner[..end];
    if path.contains(['<', ' ', '\t']) {
        return Err(SYNTAX);
    }
    let params = &inner[end + 1..];
    if !params.is_empty() && !params.starts_with([' ', '\t']) {
        return Err(SYNTAX);
    }
    Ok((path.to_string(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"ehlo client.example"), Ok(Command::Ehlo("client.example".into())));
        assert_eq!(
            parse(b"MAIL FROM:<a@b> size=12 Body=8bitmime"),
            Ok(Command::Mail { from: "a@b".into(), size: Some(12), body_8bit: true })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail { from: "".into(), size: None, body_8bit: false })
        );
        assert_eq!(parse(b"RCPT TO:<x@y>"), Ok(Command::Rcpt("x@y".into())));
        assert_eq!(parse(b"MAIL FROM:a@b").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b> SIZE=x").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse(b"RCPT TO:<>").unwrap_err().code, 501);
        assert_eq!(parse(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse(b"HELO").unwrap_err().code, 501);
        assert_eq!(parse(b"BLAH").unwrap_err().code, 500);
        assert_eq!(parse(b"").unwrap_err().code, 500);
        assert_eq!(parse(b"\xff\xfe").unwrap_err().code, 500);
    }
}

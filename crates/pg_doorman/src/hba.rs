//! Client access rules in pg_hba.conf syntax (`general.pg_hba`, inline or a file), and the
//! legacy `general.hba` CIDR allow-list. The first rule that matches a connection's kind (TLS or
//! not), database, user and address decides its auth method; none matching refuses it, as
//! PostgreSQL does (PostgreSQL docs, "The pg_hba.conf File"). `local` lines apply to clients
//! on the unix socket (`general.unix_socket_dir`), `host*` lines to TCP clients.

use ipnet::IpNet;
use std::net::IpAddr;

/// How a matching client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// No password.
    Trust,
    /// Refused.
    Reject,
    /// As the stored secret allows: MD5 for an `md5…` secret, SCRAM-SHA-256 for a verifier
    /// (PostgreSQL's `md5` method).
    Md5,
    /// SCRAM-SHA-256 only: a user with an MD5 secret cannot log in.
    ScramSha256,
    /// The password in clear text (AuthenticationCleartextPassword), checked against the secret.
    Password,
    /// `local` lines only: the operating-system user of the connecting process (SO_PEERCRED)
    /// must have the name the client logs in as; no password.
    Peer,
}

impl Method {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "trust" => Method::Trust,
            "reject" => Method::Reject,
            "md5" => Method::Md5,
            "scram-sha-256" => Method::ScramSha256,
            "password" => Method::Password,
            "peer" => Method::Peer,
            "ident" | "gss" | "sspi" | "pam" | "ldap" | "radius" | "cert" | "bsd" => {
                return Err(format!(
                    "auth method \"{s}\" is not supported by pg_doorman (use trust, reject, md5, scram-sha-256, password or peer)"
                ));
            }
            _ => return Err(format!("unknown auth method \"{s}\"")),
        })
    }
}

/// Which connections a rule's TYPE takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `host` (and `hostnogssenc`: pg_doorman never encrypts with GSSAPI).
    Any,
    /// `hostssl`.
    Tls,
    /// `hostnossl`.
    Plain,
    /// `hostgssenc`: never matches.
    Never,
    /// `local`: the unix socket.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    All,
    /// `sameuser` (database field): the database named like the user.
    SameUser,
    Exact(String),
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    kind: Kind,
    databases: Vec<Name>,
    users: Vec<Name>,
    /// None = `all` (and every `local` rule).
    net: Option<IpNet>,
    method: Method,
}

/// Parsed rules, first match wins.
#[derive(Debug, Clone, Default)]
pub struct Hba {
    rules: Vec<Rule>,
}

/// The outcome for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The rule on this line (1-based; 0 for the legacy list) matched with this method.
    Rule(Method, usize),
    /// No rule matched: refused.
    NoEntry,
}

/// Splits a line into tokens; a token is `(text, quoted)`. Double quotes keep spaces, commas
/// and keywords literal; `#` outside quotes starts a comment.
fn tokens(line: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
                started = true;
            }
            '#' if !in_quotes => break,
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    out.push((std::mem::take(&mut cur), quoted));
                    quoted = false;
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if in_quotes {
        return Err("unterminated quoted string".into());
    }
    if started {
        out.push((cur, quoted));
    }
    Ok(out)
}

/// A comma-separated list field (`db1,"db 2",all`).
fn names(field: &(String, bool), what: &str) -> Result<Vec<Name>, String> {
    let (text, quoted) = field;
    let mut out = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty {what} name in \"{text}\""));
        }
        // A quoted field is literal names (the quotes were removed by the tokenizer).
        if *quoted {
            out.push(Name::Exact(item.to_string()));
            continue;
        }
        out.push(match item {
            "all" => Name::All,
            "sameuser" if what == "database" => Name::SameUser,
            "samerole" | "samegroup" if what == "database" => {
                return Err(format!("\"{item}\" is not supported by pg_doorman (role membership is not known to it)"));
            }
            "replication" if what == "database" => {
                return Err("\"replication\" is not supported by pg_doorman (it does not pool replication connections)".into());
            }
            s if s.starts_with('@') => {
                return Err(format!("file inclusion \"{s}\" is not supported by pg_doorman"));
            }
            s if s.starts_with('+') && what == "user" => {
                return Err(format!(
                    "group \"{s}\" is not supported by pg_doorman (role membership is not known to it)"
                ));
            }
            s if s.starts_with('/') => {
                return Err(format!("regular expression \"{s}\" is not supported by pg_doorman"));
            }
            s => Name::Exact(s.to_string()),
        });
    }
    Ok(out)
}

/// An address field: `all`, a CIDR, or an address followed by a netmask token. Returns the
/// network and how many tokens it took.
fn address(fields: &[(String, bool)]) -> Result<(Option<IpNet>, usize), String> {
    let Some((a, _)) = fields.first() else {
        return Err("missing address".into());
    };
    match a.as_str() {
        "all" => return Ok((None, 1)),
        "samehost" | "samenet" => {
            return Err(format!("\"{a}\" is not supported by pg_doorman"));
        }
        _ => {}
    }
    if a.contains('/') {
        let net: IpNet = a
            .parse()
            .map_err(|_| format!("invalid CIDR address \"{a}\""))?;
        return Ok((Some(net.trunc()), 1));
    }
    let ip: IpAddr = a.parse().map_err(|_| {
        format!("invalid IP address \"{a}\" (host names are not supported by pg_doorman)")
    })?;
    let Some((mask, _)) = fields.get(1) else {
        return Err(format!("address \"{a}\" needs a /prefix or a netmask"));
    };
    let mask: IpAddr = mask
        .parse()
        .map_err(|_| format!("invalid netmask \"{mask}\""))?;
    let net = IpNet::with_netmask(ip, mask).map_err(|_| format!("invalid netmask \"{mask}\""))?;
    Ok((Some(net.trunc()), 2))
}

fn rule(line: usize, f: &[(String, bool)]) -> Result<Rule, String> {
    let kind = match f[0].0.as_str() {
        "local" => Kind::Local,
        "host" | "hostnogssenc" => Kind::Any,
        "hostssl" => Kind::Tls,
        "hostnossl" => Kind::Plain,
        "hostgssenc" => Kind::Never,
        t => return Err(format!("invalid connection type \"{t}\"")),
    };
    // A `local` line has no ADDRESS field.
    let fixed = if kind == Kind::Local { 4 } else { 5 };
    if f.len() < fixed {
        return Err(if kind == Kind::Local {
            "expected local DATABASE USER METHOD".into()
        } else {
            "expected TYPE DATABASE USER ADDRESS METHOD".into()
        });
    }
    let databases = names(&f[1], "database")?;
    let users = names(&f[2], "user")?;
    let (net, used) = if kind == Kind::Local {
        (None, 0)
    } else {
        address(&f[3..])?
    };
    let rest = &f[3 + used..];
    let Some((m, _)) = rest.first() else {
        return Err("missing auth method".into());
    };
    let method = Method::parse(m)?;
    if method == Method::Peer && kind != Kind::Local {
        // As PostgreSQL: the peer's credentials exist only on a unix socket.
        return Err("peer authentication is only supported on local sockets".into());
    }
    if let Some((opt, _)) = rest.get(1) {
        return Err(format!(
            "auth option \"{opt}\" is not supported by pg_doorman"
        ));
    }
    Ok(Rule {
        line,
        kind,
        databases,
        users,
        net,
        method,
    })
}

impl Hba {
    /// Parses pg_hba.conf text. Errors name the line: `line 3: invalid CIDR address "x"`.
    pub fn parse(text: &str) -> Result<Hba, String> {
        let mut rules = Vec::new();
        let mut pending = String::new();
        let mut first_line = 0;
        for (i, raw) in text.lines().enumerate() {
            if pending.is_empty() {
                first_line = i + 1;
            }
            // A backslash at the end continues the line (PostgreSQL 16).
            if let Some(head) = raw.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            let f = tokens(&line).map_err(|e| format!("line {first_line}: {e}"))?;
            if f.is_empty() {
                continue;
            }
            rules.push(rule(first_line, &f).map_err(|e| format!("line {first_line}: {e}"))?);
        }
        Ok(Hba { rules })
    }

    /// The legacy `general.hba` list: clients from these networks, and clients on the unix
    /// socket (a network list does not speak of them; the socket's mode guards it), log in as
    /// the secret allows (method md5); others are refused.
    pub fn from_cidrs(list: &[String]) -> Result<Hba, String> {
        let mut rules = vec![Rule {
            line: 0,
            kind: Kind::Local,
            databases: vec![Name::All],
            users: vec![Name::All],
            net: None,
            method: Method::Md5,
        }];
        for a in list {
            let net: IpNet = a
                .parse()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("invalid CIDR address \"{a}\""))?;
            rules.push(Rule {
                line: 0,
                kind: Kind::Any,
                databases: vec![Name::All],
                users: vec![Name::All],
                net: Some(net.trunc()),
                method: Method::Md5,
            });
        }
        Ok(Hba { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules (everything is refused).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching a connection from `ip` (None: the unix socket), over TLS or
    /// not, for `database` as `user`.
    pub fn decide(&self, ip: Option<IpAddr>, tls: bool, database: &str, user: &str) -> Decision {
        // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
        let ip = ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
        for r in &self.rules {
            let kind_ok = match (r.kind, ip) {
                (Kind::Local, None) => true,
                (Kind::Local, Some(_)) | (_, None) => false,
                (Kind::Any, _) => true,
                (Kind::Tls, _) => tls,
                (Kind::Plain, _) => !tls,
                (Kind::Never, _) => false,
            };
            let db_ok = r.databases.iter().any(|n| match n {
                Name::All => true,
                Name::SameUser => database == user,
                Name::Exact(s) => s == database,
            });
            let user_ok = r.users.iter().any(|n| match n {
                Name::All => true,
                Name::SameUser => false,
                Name::Exact(s) => s == user,
            });
            let net_ok = match (r.net, ip) {
                (Some(n), Some(ip)) => n.contains(&ip),
                _ => true,
            };
            if kind_ok && db_ok && user_ok && net_ok {
                return Decision::Rule(r.method, r.line);
            }
        }
        Decision::NoEntry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn first_match_wins_by_kind_database_user_and_address() {
        let hba = Hba::parse(
            "# comment\n\
             local all all trust\n\
             hostssl app \"Alice\" 10.0.0.0/8 scram-sha-256\n\
             hostnossl all bob 127.0.0.1 255.255.255.255 reject\n\
             host sameuser all ::1/128 password # inline comment\n\
             host db1,db2 all all \\\n  md5\n\
             host all admin 0.0.0.0/0 trust\n",
        )
        .unwrap();
        assert_eq!(hba.len(), 6);
        use Decision::*;
        assert_eq!(
            hba.decide(None, false, "app", "Alice"),
            Rule(Method::Trust, 2)
        );
        assert_eq!(
            hba.decide(ip("10.1.2.3"), true, "app", "Alice"),
            Rule(Method::ScramSha256, 3)
        );
        // Same client without TLS: the hostssl line does not apply; nothing else matches.
        assert_eq!(hba.decide(ip("10.1.2.3"), false, "app", "Alice"), NoEntry);
        assert_eq!(
            hba.decide(ip("127.0.0.1"), false, "x", "bob"),
            Rule(Method::Reject, 4)
        );
        assert_eq!(
            hba.decide(ip("::1"), false, "carol", "carol"),
            Rule(Method::Password, 5)
        );
        assert_eq!(hba.decide(ip("::1"), false, "other", "carol"), NoEntry);
        assert_eq!(
            hba.decide(ip("192.168.0.9"), false, "db2", "zed"),
            Rule(Method::Md5, 6)
        );
        assert_eq!(
            hba.decide(ip("::ffff:192.168.0.9"), true, "x", "admin"),
            Rule(Method::Trust, 8)
        );
    }

    #[test]
    fn unsupported_and_malformed_lines_are_errors_with_their_line() {
        for (text, want) in [
            ("host all all 1.2.3.4/33 md5", "line 1: invalid CIDR"),
            (
                "\nhost all all db.example.com md5",
                "line 2: invalid IP address",
            ),
            ("host all all all ldap", "not supported"),
            ("host all +admins all md5", "group"),
            ("host replication all all md5", "replication"),
            ("host all all all md5 clientcert=verify-full", "option"),
            ("hots all all all md5", "connection type"),
            (
                "host all all all",
                "expected TYPE DATABASE USER ADDRESS METHOD",
            ),
            ("host all all 10.0.0.1 255.0.0.0", "missing auth method"),
            ("host \"all all all md5", "unterminated"),
        ] {
            let e = Hba::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn local_lines_take_unix_socket_clients_only() {
        let hba = Hba::parse(
            "local app all peer
             local all bob reject
             host all all all trust
             local all all scram-sha-256
",
        )
        .unwrap();
        use Decision::*;
        assert_eq!(hba.decide(None, false, "app", "x"), Rule(Method::Peer, 1));
        assert_eq!(hba.decide(None, false, "d", "bob"), Rule(Method::Reject, 2));
        // `host all all all` does not take a unix-socket client.
        assert_eq!(
            hba.decide(None, false, "d", "carol"),
            Rule(Method::ScramSha256, 4)
        );
        // Nor does a `local` line take a TCP client.
        assert_eq!(
            hba.decide(ip("127.0.0.1"), false, "app", "bob"),
            Rule(Method::Trust, 3)
        );
        for (text, want) in [
            ("local all all", "expected local DATABASE USER METHOD"),
            ("host all all all peer", "only supported on local sockets"),
            ("local all all md5 map=x", "option"),
        ] {
            let e = Hba::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn legacy_list_allows_its_networks_only() {
        let hba = Hba::from_cidrs(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(
            hba.decide(None, false, "d", "u"),
            Decision::Rule(Method::Md5, 0)
        );
        assert_eq!(
            hba.decide(ip("10.9.9.9"), false, "d", "u"),
            Decision::Rule(Method::Md5, 0)
        );
        assert_eq!(
            hba.decide(ip("127.0.0.1"), true, "d", "u"),
            Decision::Rule(Method::Md5, 0)
        );
        assert_eq!(
            hba.decide(ip("11.0.0.1"), false, "d", "u"),
            Decision::NoEntry
        );
        assert!(Hba::from_cidrs(&["nope".into()]).is_err());
    }
}

//! The admin console (PgDoorman/PgBouncer style): database `pgdoorman` (alias `pgbouncer`) on
//! the main listener, `admin_username`/`admin_password`, simple Query only. Keywords are
//! case-insensitive and a trailing `;` is optional (COMPAT.md §2).
//!
//! Errors: 58000 unknown command, 42601 bad SET, 3D000 unknown database, 08P01 for any
//! message but Query/Terminate.

mod result;
mod show;

use crate::app::context::AppContext;
use crate::client::auth::{AuthFailure, authenticate};
use crate::net::Stream;
use bytes::BytesMut;
use doorman_wire::startup::StartupMessage;
use doorman_wire::{ErrorFields, backend, sqlstate};
use result::command_complete;

/// Database names that reach the console.
pub use crate::config::ADMIN_DATABASES as DATABASES;

/// True when a client asks for the console (and no pool has that name).
pub fn wants_console(ctx: &AppContext, msg: &StartupMessage) -> bool {
    let db = msg.database();
    DATABASES.contains(&db) && !ctx.pools.all().iter().any(|p| p.settings.database == db)
}

/// Authenticates the admin and serves console commands until the client leaves.
pub async fn serve(
    ctx: &AppContext,
    mut stream: Stream,
    mut buf: BytesMut,
    msg: &StartupMessage,
    peer: crate::net::Peer,
    method: crate::hba::Method,
) {
    let user = msg.user();
    let admin = ctx.admin.load_full();
    if user != admin.0 {
        tracing::warn!("client {peer}: admin console refused for user {user:?}");
        let e = ErrorFields::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("role \"{user}\" may not use the pg_doorman admin console"),
        );
        return stream.send_fatal(e).await;
    }
    match authenticate(&mut stream, &mut buf, user, &admin.1, method).await {
        Ok(_) => {}
        Err(AuthFailure::Gone) => return,
        Err(AuthFailure::Reject(e)) => {
            tracing::warn!("client {peer}: admin authentication failed for user {user:?}");
            return stream.send_fatal(e).await;
        }
    }
    tracing::info!("client {peer}: admin console login as {user:?}");
    let mut out = BytesMut::with_capacity(512);
    backend::write_auth_ok(&mut out);
    for (k, v) in [
        ("server_version", "15.0 (pg_doorman)"),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        (
            "application_name",
            msg.get("application_name").unwrap_or_default(),
        ),
    ] {
        backend::write_parameter_status(&mut out, k, v);
    }
    backend::write_backend_key_data(&mut out, 0, 0);
    backend::write_ready_for_query(&mut out, b'I');
    if stream.write_all(&out).await.is_err() {
        return;
    }
    loop {
        let (tag, body) = match stream
            .read_message(&mut buf, doorman_wire::frame::MAX_MESSAGE_LEN, 1024)
            .await
        {
            Ok(m) => m,
            Err(_) => return,
        };
        out.clear();
        match tag {
            b'X' => return,
            b'Q' => {
                let sql = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                if is_upgrade(&sql) {
                    // Answered once the new process serves (or with why it does not).
                    match ctx.lifecycle.upgrade().await {
                        Ok(()) => {
                            tracing::info!("admin: UPGRADE");
                            let mut rs =
                                result::ResultSet::new(&mut out, &[("success", result::Col::Text)]);
                            rs.row(&[Some("t")]);
                            rs.finish("SHOW");
                        }
                        Err(e) => ErrorFields::error(
                            sqlstate::SYSTEM_ERROR,
                            format!("upgrade failed: {e}"),
                        )
                        .write(&mut out),
                    }
                    backend::write_ready_for_query(&mut out, b'I');
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    continue;
                }
                match run(ctx, &sql, &mut out) {
                    Ok(()) => pause_completes(ctx, &sql).await,
                    Err(e) => {
                        out.clear();
                        e.write(&mut out);
                    }
                }
                backend::write_ready_for_query(&mut out, b'I');
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            _ => {
                let e = ErrorFields::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "the admin console supports the simple query protocol only",
                );
                return stream.send_fatal(e).await;
            }
        }
    }
}

/// True for `UPGRADE` (any case, optional `;`).
fn is_upgrade(sql: &str) -> bool {
    sql.trim()
        .trim_end_matches(';')
        .trim()
        .eq_ignore_ascii_case("UPGRADE")
}

/// After `PAUSE [db]`: returns once no client of those pools holds a backend (transactions
/// in progress finish first, as with PgBouncer's PAUSE), or when they are resumed meanwhile.
async fn pause_completes(ctx: &AppContext, sql: &str) {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    if !words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("PAUSE"))
    {
        return;
    }
    let Ok(pools) = pools_of(ctx, words.next()) else {
        return;
    };
    let busy = |p: &crate::pool::Pool| {
        p.stats.paused.load(std::sync::atomic::Ordering::Acquire) && p.stats.active() > 0
    };
    while pools.iter().any(|p| busy(p)) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Runs one console statement, writing its result (not the ReadyForQuery) into `out`.
fn run(ctx: &AppContext, sql: &str, out: &mut BytesMut) -> Result<(), ErrorFields> {
    let mut text = sql.trim();
    while let Some(t) = text.strip_suffix(';') {
        text = t.trim_end();
    }
    if text.is_empty() {
        out.extend_from_slice(&[b'I', 0, 0, 0, 4]); // EmptyQueryResponse
        return Ok(());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let kw = words[0].to_ascii_uppercase();
    let arg = words.get(1).copied();
    match kw.as_str() {
        "SHOW" => show::show(ctx, &words[1..], out),
        "SET" => set(text, out),
        "PAUSE" | "RESUME" | "RECONNECT" => {
            let pools = pools_of(ctx, arg)?;
            for p in pools {
                match kw.as_str() {
                    "PAUSE" => p.pause(),
                    "RESUME" => p.resume(),
                    _ => p.reconnect(),
                }
            }
            tracing::info!("admin: {kw} {}", arg.unwrap_or("(all)"));
            command_complete(out, &kw);
            Ok(())
        }
        "RELOAD" => {
            ctx.hup.notify_one();
            command_complete(out, "RELOAD");
            Ok(())
        }
        "SHUTDOWN" => {
            tracing::info!("admin: SHUTDOWN");
            let mut rs = result::ResultSet::new(out, &[("success", result::Col::Text)]);
            rs.row(&[Some("t")]);
            rs.finish("SHOW");
            // As SIGTERM: a graceful drain (a second SHUTDOWN stops at once).
            ctx.lifecycle.command(crate::app::lifecycle::Command::Drain);
            Ok(())
        }
        // psql's own probes (tab completion, \d) get an empty answer instead of an error.
        "SELECT" => {
            result::ResultSet::new(out, &[("?column?", result::Col::Text)]).finish("SELECT 0");
            Ok(())
        }
        _ => Err(unknown(text)),
    }
}

fn unknown(text: &str) -> ErrorFields {
    ErrorFields::error(
        sqlstate::SYSTEM_ERROR,
        format!("unsupported pg_doorman admin command: {text}"),
    )
    .with_detail("SHOW HELP lists the commands")
}

fn pools_of(
    ctx: &AppContext,
    db: Option<&str>,
) -> Result<Vec<std::sync::Arc<crate::pool::Pool>>, ErrorFields> {
    let pools: Vec<_> = ctx
        .pools
        .all()
        .into_iter()
        .filter(|p| db.is_none_or(|d| p.settings.database == d))
        .collect();
    if pools.is_empty()
        && let Some(d) = db
    {
        return Err(ErrorFields::error(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{d}\" does not exist"),
        ));
    }
    Ok(pools)
}

/// `SET log_level = '<filter>'` (or `TO`): the only settable parameter.
fn set(text: &str, out: &mut BytesMut) -> Result<(), ErrorFields> {
    let bad = |why: &str| ErrorFields::error(sqlstate::SYNTAX_ERROR, why.to_string());
    let rest = text[3..].trim_start();
    let (name, value) = rest
        .split_once('=')
        .or_else(|| {
            let lower = rest.to_ascii_lowercase();
            lower.find(" to ").map(|i| (&rest[..i], &rest[i + 4..]))
        })
        .ok_or_else(|| bad("syntax: SET log_level = '<filter>'"))?;
    if !name.trim().eq_ignore_ascii_case("log_level") {
        return Err(bad(&format!(
            "unknown parameter {:?}: only log_level can be set",
            name.trim()
        )));
    }
    let value = value.trim().trim_matches('\'').trim_matches('"');
    crate::logging::set(value).map_err(|e| bad(&format!("invalid log_level {value:?}: {e}")))?;
    tracing::info!("admin: log_level set to {value:?}");
    command_complete(out, "SET");
    Ok(())
}

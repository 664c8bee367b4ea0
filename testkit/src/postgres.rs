//! Scratch PostgreSQL databases: each test creates its own (the role has
//! CREATEDB), so tests never see each other's rows. A test process cannot
//! drop its databases on the way out (dropping is async, `Drop` is not), so
//! the first scratch database of each process drops those of processes
//! that have exited.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

static SWEPT: AtomicBool = AtomicBool::new(false);

/// Create a fresh database named after `prefix` and return its URL.
pub async fn scratch_database(prefix: &str) -> String {
    let base = crate::env::database_url();
    let name = crate::env::unique(prefix).replace('-', "_");
    let mut conn = PgConnection::connect(&base).await.expect("connect to DATABASE_URL");
    if !SWEPT.swap(true, Ordering::SeqCst) {
        drop_orphaned(&mut conn).await.expect("drop the scratch databases of exited processes");
    }
    // The name is ours (letters, digits, `_`), so building the statement is safe.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create database");
    with_database(&base, &name)
}

/// Drop the scratch databases whose creating process has exited; returns
/// their names.
pub async fn drop_orphaned(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE NOT datistemplate").fetch_all(&mut *conn).await?;
    let orphans: Vec<String> = names.into_iter().filter(|n| scratch_pid(n).is_some_and(|pid| !alive(pid))).collect();
    for name in &orphans {
        drop_named(conn, name).await?;
    }
    Ok(orphans)
}

/// Letters, digits and `_`: the only names this module builds statements with.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` if it is plain, else the error that refuses it.
fn checked(name: &str) -> Result<&str, sqlx::Error> {
    if plain_name(name) {
        Ok(name)
    } else {
        Err(sqlx::Error::Configuration(format!("not a scratch database name: {name:?}").into()))
    }
}

/// Drop database `name`, closing its sessions; refuses a name
/// [`scratch_database`] never makes.
async fn drop_named(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    // The name is plain, so building the statement is safe.
    let name = checked(name)?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(conn).await?;
    Ok(())
}

/// The creating process of a name [`scratch_database`] makes
/// (`<prefix>_<pid, hex>_<clock, hex>`); None for any other name.
fn scratch_pid(name: &str) -> Option<u32> {
    if !plain_name(name) {
        return None;
    }
    let mut parts = name.rsplitn(3, '_');
    let (stamp, pid, prefix) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    (!prefix.is_empty() && hex(stamp, 1..=8) && hex(pid, 1..=8)).then(|| u32::from_str_radix(pid, 16).ok()).flatten()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Drop a database made by [`scratch_database`], closing its sessions
/// (a benchmark's database holds hundreds of thousands of rows).
pub async fn drop_database(url: &str) -> Result<(), sqlx::Error> {
    let Some(name) = url.split('?').next().and_then(|u| u.rsplit('/').next()) else {
        return Ok(());
    };
    // Checked before connecting too: a refused name needs no server.
    let name = checked(name)?;
    let mut conn = PgConnection::connect(&crate::env::database_url()).await?;
    drop_named(&mut conn, name).await
}

/// `url` with its database path replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(i) => &without_query[..scheme_end + i],
        None => without_query,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_give_their_process() {
        let name = crate::env::unique("chat_e2e").replace('-', "_");
        assert_eq!(scratch_pid(&name), Some(std::process::id()));
        for other in ["parley", "postgres", "chat_e2e", "my_app_db", "x_1_zz", "a-1-ffff", "_1a_ffff"] {
            assert_eq!(scratch_pid(other), None, "{other}");
        }
    }

    #[test]
    fn database_is_replaced() {
        assert_eq!(with_database("postgres://u:p@h:1/parley", "x"), "postgres://u:p@h:1/x");
        assert_eq!(
            with_database("postgres://u:p@h:1/parley?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}

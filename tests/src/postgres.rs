//! Scratch PostgreSQL databases: each test creates its own (the role has
//! CREATEDB), so tests never see each other's rows.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Create a fresh database named after `prefix` and return its URL.
pub async fn scratch_database(prefix: &str) -> String {
    let base = crate::env::database_url();
    let name = crate::env::unique(prefix).replace('-', "_");
    let mut conn = PgConnection::connect(&base).await.expect("connect to DATABASE_URL");
    // The name is ours (letters, digits, `_`), so building the statement is safe.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create database");
    with_database(&base, &name)
}

/// Drop a database made by [`scratch_database`], closing its sessions
/// (a benchmark's database holds hundreds of thousands of rows).
pub async fn drop_database(url: &str) -> Result<(), sqlx::Error> {
    let Some(name) = url.split('?').next().and_then(|u| u.rsplit('/').next()) else {
        return Ok(());
    };
    // Only names scratch_database makes: letters, digits and `_`.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(sqlx::Error::Configuration(format!("not a scratch database name: {name:?}").into()));
    }
    let mut conn = PgConnection::connect(&crate::env::database_url()).await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut conn).await?;
    Ok(())
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
    fn database_is_replaced() {
        assert_eq!(with_database("postgres://u:p@h:1/parley", "x"), "postgres://u:p@h:1/x");
        assert_eq!(
            with_database("postgres://u:p@h:1/parley?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }
}

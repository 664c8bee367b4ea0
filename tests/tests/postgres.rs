//! The PostgreSQL the environment starts answers real queries.

use parley_tests::env;
use sqlx::{Connection, PgConnection, Row};

#[tokio::test]
async fn postgres_answers_queries_and_keeps_rows() {
    let mut conn = PgConnection::connect(&env::database_url()).await.expect("connect to DATABASE_URL");

    let version: String = sqlx::query_scalar("select version()").fetch_one(&mut conn).await.expect("version()");
    assert!(version.starts_with("PostgreSQL "), "unexpected server: {version}");

    // A round trip through a table, not just a constant expression. A
    // temporary table is private to this connection, so reruns never collide.
    sqlx::query("create temporary table probe (id bigint primary key, body text not null)")
        .execute(&mut conn)
        .await
        .expect("create table");
    for (id, body) in [(1_i64, "one"), (2, "two")] {
        sqlx::query("insert into probe (id, body) values ($1, $2)")
            .bind(id)
            .bind(body)
            .execute(&mut conn)
            .await
            .expect("insert");
    }
    let duplicate =
        sqlx::query("insert into probe (id, body) values ($1, $2)").bind(1_i64).bind("again").execute(&mut conn).await;
    assert!(duplicate.is_err(), "primary key must reject a duplicate id");
    let rows = sqlx::query("select id, body from probe order by id").fetch_all(&mut conn).await.expect("select");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, "one".to_owned()), (2, "two".to_owned())]);
}

#[tokio::test]
async fn a_scratch_database_is_dropped_even_while_connected() {
    let url = parley_tests::postgres::scratch_database("dropped").await;
    let held = PgConnection::connect(&url).await.expect("connect to the scratch database");
    parley_tests::postgres::drop_database(&url).await.expect("drop");
    drop(held);
    assert!(PgConnection::connect(&url).await.is_err(), "the database still exists");
    let bad = parley_tests::postgres::drop_database("postgres://h:1/x;DROP").await;
    assert!(bad.is_err(), "a name scratch_database never makes is refused");
}

#[tokio::test]
async fn scratch_databases_of_exited_processes_are_dropped() {
    let mut conn = PgConnection::connect(&parley_tests::env::database_url()).await.expect("connect");
    // A pid above the kernel's pid_max belongs to no process.
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let orphan = format!("orphan_{:x}_deadbeef", max + 1);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {orphan}"))).execute(&mut conn).await.expect("create");
    let mine = parley_tests::postgres::scratch_database("kept").await;
    let dropped = parley_tests::postgres::drop_orphaned(&mut conn).await.expect("sweep");
    assert!(dropped.contains(&orphan), "{dropped:?}");
    assert!(PgConnection::connect(&mine).await.is_ok(), "a live process's database was dropped");
    let left: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database").fetch_all(&mut conn).await.unwrap();
    assert!(!left.contains(&orphan), "{left:?}");
    parley_tests::postgres::drop_database(&mine).await.expect("drop");
}

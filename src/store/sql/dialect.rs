//! The few things the shared SQL needs from a database driver, so that the
//! store's code is ordinary functions generic over the database ([`Dialect`])
//! instead of a macro instantiated twice.
//!
//! sqlx's generic API asks every generic function to restate which Rust
//! types the database can encode and decode. Here that is said once, as
//! traits that hold for *both* databases ([`Param`], [`Record`], [`Scalar`]),
//! and each database's [`Dialect`] impl, where the driver types are concrete,
//! turns them back into sqlx calls. [`Stmt`] wraps a query so that generic
//! code reads like plain sqlx: `query::<D>(SQL).bind(id).fetch_optional(pool)`.
//! Nothing is added on the way: the same statements, prepared and cached the
//! same way, the same binds, the same row decoding.

use std::future::Future;

use super::Params;
use crate::error::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Decode, Encode, FromRow, Pool, Postgres, SqlSafeStr, Sqlite, Type};

/// A query of database `D` with its parameters.
pub type Query<'q, D> = sqlx::query::Query<'q, D, <D as Database>::Arguments>;

/// A value both databases can bind.
pub trait Param: for<'q> Encode<'q, Sqlite> + Type<Sqlite> + for<'q> Encode<'q, Postgres> + Type<Postgres> + Send {}
impl<T> Param for T where T: for<'q> Encode<'q, Sqlite> + Type<Sqlite> + for<'q> Encode<'q, Postgres> + Type<Postgres> + Send {}

/// A row type both databases can decode (`#[derive(sqlx::FromRow)]`).
pub trait Record: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}
impl<T> Record for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}

/// A single column value both databases can decode.
pub trait Scalar: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> + Send + Unpin {}
impl<T> Scalar for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> + Send + Unpin {}

/// Where a statement runs: the pool (a read), or one connection (a write
/// transaction, a kept connection).
pub enum On<'c, D: Database> {
    Pool(&'c Pool<D>),
    Conn(&'c mut D::Connection),
}

impl<'c, D: Database> From<&'c Pool<D>> for On<'c, D> {
    fn from(pool: &'c Pool<D>) -> Self {
        On::Pool(pool)
    }
}

impl<'c, D: Database> From<&'c mut <D as Database>::Connection> for On<'c, D> {
    fn from(conn: &'c mut D::Connection) -> Self {
        On::Conn(conn)
    }
}

/// A database the shared SQL runs on (see the module's doc).
pub trait Dialect: Database + sqlx::database::HasStatementCache {
    /// How this database's statements write their parameters.
    const PARAMS: Params;
    fn bind<'q>(q: Query<'q, Self>, value: impl Param) -> Query<'q, Self>;
    /// Runs the statement; answers the number of rows it changed.
    fn execute<'c>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<u64>> + Send + 'c;
    fn fetch_optional<'c, T: Record>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<Option<T>>> + Send + 'c;
    fn fetch_one<'c, T: Record>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<T>> + Send + 'c;
    fn fetch_all<'c, T: Record>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<Vec<T>>> + Send + 'c;
}

/// The impl for one driver: the same text for both, over concrete types.
macro_rules! dialect_for {
    ($db:ty, $row:ty, $params:expr) => {
        impl Dialect for $db {
            const PARAMS: Params = $params;

            fn bind<'q>(q: Query<'q, Self>, value: impl Param) -> Query<'q, Self> {
                q.bind(value)
            }

            fn execute<'c>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<u64>> + Send + 'c {
                async move {
                    let done = match on {
                        On::Pool(pool) => q.execute(pool).await?,
                        On::Conn(conn) => q.execute(conn).await?,
                    };
                    Ok(done.rows_affected())
                }
            }

            fn fetch_optional<'c, T: Record>(
                q: Query<'c, Self>,
                on: On<'c, Self>,
            ) -> impl Future<Output = sqlx::Result<Option<T>>> + Send + 'c {
                let q = q.try_map(|row: $row| T::from_row(&row));
                async move {
                    match on {
                        On::Pool(pool) => q.fetch_optional(pool).await,
                        On::Conn(conn) => q.fetch_optional(conn).await,
                    }
                }
            }

            fn fetch_one<'c, T: Record>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<T>> + Send + 'c {
                let q = q.try_map(|row: $row| T::from_row(&row));
                async move {
                    match on {
                        On::Pool(pool) => q.fetch_one(pool).await,
                        On::Conn(conn) => q.fetch_one(conn).await,
                    }
                }
            }

            fn fetch_all<'c, T: Record>(q: Query<'c, Self>, on: On<'c, Self>) -> impl Future<Output = sqlx::Result<Vec<T>>> + Send + 'c {
                let q = q.try_map(|row: $row| T::from_row(&row));
                async move {
                    match on {
                        On::Pool(pool) => q.fetch_all(pool).await,
                        On::Conn(conn) => q.fetch_all(conn).await,
                    }
                }
            }
        }
    };
}
dialect_for!(Sqlite, SqliteRow, Params::Anonymous);
dialect_for!(Postgres, PgRow, Params::Numbered);

/// A statement for database `D`, built and run like a sqlx query.
pub struct Stmt<'q, D: Dialect>(Query<'q, D>);

/// A statement of `sql` with no parameters bound yet.
pub fn query<'q, D: Dialect>(sql: impl SqlSafeStr) -> Stmt<'q, D> {
    Stmt(sqlx::query(sql))
}

impl<'q, D: Dialect> Stmt<'q, D> {
    pub fn bind(self, value: impl Param) -> Self {
        Stmt(D::bind(self.0, value))
    }

    /// See sqlx's `Query::persistent`: `false` sends the statement unnamed.
    pub fn persistent(self, value: bool) -> Self {
        Stmt(self.0.persistent(value))
    }

    /// The sqlx query, for a backend's own use of it.
    pub fn into_inner(self) -> Query<'q, D> {
        self.0
    }

    /// Runs the statement; answers the number of rows it changed.
    pub async fn execute<'c>(self, on: impl Into<On<'c, D>>) -> sqlx::Result<u64>
    where
        'q: 'c,
    {
        D::execute(self.0, on.into()).await
    }

    pub async fn fetch_optional<'c, T: Record>(self, on: impl Into<On<'c, D>>) -> Result<Option<T>>
    where
        'q: 'c,
    {
        D::fetch_optional(self.0, on.into()).await.map_err(read_error::<T>)
    }

    pub async fn fetch_one<'c, T: Record>(self, on: impl Into<On<'c, D>>) -> Result<T>
    where
        'q: 'c,
    {
        D::fetch_one(self.0, on.into()).await.map_err(read_error::<T>)
    }

    pub async fn fetch_all<'c, T: Record>(self, on: impl Into<On<'c, D>>) -> Result<Vec<T>>
    where
        'q: 'c,
    {
        D::fetch_all(self.0, on.into()).await.map_err(read_error::<T>)
    }

    /// The first column of the one row.
    pub async fn fetch_one_scalar<'c, T: Scalar>(self, on: impl Into<On<'c, D>>) -> Result<T>
    where
        'q: 'c,
    {
        Ok(D::fetch_one::<(T,)>(self.0, on.into()).await.map_err(read_error::<T>)?.0)
    }

    /// The first column of the row, if there is one.
    pub async fn fetch_optional_scalar<'c, T: Scalar>(self, on: impl Into<On<'c, D>>) -> Result<Option<T>>
    where
        'q: 'c,
    {
        Ok(D::fetch_optional::<(T,)>(self.0, on.into()).await.map_err(read_error::<T>)?.map(|(v,)| v))
    }
}

/// A failed read. A stored value that does not decode as its column's type
/// (SQLite keeps whatever was written) is an integrity error, logged with
/// the row type and column, never the value; anything else stays what it is.
fn read_error<T>(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::ColumnDecode { index, .. } => {
            tracing::error!(row = std::any::type_name::<T>(), column = %index, "stored data does not decode");
            Error::Integrity
        }
        sqlx::Error::Decode(_) => {
            tracing::error!(row = std::any::type_name::<T>(), "stored data does not decode");
            Error::Integrity
        }
        other => Error::from(other),
    }
}

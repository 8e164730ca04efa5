//! The store's synchronous PostgreSQL client: tokio-postgres driven on a current-thread
//! runtime of its own, as the `postgres` crate drives it, with one thing that crate does not
//! offer: a pipeline. [`Client::pipelined`] sends the statements a func deferred (writes whose
//! answer it does not need) together with the statement that follows them, and waits for all
//! the answers at once: one round trip instead of one each.

use super::super::conn::{Error, ErrorKind};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use tokio::runtime::Runtime;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Row, SimpleQueryMessage, Socket, Statement};

type Result<T> = std::result::Result<T, Error>;

/// The connection's half that reads and writes the socket, polled whenever the client waits.
type Driver = Pin<Box<dyn Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send>>;

pub struct Client {
    runtime: Runtime,
    client: tokio_postgres::Client,
    connection: Driver,
    /// The connection's half has ended (the server closed it, or the socket failed).
    ended: bool,
}

impl Client {
    pub fn connect<T>(config: &Config, tls: T) -> Result<Client>
    where
        T: MakeTlsConnect<Socket> + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send + 'static,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::other(format!("no runtime for the PostgreSQL client: {e}")))?;
        let (client, connection) = runtime.block_on(config.connect(tls))?;
        Ok(Client {
            runtime,
            client,
            connection: Box::pin(connection),
            ended: false,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.ended || self.client.is_closed()
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<()> {
        self.pipelined(&[], Last::Batch(sql))?.into_last().map(drop)
    }

    pub fn prepare(&mut self, sql: &str) -> Result<Statement> {
        let Client {
            runtime,
            client,
            connection,
            ended,
        } = self;
        drive(runtime, connection, ended, client.prepare(sql))
    }

    pub fn prepare_typed(
        &mut self,
        sql: &str,
        types: &[tokio_postgres::types::Type],
    ) -> Result<Statement> {
        let Client {
            runtime,
            client,
            connection,
            ended,
        } = self;
        drive(runtime, connection, ended, client.prepare_typed(sql, types))
    }

    /// Sends the `before` statements and then `last`, without waiting between them, and waits
    /// for every answer: one round trip. Answers each `before` statement's outcome (a write's
    /// row count is not read; a check answers the integer it read) and `last`'s. Once one of
    /// them fails, the server refuses the rest (the transaction is aborted).
    pub fn pipelined(&mut self, before: &[Queued<'_>], last: Last<'_>) -> Result<Pipelined> {
        let Client {
            runtime,
            client,
            connection,
            ended,
        } = self;
        let client = &*client;
        let writes: Vec<_> = before
            .iter()
            .map(|q| {
                Box::pin(async move {
                    if q.reads {
                        let rows = client.query(q.stmt, &q.params).await?;
                        Ok(rows.first().and_then(|r| r.try_get::<_, i64>(0).ok()))
                    } else {
                        client.execute(q.stmt, &q.params).await.map(|_| None)
                    }
                })
            })
            .collect();
        let last = async move {
            Ok(match last {
                Last::Nothing => Answer::Nothing,
                Last::Batch(sql) => {
                    client.batch_execute(sql).await?;
                    Answer::Nothing
                }
                Last::Simple(sql) => Answer::Simple(client.simple_query(sql).await?),
                Last::Execute(stmt, params) => Answer::Count(client.execute(stmt, params).await?),
                Last::Query(stmt, params) => Answer::Rows(client.query(stmt, params).await?),
            })
        };
        let work = async move { Ok::<_, tokio_postgres::Error>(all_then(writes, last).await) };
        let (before, last) = drive(runtime, connection, ended, work)?;
        Ok(Pipelined {
            before: before.into_iter().map(|r| r.map_err(Error::from)).collect(),
            last: last.map_err(Error::from),
        })
    }
}

/// A statement of a pipeline before its last one, with its values: a write whose row count
/// nobody reads, or (`reads`) a query whose first row's first column, an integer, is answered.
pub struct Queued<'a> {
    pub stmt: &'a Statement,
    pub params: Vec<&'a (dyn ToSql + Sync)>,
    pub reads: bool,
}

/// The outcomes of a pipeline ([`Client::pipelined`]), statement by statement.
pub struct Pipelined {
    /// Each `before` statement's: nothing for a write, the integer read for a check (`None`
    /// when it read no row, or no integer).
    pub before: Vec<Result<Option<i64>>>,
    pub last: Result<Answer>,
}

impl Pipelined {
    /// The first failure of a `before` statement, as [`ErrorKind::Deferred`] (so that the
    /// statement it rode with is not taken for the one refused: a unique key it never
    /// touched), else `last`'s outcome.
    pub fn into_last(self) -> Result<Answer> {
        for out in self.before {
            if let Err(e) = out {
                return Err(deferred_failed(&e));
            }
        }
        self.last
    }
}

/// A deferred write's failure, found when it was sent with a later statement.
pub fn deferred_failed(e: &Error) -> Error {
    Error::new(ErrorKind::Deferred, format!("a deferred write failed: {e}"))
}

/// What a pipeline ends with ([`Client::pipelined`]).
pub enum Last<'a> {
    Nothing,
    /// Simple queries, without values, answering nothing.
    Batch(&'a str),
    /// Simple queries, without values, answering their rows as text.
    Simple(&'a str),
    Execute(&'a Statement, &'a [&'a (dyn ToSql + Sync)]),
    Query(&'a Statement, &'a [&'a (dyn ToSql + Sync)]),
}

/// What the last statement of a pipeline answered, by the kind of [`Last`].
pub enum Answer {
    Nothing,
    Simple(Vec<SimpleQueryMessage>),
    Count(u64),
    Rows(Vec<Row>),
}

/// Runs `work` on the client's runtime, driving the connection meanwhile. A connection that
/// ends while `work` waits is an error (the answers will never come).
fn drive<T, E: Into<Error>>(
    runtime: &Runtime,
    connection: &mut Driver,
    ended: &mut bool,
    work: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    let mut work = pin!(work);
    runtime.block_on(poll_fn(|cx| {
        // The work first: its requests are queued when it is first polled, and the connection
        // then writes them all at once.
        if let Poll::Ready(r) = work.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(Into::into));
        }
        if !*ended {
            match connection.as_mut().poll(cx) {
                Poll::Pending => {}
                Poll::Ready(end) => {
                    *ended = true;
                    if let Err(e) = end {
                        return Poll::Ready(Err(Error::from(e)));
                    }
                }
            }
        }
        match work.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(Into::into)),
            Poll::Pending if *ended => {
                Poll::Ready(Err(Error::other("the connection to PostgreSQL was closed")))
            }
            Poll::Pending => Poll::Pending,
        }
    }))
}

/// Polls every future of `first` and then `last`, in that order on the first poll (so that
/// their requests go out in that order), until all have answered; answers every outcome.
async fn all_then<A, T, E>(
    mut first: Vec<Pin<Box<impl Future<Output = std::result::Result<A, E>>>>>,
    last: impl Future<Output = std::result::Result<T, E>>,
) -> (Vec<std::result::Result<A, E>>, std::result::Result<T, E>) {
    let mut last = pin!(last);
    let mut outcomes: Vec<Option<std::result::Result<A, E>>> = first.iter().map(|_| None).collect();
    let mut last_outcome = None;
    let last_outcome = poll_fn(|cx| {
        for (f, out) in first.iter_mut().zip(outcomes.iter_mut()) {
            if out.is_none()
                && let Poll::Ready(r) = f.as_mut().poll(cx)
            {
                *out = Some(r);
            }
        }
        if last_outcome.is_none()
            && let Poll::Ready(r) = last.as_mut().poll(cx)
        {
            last_outcome = Some(r);
        }
        match last_outcome.take() {
            Some(r) if outcomes.iter().all(Option::is_some) => Poll::Ready(r),
            kept => {
                last_outcome = kept;
                Poll::Pending
            }
        }
    })
    .await;
    (outcomes.into_iter().flatten().collect(), last_outcome)
}

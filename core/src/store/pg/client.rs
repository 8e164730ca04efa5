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
use tokio_postgres::config::{Host, LoadBalanceHosts};
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
    /// Connects to the first host of `config` that lets it in (and passes its
    /// `target_session_attrs` check), in order, or shuffled with `load_balance_hosts=random`.
    /// Each host's whole attempt (the socket, TLS, start-up, authentication, the check) gets
    /// `connect_timeout`, as in libpq; the postgres crate's own bounds only its socket. When
    /// every host fails, the error names each host and why.
    pub fn connect<T>(config: &Config, tls: T) -> Result<Client>
    where
        T: MakeTlsConnect<Socket> + Clone + 'static + Send,
        T::TlsConnect: Send,
        T::Stream: Send + 'static,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::other(format!("no runtime for the PostgreSQL client: {e}")))?;
        let hosts = config.get_hosts().len().max(config.get_hostaddrs().len());
        let mut order: Vec<usize> = (0..hosts).collect();
        if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            shuffle(&mut order);
        }
        let mut failed = Vec::new();
        for i in order {
            let one = only_host(config, i);
            let attempt = one.connect(tls.clone());
            let outcome = match config.get_connect_timeout() {
                // The timer is made inside the runtime (it needs its time driver).
                Some(&limit) => {
                    match runtime.block_on(async { tokio::time::timeout(limit, attempt).await }) {
                        Ok(outcome) => outcome.map_err(Error::from),
                        Err(_) => Err(Error::other(format!(
                            "error connecting to server: no answer within connect_timeout ({} s)",
                            limit.as_secs_f64()
                        ))),
                    }
                }
                None => runtime.block_on(attempt).map_err(Error::from),
            };
            match outcome {
                Ok((client, connection)) => {
                    return Ok(Client {
                        runtime,
                        client,
                        connection: Box::pin(connection),
                        ended: false,
                    });
                }
                Err(e) => failed.push((host_name(&one), e)),
            }
        }
        Err(match failed.len() {
            0 => Error::other("error connecting to server: the connection string names no host"),
            1 => failed.remove(0).1,
            _ => Error::other(
                failed
                    .iter()
                    .map(|(host, e)| format!("{host}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
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

/// `config` with its `i`th host (and address, and port) alone: every other setting copied.
fn only_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    match config.get_hosts().get(i) {
        Some(Host::Tcp(host)) => {
            one.host(host);
        }
        #[cfg(unix)]
        Some(Host::Unix(path)) => {
            one.host_path(path);
        }
        None => {}
    }
    if let Some(addr) = config.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    let ports = config.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        one.port(*port);
    }
    if let Some(t) = config.get_connect_timeout() {
        one.connect_timeout(*t);
    }
    if let Some(t) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*t);
    }
    one.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation())
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .load_balance_hosts(config.get_load_balance_hosts());
    if let Some(t) = config.get_keepalives_interval() {
        one.keepalives_interval(t);
    }
    if let Some(n) = config.get_keepalives_retries() {
        one.keepalives_retries(n);
    }
    one
}

/// How an error names the host of a one-host `config`: `host:port` (or the socket folder).
fn host_name(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match (config.get_hosts().first(), config.get_hostaddrs().first()) {
        (Some(Host::Tcp(host)), _) => format!("{host}:{port}"),
        #[cfg(unix)]
        (Some(Host::Unix(path)), _) => format!("{}:{port}", path.display()),
        (None, Some(addr)) => format!("{addr}:{port}"),
        (None, None) => format!(":{port}"),
    }
}

/// Shuffles `order` (Fisher-Yates), seeded by the standard library's per-process random keys.
fn shuffle(order: &mut [usize]) {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    for i in (1..order.len()).rev() {
        hasher.write_usize(i);
        let j = (hasher.finish() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
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

#[cfg(test)]
mod tests {
    use super::{host_name, only_host, shuffle};
    use std::str::FromStr;
    use tokio_postgres::Config;

    #[test]
    fn one_host_keeps_every_other_setting() {
        let full = "postgres://u:pw@h1:1,h2:2/db?options=-c%20a%3Db&application_name=app&\
                    sslmode=require&connect_timeout=7&tcp_user_timeout=9&keepalives=0&\
                    keepalives_idle=11&keepalives_interval=12&keepalives_retries=13&\
                    target_session_attrs=read-write&channel_binding=require&\
                    load_balance_hosts=random";
        let config = Config::from_str(full).expect("config");
        let second = only_host(&config, 1);
        let alone = Config::from_str(&full.replace("h1:1,h2:2", "h2:2")).expect("config");
        // Debug shows every field but the TLS negotiation (and the password as `_`).
        assert_eq!(format!("{second:?}"), format!("{alone:?}"));
        assert_eq!(second.get_ssl_negotiation(), config.get_ssl_negotiation());
        assert_eq!(second.get_password(), Some(&b"pw"[..]));
        assert_eq!(host_name(&second), "h2:2");
        // One port for all hosts.
        let config = Config::from_str("host=a,/run/pg port=6000 user=u").expect("config");
        assert_eq!(host_name(&only_host(&config, 0)), "a:6000");
        assert_eq!(host_name(&only_host(&config, 1)), "/run/pg:6000");
    }

    #[test]
    fn a_shuffle_keeps_every_host_once() {
        let mut order: Vec<usize> = (0..8).collect();
        shuffle(&mut order);
        order.sort_unstable();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }
}

//! The Postgres wire protocol endpoint (default `127.0.0.1:6875`), so
//! `psql`, drivers, BI tools and notebooks talk to Sluice.
//!
//! Built on the `pgwire` crate (protocol, startup, cancel requests) and
//! `arrow-pg` (Arrow values as Postgres text and binary values). Sluice
//! decides what each statement means; see [`statement`] for who answers
//! what.
//!
//! - A `SELECT` over bounded input runs to its end and returns its final
//!   rows (a changelog consolidated). Over an unbounded stream it is
//!   refused with a hint to `SUBSCRIBE`, unless it has a LIMIT.
//! - `SUBSCRIBE [TO] (query) | qN | stream` and `COPY (SUBSCRIBE ...) TO
//!   STDOUT` stream rows as they are produced, with `seq` (and `op` for
//!   updating results) columns, until the client cancels (psql's Ctrl-C
//!   sends a CancelRequest: the statement ends with SQLSTATE 57014, the
//!   query it started is dropped, and the connection stays usable).
//! - `DECLARE c CURSOR FOR SUBSCRIBE ...; FETCH ALL c` reads a live query
//!   in steps, as on Materialize: FETCH waits for at least one row.
//!
//! Parts:
//! - this file: the accept loop and the handlers pgwire calls;
//! - [`statement`]: splitting and classifying statements;
//! - [`session`]: one connection's parameters, settings and cursors, and
//!   running each statement;
//! - [`subscribe`]: live subscriptions, streamed or fetched;
//! - [`pg_catalog`]: the catalogs psql's `\d` and drivers read;
//! - [`rows`]: Arrow results as Postgres rows;
//! - [`error`]: engine errors as SQLSTATEs with positions.

pub mod error;
pub mod pg_catalog;
pub mod rows;
pub mod session;
pub mod statement;
pub mod subscribe;

use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;

use crate::engine::Engine;
use session::Service;

/// The version clients see: Postgres 16's protocol and catalogs, by Sluice.
pub const SERVER_VERSION: &str = concat!("16.6 (Sluice ", env!("CARGO_PKG_VERSION"), ")");

/// Accepts connections on `listener` until the task is dropped. Each
/// connection runs on its own task: a client that sends garbage or goes
/// away ends only its own connection.
/// Serves Postgres clients on `listener`. With a `token`, a client must
/// give it as its password (any user name); otherwise anyone may connect.
/// With `tls`, a client must negotiate TLS (`sslmode=require`) before it
/// starts up, and so the password never crosses the network in clear.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    token: Option<String>,
    tls: Option<TlsAcceptor>,
    limit: crate::listen::ConnectionLimit,
) {
    let manager = Arc::new(ConnectionManager::new());
    let how = match token {
        None => How::Open(Open { manager: manager.clone() }),
        Some(token) => How::Password(
            CleartextPasswordAuthStartupHandler::new(Token(token), Parameters).with_connection_manager(manager.clone()),
        ),
    };
    let startup = Startup { how, tls_required: tls.is_some() };
    let handlers = Arc::new(Handlers {
        service: Arc::new(Service::new(engine)),
        startup: Arc::new(startup),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
    });
    loop {
        let (socket, peer, permit) =
            crate::listen::accept(&listener, &limit, crate::listen::ConnectionLimit::refuse_pg).await;
        let handlers = handlers.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Err(error) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!("pgwire connection from {peer} ended: {error}");
            }
            drop(permit);
        });
    }
}

struct Handlers {
    service: Arc<Service>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// No authentication yet (issue: tokens and TLS); registers each
/// connection for cancel requests and names the server.
/// How connections start: open to anyone, or with the token as password;
/// over TLS only, when the server has a certificate.
struct Startup {
    how: How,
    tls_required: bool,
}

enum How {
    Open(Open),
    Password(CleartextPasswordAuthStartupHandler<Token, Parameters>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: pgwire::messages::PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server takes Postgres connections over TLS only: connect with sslmode=require".into(),
            ))));
        }
        match &self.how {
            How::Open(open) => open.on_startup(client, message).await,
            How::Password(password) => password.on_startup(client, message).await,
        }
    }
}

/// The server's token, as the password every user must give.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str("Token(..)")
    }
}

#[async_trait]
impl AuthSource for Token {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

/// pgwire's parameters, with Sluice's `server_version`.
struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<std::collections::HashMap<String, String>> {
        let mut parameters = DefaultServerParameterProvider::default().server_parameters(client)?;
        parameters.insert("server_version".into(), SERVER_VERSION.into());
        Some(parameters)
    }
}

struct Open {
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Open {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }

    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Sent after pgwire's own parameters, so clients see this one.
        let status = ParameterStatus::new("server_version".into(), SERVER_VERSION.into());
        client.feed(PgWireBackendMessage::ParameterStatus(status)).await?;
        Ok(())
    }
}

/// Fuzzing (`fuzz/`, and the corpus replayed by the e2e suite): `bytes` as
/// a client's messages, decoded by pgwire in each connection state, and
/// every query text in them split, classified and (for a Bind) bound as
/// this endpoint does. Must not panic whatever the bytes, except inside
/// pgwire's own decoder: pgwire 0.41 reads past a message whose inner
/// lengths are wrong (a Bind parameter longer than the message) and
/// panics; the server runs each connection on its own task, so such a
/// client loses only its connection (tests/pgwire.rs sends one). Those
/// panics are caught here as the end of the connection.
#[doc(hidden)]
pub fn fuzz_frontend_messages(bytes: &[u8]) {
    use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};
    let states = [(true, true), (false, true), (false, false)];
    for (ssl, startup) in states {
        let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        context.awaiting_frontend_ssl = ssl;
        context.awaiting_frontend_startup = startup;
        let mut buffer = bytes::BytesMut::from(bytes);
        let mut parsed: Option<String> = None;
        // Each decoded message consumes bytes; a bad one ends the stream.
        for _ in 0..1000 {
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                PgWireFrontendMessage::decode(&mut buffer, &context)
            }));
            let Ok(Ok(Some(message))) = decoded else { break };
            match message {
                PgWireFrontendMessage::Query(query) => {
                    let _ = statement::split(&query.query);
                }
                PgWireFrontendMessage::Parse(parse) => {
                    let _ = session::placeholders(&parse.query);
                    parsed = Some(parse.query);
                }
                PgWireFrontendMessage::Bind(bind) => {
                    let values: Vec<Option<String>> = bind
                        .parameters
                        .iter()
                        .map(|value| value.as_ref().map(|value| String::from_utf8_lossy(value).into_owned()))
                        .collect();
                    let numeric: Vec<bool> = values.iter().map(|value| value.is_some()).collect();
                    let sql = parsed.as_deref().unwrap_or("SELECT $1 LIMIT $2");
                    let _ = statement::split(&session::substitute_typed(sql, &values, &numeric));
                }
                PgWireFrontendMessage::Startup(_) | PgWireFrontendMessage::SslNegotiation(_) => {
                    context.awaiting_frontend_ssl = false;
                    context.awaiting_frontend_startup = false;
                }
                _ => {}
            }
        }
    }
}

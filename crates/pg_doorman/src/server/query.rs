//! Pooler-issued simple queries on a backend (parameter sync, session reset), read to the end
//! without anything reaching a client.

use super::{READ_CHUNK, Server};
use crate::error::ServerError;
use crate::net::ReadError;
use crate::relay::TxStatus;
use bytes::BytesMut;
use doorman_wire::backend::{parse_parameter_status, tag};
use doorman_wire::fields::{ReceivedError, parse_error_body};
use doorman_wire::frame::MAX_MESSAGE_LEN;
use doorman_wire::frontend::messages::SYNC_FRAME;

/// Reads one complete backend message into (tag, body) and consumes it from `buf`.
pub async fn read_message(
    stream: &mut crate::net::Stream,
    buf: &mut BytesMut,
) -> Result<(u8, BytesMut), ServerError> {
    stream
        .read_message(buf, MAX_MESSAGE_LEN, READ_CHUNK)
        .await
        .map_err(|e| match e {
            ReadError::Io(e) => ServerError::Io(e),
            ReadError::Wire(e) => ServerError::from(e),
        })
}

/// What a one-off query returned: column names (RowDescription) and rows as text, `None` for
/// SQL NULL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// Column names in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<Option<String>>>,
}

/// The first column of a DataRow body as text (None for NULL).
fn first_column(body: &[u8]) -> Result<Option<String>, ServerError> {
    let v = doorman_wire::backend::parse_data_row_first(body)?;
    Ok(v.map(|v| String::from_utf8_lossy(v).into_owned()))
}

impl Server {
    /// Runs `sql` as a simple Query and reads up to ReadyForQuery. ParameterStatus updates
    /// `self.params` and is reported through `on_param`. Returns the first ErrorResponse, if any.
    /// Marks the connection bad on I/O or protocol failure.
    pub async fn simple_query(
        &mut self,
        sql: &str,
        mut on_param: impl FnMut(&str, &str),
    ) -> Result<Option<ReceivedError>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        doorman_wire::frontend::write_query(&mut out, sql);
        let result = self.run(&out, &mut on_param).await;
        if result.is_err() {
            self.bad = true;
        }
        result
    }

    /// Runs `sql` (a simple Query returning one text column) and returns the first row's
    /// value: `Some(None)` for SQL NULL, `None` when no row came or the query failed. Marks
    /// the connection bad on I/O or protocol failure.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<Option<String>>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        doorman_wire::frontend::write_query(&mut out, sql);
        let mut value = None;
        let mut on_row = |t: u8, body: &[u8]| {
            if t == tag::DATA_ROW && value.is_none() {
                value = Some(first_column(body));
            }
            Ok(())
        };
        let result = self.run_rows(&out, &mut |_, _| {}, &mut on_row).await;
        if result.is_err() {
            self.bad = true;
        }
        match (result?, value) {
            (None, Some(v)) => Ok(Some(v?)),
            _ => Ok(None),
        }
    }

    /// Runs `sql` once through the extended protocol with text `params` (`$1`, ...; no
    /// string is ever spliced into the SQL) and returns the column names and every row, or the
    /// backend's ErrorResponse. The connection is idle again either way unless it broke (then
    /// it is marked bad). For the pooler's own small look-ups (auth_query), not for relaying.
    pub async fn one_off_rows(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Result<Rows, ReceivedError>, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 64);
        doorman_wire::frontend::write_one_off_query(&mut out, sql, params);
        let result = self.read_rows(&out).await;
        if result.is_err() {
            self.bad = true;
        }
        result
    }

    async fn read_rows(&mut self, msg: &[u8]) -> Result<Result<Rows, ReceivedError>, ServerError> {
        let mut rows = Rows::default();
        let mut on_msg = |t: u8, body: &[u8]| -> Result<(), ServerError> {
            match t {
                tag::ROW_DESCRIPTION => {
                    rows.columns = doorman_wire::backend::parse_row_description(body)?
                        .into_iter()
                        .map(str::to_string)
                        .collect();
                }
                tag::DATA_ROW => rows.rows.push(
                    doorman_wire::backend::parse_data_row(body)?
                        .into_iter()
                        .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect(),
                ),
                _ => {}
            }
            Ok(())
        };
        let first_error = self.run_rows(msg, &mut |_, _| {}, &mut on_msg).await?;
        Ok(first_error.map_or(Ok(rows), Err))
    }

    /// Brings a backend whose client left in the middle of an extended-protocol batch (Parse,
    /// Bind, Describe or Close sent, no Execute, no Sync) back to a clean state: a Sync ends the
    /// batch, and when statements are tracked DEALLOCATE ALL makes the backend's set match the
    /// pooler's view (empty). Returns true when the backend is idle and reusable.
    pub async fn resync(&mut self, statements: bool) -> Result<bool, ServerError> {
        let result = self.run(&SYNC_FRAME, &mut |_, _| {}).await;
        let idle = self.conv.status == TxStatus::Idle;
        let ok = match result {
            Ok(_) if idle && statements => self.reset_statements().await?,
            Ok(_) => idle,
            Err(e) => {
                self.bad = true;
                return Err(e);
            }
        };
        Ok(ok)
    }

    /// DEALLOCATE ALL, then forgets every tracked statement. True on success.
    pub async fn reset_statements(&mut self) -> Result<bool, ServerError> {
        let failed = self.simple_query("DEALLOCATE ALL", |_, _| {}).await?;
        self.conv.forget_statements();
        Ok(failed.is_none())
    }

    async fn run(
        &mut self,
        msg: &[u8],
        on_param: &mut impl FnMut(&str, &str),
    ) -> Result<Option<ReceivedError>, ServerError> {
        self.run_rows(msg, on_param, &mut |_, _| Ok(())).await
    }

    /// Sends `msg` and reads up to ReadyForQuery; messages other than ParameterStatus,
    /// ErrorResponse and ReadyForQuery (DataRow, RowDescription, ...) go to `on_msg`.
    async fn run_rows(
        &mut self,
        msg: &[u8],
        on_param: &mut impl FnMut(&str, &str),
        on_msg: &mut impl FnMut(u8, &[u8]) -> Result<(), ServerError>,
    ) -> Result<Option<ReceivedError>, ServerError> {
        self.stream.write_all(msg).await?;
        let mut first_error = None;
        loop {
            let (t, body) = read_message(&mut self.stream, &mut self.buf).await?;
            match t {
                tag::READY_FOR_QUERY => {
                    // Whatever was owed is answered: the pooler's own query ran last.
                    let status = body.first().copied().and_then(TxStatus::from_byte);
                    self.conv.resynced(status.unwrap_or_default());
                    return Ok(first_error);
                }
                tag::PARAMETER_STATUS => {
                    let (k, v) = parse_parameter_status(&body)?;
                    self.params.set(k, v);
                    self.synced = None;
                    on_param(k, v);
                }
                tag::ERROR_RESPONSE => {
                    let e = parse_error_body(&body)?;
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        self.bad = true;
                        return Err(ServerError::Refused(e));
                    }
                    first_error.get_or_insert(e);
                }
                _ => on_msg(t, &body)?,
            }
        }
    }
}

//! The bytes of PostgreSQL's frontend/backend protocol (version 3) that the proxy reads
//! or writes itself: the untyped startup-phase packets, message headers, the SQL of
//! `Query` and `Parse`, and the `ErrorResponse`, `NoticeResponse` and `ReadyForQuery` it
//! answers with. Everything else passes through as bytes.

use tokio::io::{AsyncRead, AsyncReadExt};

/// PostgreSQL's own bound on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const MAX_STARTUP_BYTES: usize = 10_000;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// Protocol 3.x: the major version in the high 16 bits.
const PROTOCOL_3: i32 = 3 << 16;

/// The message types a client may send after startup. Anything else is a malformed
/// stream, refused rather than guessed at.
const FRONTEND_TYPES: &[u8] = b"BCdcfDEHFPpQSX";

/// A packet of the startup phase.
pub enum Startup {
    /// `SSLRequest` or `GSSENCRequest`: answered `N`, then the client goes on in clear.
    Encryption,
    /// `CancelRequest`: passed to the upstream as it is.
    Cancel(Vec<u8>),
    /// `StartupMessage`, its bytes as sent and its `user` and `database`.
    Start {
        bytes: Vec<u8>,
        user: String,
        database: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// Reads one startup-phase packet (length, code, body).
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<Startup, WireError> {
    let len = r.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (8..=MAX_STARTUP_BYTES).contains(l))
        .ok_or(WireError::Malformed(
            "a startup packet of an impossible length",
        ))?;
    let mut bytes = vec![0; len];
    bytes[..4].copy_from_slice(&(len as i32).to_be_bytes());
    r.read_exact(&mut bytes[4..]).await?;
    let code = i32::from_be_bytes(bytes[4..8].try_into().expect("four bytes"));
    match code {
        SSL_REQUEST | GSSENC_REQUEST if len == 8 => Ok(Startup::Encryption),
        // A 4-byte key in protocol 3.0, up to 256 bytes from 3.2 on.
        CANCEL_REQUEST if (16..=268).contains(&len) => Ok(Startup::Cancel(bytes)),
        _ if code >> 16 == PROTOCOL_3 >> 16 => {
            let (user, database) = startup_params(&bytes[8..])?;
            Ok(Startup::Start {
                bytes,
                user,
                database,
            })
        }
        _ => Err(WireError::Malformed("an unsupported startup packet")),
    }
}

/// `user` (required) and `database` (the user's name by default) of a startup message:
/// NUL-terminated name/value pairs ending in an empty name.
fn startup_params(body: &[u8]) -> Result<(String, String), WireError> {
    let mut pos = 0;
    let (mut user, mut database) = (None, None);
    loop {
        let name = cstr(body, &mut pos).ok_or(WireError::Malformed("startup parameters"))?;
        if name.is_empty() {
            break;
        }
        let value = cstr(body, &mut pos).ok_or(WireError::Malformed("startup parameters"))?;
        match name {
            "user" => user = Some(value.to_owned()),
            "database" => database = Some(value.to_owned()),
            _ => {}
        }
    }
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or(WireError::Malformed("a startup message without a user"))?;
    let database = database.filter(|d| !d.is_empty()).unwrap_or(user.clone());
    Ok((user, database))
}

/// The header of a message after startup: its type and the length of its body.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub tag: u8,
    pub body_len: usize,
}

impl Header {
    pub fn bytes(&self) -> [u8; 5] {
        let mut out = [0; 5];
        out[0] = self.tag;
        out[1..].copy_from_slice(&((self.body_len + 4) as i32).to_be_bytes());
        out
    }
}

/// Reads a message header; `None` at a clean end of stream. `frontend`: the type must
/// be one a client may send.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    frontend: bool,
) -> Result<Option<Header>, WireError> {
    let tag = match r.read_u8().await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if frontend && !FRONTEND_TYPES.contains(&tag) {
        return Err(WireError::Malformed("an unknown message type"));
    }
    let len = r.read_i32().await?;
    let body_len = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_sub(4))
        .ok_or(WireError::Malformed("a message length under 4"))?;
    Ok(Some(Header { tag, body_len }))
}

/// The SQL text of a `Query` body.
pub fn query_sql(body: &[u8]) -> Result<&str, WireError> {
    let mut pos = 0;
    let sql = cstr(body, &mut pos).ok_or(WireError::Malformed("a Query without its text"))?;
    if pos != body.len() {
        return Err(WireError::Malformed("bytes after a Query's text"));
    }
    Ok(sql)
}

/// The statement name and SQL text of a `Parse` body (name, text, parameter types).
pub fn parse_message(body: &[u8]) -> Result<(&str, &str), WireError> {
    let mut pos = 0;
    let name = cstr(body, &mut pos).ok_or(WireError::Malformed("a Parse without its name"))?;
    let sql = cstr(body, &mut pos).ok_or(WireError::Malformed("a Parse without its text"))?;
    let types = body
        .get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or(WireError::Malformed("a Parse without its parameter count"))?;
    if body.len() != pos + 2 + 4 * types {
        return Err(WireError::Malformed("a Parse of the wrong length"));
    }
    Ok((name, sql))
}

/// One parameter value of a `Bind`, as approvers are shown it.
#[derive(Debug, PartialEq)]
pub enum Param {
    Null,
    Text(String),
    /// A value in the binary format, shown in hex.
    Binary(Vec<u8>),
}

/// The prepared statement a `Bind` names and its parameter values, its whole structure
/// checked: a `Bind` the proxy cannot read is refused.
pub fn bind_message(body: &[u8]) -> Result<(&str, Vec<Param>), WireError> {
    const BAD: WireError = WireError::Malformed("a Bind of the wrong shape");
    let mut pos = 0;
    cstr(body, &mut pos).ok_or(BAD)?;
    let statement = cstr(body, &mut pos).ok_or(BAD)?;
    let i16_at = |pos: &mut usize| -> Result<i16, WireError> {
        let b = body.get(*pos..*pos + 2).ok_or(BAD)?;
        *pos += 2;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    };
    let n_formats = usize::try_from(i16_at(&mut pos)?).map_err(|_| BAD)?;
    let formats = (0..n_formats)
        .map(|_| i16_at(&mut pos))
        .collect::<Result<Vec<_>, _>>()?;
    let n_params = usize::try_from(i16_at(&mut pos)?).map_err(|_| BAD)?;
    if n_formats > 1 && n_formats != n_params {
        return Err(BAD);
    }
    let mut params = Vec::with_capacity(n_params);
    for i in 0..n_params {
        let len = body.get(pos..pos + 4).ok_or(BAD)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if len == -1 {
            params.push(Param::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| BAD)?;
        let value = body.get(pos..pos + len).ok_or(BAD)?;
        pos += len;
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => formats[i],
        };
        params.push(match (format, std::str::from_utf8(value)) {
            (0, Ok(text)) => Param::Text(text.to_owned()),
            _ => Param::Binary(value.to_vec()),
        });
    }
    let n_results = usize::try_from(i16_at(&mut pos)?).map_err(|_| BAD)?;
    if body.len() != pos + 2 * n_results {
        return Err(BAD);
    }
    Ok((statement, params))
}

/// A NUL-terminated UTF-8 string at `pos`, moving `pos` past it. Text that is not UTF-8
/// is refused: what cannot be read is never forwarded unread.
fn cstr<'a>(body: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let rest = body.get(*pos..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    *pos += end + 1;
    Some(s)
}

/// `ErrorResponse` (or `NoticeResponse` with `tag = b'N'`): severity, SQLSTATE, message.
fn fields(tag: u8, severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        // A NUL inside would end the field early; none of ours carries one on purpose.
        body.extend(value.bytes().filter(|b| *b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = Header {
        tag,
        body_len: body.len(),
    }
    .bytes()
    .to_vec();
    out.extend(body);
    out
}

pub fn error(code: &str, message: &str) -> Vec<u8> {
    fields(b'E', "ERROR", code, message)
}

/// An error that ends the session.
pub fn fatal(code: &str, message: &str) -> Vec<u8> {
    fields(b'E', "FATAL", code, message)
}

pub fn notice(message: &str) -> Vec<u8> {
    fields(b'N', "NOTICE", "00000", message)
}

/// `ReadyForQuery` with the transaction status: `I` idle, `T` in a block, `E` failed.
pub fn ready(status: u8) -> Vec<u8> {
    vec![b'Z', 0, 0, 0, 5, status]
}

/// `CommandComplete` with `tag` (`SET`, `RESET`).
pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut out = Header {
        tag: b'C',
        body_len: tag.len() + 1,
    }
    .bytes()
    .to_vec();
    out.extend(tag.as_bytes());
    out.push(0);
    out
}

/// A `Sync` message.
pub const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// A `Query` message with `sql`.
pub fn query(sql: &str) -> Vec<u8> {
    let mut out = Header {
        tag: b'Q',
        body_len: sql.len() + 1,
    }
    .bytes()
    .to_vec();
    out.extend(sql.as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_startup_packets() {
        let mut start = Vec::new();
        let body = b"\0\x03\0\0user\0alice\0application_name\0psql\0\0";
        start.extend(((body.len() + 4) as i32).to_be_bytes());
        start.extend(body);
        match read_startup(&mut &start[..]).await.unwrap() {
            Startup::Start {
                bytes,
                user,
                database,
            } => {
                assert_eq!(bytes, start);
                assert_eq!((user.as_str(), database.as_str()), ("alice", "alice"));
            }
            _ => panic!("not a startup message"),
        }
        let ssl = [0, 0, 0, 8, 4, 210, 22, 47];
        assert!(matches!(
            read_startup(&mut &ssl[..]).await.unwrap(),
            Startup::Encryption
        ));
        for bad in [
            &[0, 0, 0, 2][..],
            &[0x7f, 0, 0, 0][..],
            &[0, 0, 0, 8, 0, 2, 0, 0],
        ] {
            assert!(read_startup(&mut &bad[..]).await.is_err());
        }
    }

    #[tokio::test]
    async fn refuses_malformed_headers_and_bodies() {
        assert!(read_header(&mut &b"Q\0\0\0\x02"[..], true).await.is_err());
        assert!(read_header(&mut &b"z\0\0\0\x04"[..], true).await.is_err());
        assert!(read_header(&mut &b""[..], true).await.unwrap().is_none());
        let h = read_header(&mut &b"Q\0\0\0\x09"[..], true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((h.tag, h.body_len), (b'Q', 5));
        assert_eq!(query_sql(b"SELECT 1\0").unwrap(), "SELECT 1");
        assert!(query_sql(b"SELECT 1").is_err());
        assert!(query_sql(b"SELECT 1\0DROP TABLE x\0").is_err());
        assert!(query_sql(b"\xff\0").is_err());
        assert_eq!(
            parse_message(b"s1\0DELETE FROM t\0\0\0").unwrap(),
            ("s1", "DELETE FROM t")
        );
        // Portal "", statement s1, one text format, two values (one NULL), no result formats.
        let bind = b"\0s1\0\0\x01\0\0\0\x02\0\0\0\x03ada\xff\xff\xff\xff\0\0";
        assert_eq!(
            bind_message(bind).unwrap(),
            ("s1", vec![Param::Text("ada".into()), Param::Null])
        );
        assert!(bind_message(&bind[..bind.len() - 1]).is_err());
        assert!(bind_message(b"\0s1\0\0\0\0\x01\0\0\0\x09ada\0\0").is_err());
        assert!(parse_message(b"s1\0DELETE FROM t\0\0\x01").is_err());
        assert_eq!(&query("SELECT 1")[..], b"Q\0\0\0\x0dSELECT 1\0");
    }
}

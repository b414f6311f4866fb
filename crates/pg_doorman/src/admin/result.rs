//! Result sets of the admin console: RowDescription, DataRows and CommandComplete, all columns
//! text or int8 as PgBouncer's console sends them.

use bytes::{BufMut, BytesMut};

/// Column type OIDs used by the console.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    /// text (25).
    Text,
    /// int8 (20).
    Int,
}

/// One result set being written into `out`.
pub struct ResultSet<'a> {
    out: &'a mut BytesMut,
    rows: usize,
}

impl<'a> ResultSet<'a> {
    /// Writes the RowDescription of `cols` (name, type).
    pub fn new(out: &'a mut BytesMut, cols: &[(&str, Col)]) -> Self {
        let at = doorman_wire::frame::begin(out, b'T');
        out.put_i16(cols.len() as i16);
        for (name, ty) in cols {
            out.put_slice(name.as_bytes());
            out.put_u8(0);
            out.put_i32(0); // table oid
            out.put_i16(0); // column number
            let (oid, len) = match ty {
                Col::Text => (25, -1),
                Col::Int => (20, 8),
            };
            out.put_i32(oid);
            out.put_i16(len);
            out.put_i32(-1); // type modifier
            out.put_i16(0); // text format
        }
        doorman_wire::frame::finish(out, at);
        ResultSet { out, rows: 0 }
    }

    /// Writes one DataRow; None is NULL.
    pub fn row(&mut self, values: &[Option<&str>]) {
        let at = doorman_wire::frame::begin(self.out, b'D');
        self.out.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(v) => {
                    self.out.put_i32(v.len() as i32);
                    self.out.put_slice(v.as_bytes());
                }
                None => self.out.put_i32(-1),
            }
        }
        doorman_wire::frame::finish(self.out, at);
        self.rows += 1;
    }

    /// Writes a row of owned strings.
    pub fn row_s(&mut self, values: &[String]) {
        let v: Vec<Option<&str>> = values.iter().map(|s| Some(s.as_str())).collect();
        self.row(&v);
    }

    /// Writes CommandComplete `tag` (e.g. "SHOW").
    pub fn finish(self, tag: &str) {
        command_complete(self.out, tag);
    }
}

/// CommandComplete.
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    let at = doorman_wire::frame::begin(out, b'C');
    out.put_slice(tag.as_bytes());
    out.put_u8(0);
    doorman_wire::frame::finish(out, at);
}
